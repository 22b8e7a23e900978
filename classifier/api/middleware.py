"""Request-boundary middleware: the request log, v2 request ids and the body size limit."""

import logging
import re
import time
import uuid

from django.conf import settings

from accounts.selectors import THROTTLED_STATUS
from accounts.services import anonymous_request_count_increment, repeated_throttle_count, request_log_create

from .. import metrics
from .call import UNMATCHED_ROUTE, CallRecord, call_record, open_call
from .exceptions import HeadersTooLarge, PayloadTooLarge, RequestTimeout, error_response

logger = logging.getLogger(__name__)
request_logger = logging.getLogger("aiserver.requests")  # one line per /api/ request
REQUEST_LINE = "%(method)s %(route)s %(status)s %(latency_ms).1fms key=%(key_prefix)s id=%(request_id)s"

API_PREFIX = "/api/"
# Set in the ASGI scope by aiserver.guard when it cut a request short; BodyLimitMiddleware answers for them.
BODY_TOO_LARGE_SCOPE_KEY = "aiserver.body_too_large"  # over API_MAX_BODY_BYTES
BODY_TIMED_OUT_SCOPE_KEY = "aiserver.body_timed_out"  # not arrived within API_BODY_*_TIMEOUT_SECONDS
HEADERS_TOO_LARGE_SCOPE_KEY = "aiserver.headers_too_large"  # over API_MAX_HEADER_BYTES


class RequestLogMiddleware:
    """Account for every request under /api/ (docs and unknown paths too), whatever its outcome.

    It opens the request's CallRecord (classifier.api.call) at entry and writes it when the answer is
    ready. A call whose key was identified gets a RequestLog row: the customer's bill, its 4xx, 429 and
    5xx included, except a 429 that repeats the minute's first on its route, which raises that minute's
    RepeatedThrottleCount. Any other call raises a per-minute count (AnonymousRequestCount). So neither a key
    sending over its limit nor a flood without a key adds a row per request. Both store the matched route, never the path the caller chose. A failing write is
    logged and the answer goes out anyway.
    """

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        if not request.path.startswith(API_PREFIX):
            return self.get_response(request)
        call = open_call(request)
        response = self.get_response(request)
        elapsed = time.perf_counter() - call.started
        call.route = _route(request)
        write_call(
            call,
            method=request.method,
            status=response.status_code,
            client_ip=request.META.get("REMOTE_ADDR") or None,
            seconds=elapsed,
        )
        return response


def write_call(call: CallRecord, *, method: str, status: int, client_ip: str | None, seconds: float) -> None:
    """Account for an answered call: its metrics, its request line, and its RequestLog row or count. A failing
    step is logged and the others still run: no logging failure may replace the answer with a 500."""
    for record in (_record_metrics, _log_request_line, _record_request):
        try:
            record(call, method, status, client_ip, seconds)
        except Exception:
            logger.exception("%s failed for %s %s", record.__name__, method, call.route)


def _record_request(call: CallRecord, method: str, status: int, client_ip: str | None, seconds: float) -> None:
    """A RequestLog row when the call's key was identified (a repeated 429: +1 on its minute's repeats),
    else +1 on its anonymous count."""
    if call.api_key is None:
        anonymous_request_count_increment(route=call.route, status_code=status, client_ip=client_ip)
        return
    if status == THROTTLED_STATUS and not repeated_throttle_count(api_key_id=call.api_key.pk, endpoint=call.route):
        return
    request_log_create(
        api_key_id=call.api_key.pk,
        endpoint=call.route,
        method=method,
        status_code=status,
        response_time_ms=seconds * 1000.0,
        client_ip=client_ip,
        request_id=call.request_id,
        images=call.units,
        model_name=call.model_name,
        model_version=call.model_version,
    )


def _log_request_line(call: CallRecord, method: str, status: int, client_ip: str | None, seconds: float) -> None:
    """Log the request line; its fields are the JSON log's (aiserver.log_format): never the key, only its
    prefix, and the matched route, never the raw path."""
    fields = {
        "request_id": call.request_id or None,
        "key_prefix": call.api_key.prefix if call.api_key else None,
        "route": call.route,
        "method": _method(method),
        "status": status,
        "latency_ms": round(seconds * 1000.0, 1),
    }
    request_logger.info(REQUEST_LINE, fields, extra=fields)


def _route(request) -> str:
    """The matched route (bounded label values), or "unmatched" for unknown paths (the catch-all regex)."""
    match = getattr(request, "resolver_match", None)
    route = getattr(match, "route", "") if match else ""
    return f"/{route}" if route and not route.startswith("^") else UNMATCHED_ROUTE


def _method(method: str) -> str:
    return method if method in _METHODS else "other"


def _record_metrics(call: CallRecord, method: str, status: int, client_ip: str | None, seconds: float) -> None:
    label = str(status)
    metrics.REQUESTS.labels(call.route, _method(method), label).inc()
    metrics.REQUEST_LATENCY.labels(call.route, label).observe(seconds)


_METHODS = frozenset({"GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"})


class BodyLimitMiddleware:
    """Answer 413, 408 or 431 for requests the ASGI guard cut short, and 413 for bodies over
    API_MAX_BODY_BYTES (ADMIN_UPLOAD_MAX_BYTES for the admin's model uploads), before anything reads them."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        refusal = _refusal(request)
        if refusal is not None:
            return error_response(refusal)
        return self.get_response(request)


def _refusal(request):
    """Why the guard cut this request short (an APIException), or None."""
    scope = getattr(request, "scope", {})
    if scope.get(HEADERS_TOO_LARGE_SCOPE_KEY):
        return HeadersTooLarge(f"The request headers are over the limit of {settings.API_MAX_HEADER_BYTES} bytes.")
    if scope.get(BODY_TIMED_OUT_SCOPE_KEY):
        return RequestTimeout(
            f"The request body did not arrive within {settings.API_BODY_READ_TIMEOUT_SECONDS:g} seconds, "
            f"or paused for more than {settings.API_BODY_IDLE_TIMEOUT_SECONDS:g}."
        )
    if scope.get(BODY_TOO_LARGE_SCOPE_KEY) or _declared_too_large(request):
        return PayloadTooLarge(f"The request body is over the limit of {body_limit(request.path)} bytes.")
    return None


def body_limit(path: str) -> int:
    """API_MAX_BODY_BYTES, or ADMIN_UPLOAD_MAX_BYTES for the admin's model version uploads."""
    if path.startswith(settings.ADMIN_UPLOAD_PATH_PREFIX):
        return settings.ADMIN_UPLOAD_MAX_BYTES
    return settings.API_MAX_BODY_BYTES


def _declared_too_large(request) -> bool:
    try:
        return int(request.META.get("CONTENT_LENGTH") or 0) > body_limit(request.path)
    except ValueError:
        return False


REQUEST_ID_PREFIX = "/api/v2/"
REQUEST_ID_HEADER = "X-Request-ID"
_CALLER_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{1,64}$")


class RequestIdMiddleware:
    """Give every v2 request an id: the caller's ``X-Request-ID`` when it is sane, else a new one.

    The id goes into the call record (for the view and the request log) and the response's ``X-Request-ID``.
    """

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        if not request.path.startswith(REQUEST_ID_PREFIX):
            return self.get_response(request)
        call = call_record(request)
        call.request_id = request_id(request.META.get("HTTP_X_REQUEST_ID", ""))
        response = self.get_response(request)
        response[REQUEST_ID_HEADER] = call.request_id
        return response


def request_id(sent: str) -> str:
    """A v2 request's id: the caller's X-Request-ID when it is sane, else a new one."""
    sent = sent.strip()
    return sent if _CALLER_REQUEST_ID.match(sent) else uuid.uuid4().hex
