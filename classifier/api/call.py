"""The call record: what one API call was, carried from the log middleware through auth, throttle and view.

The log middleware opens a record when a request enters under /api/; each step fills in what it learnt
through ``call_record(request)``; the middleware writes the record once the answer is ready. Nothing else
travels on the request between those steps.

    log middleware  opens it (start time); later sets ``route``, writes it
    request ids     ``request_id`` (v2: the caller's X-Request-ID or a new one)
    authentication  ``api_key`` (an identified key: the call becomes a RequestLog row)
    throttle        ``window`` (the quota headers), ``units`` (what the key was charged)
    view            ``model_name``, ``model_version`` (who answered)
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from accounts.models import ApiKey
    from accounts.windows import WindowState

UNMATCHED_ROUTE = "unmatched"
_ATTRIBUTE = "aiserver_call"  # on Django's HttpRequest; DRF's Request wraps it


@dataclass
class CallRecord:
    started: float = field(default_factory=time.perf_counter)  # perf_counter seconds
    route: str = UNMATCHED_ROUTE  # the matched URL pattern, never the path the caller chose
    request_id: str = ""
    api_key: ApiKey | None = None
    window: WindowState | None = None
    units: int = 0  # images (or requests) charged to the key's window
    model_name: str = ""
    model_version: str = ""

    def answered_by(self, *, model: str, version: str) -> None:
        """Record the model (and version) that answered a classification."""
        self.model_name, self.model_version = model, version


def call_record(request) -> CallRecord:
    """The record of ``request`` (a Django HttpRequest or a DRF Request), opened on first use.

    The log middleware opens it for every /api/ request; a view called without the middleware (a test's
    request factory) gets a fresh one, which nothing writes.
    """
    django_request = getattr(request, "_request", request)
    record = getattr(django_request, _ATTRIBUTE, None)
    if record is None:
        record = CallRecord()
        setattr(django_request, _ATTRIBUTE, record)
    return record


def open_call(request) -> CallRecord:
    """Open a new record for ``request`` (the log middleware, at entry), replacing any earlier one."""
    record = CallRecord()
    setattr(request, _ATTRIBUTE, record)
    return record
