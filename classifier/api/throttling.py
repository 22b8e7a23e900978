"""Sliding-window rate limiting per API key, exact across processes (see accounts.windows)."""

import time

from django.conf import settings
from rest_framework.throttling import BaseThrottle

from accounts.windows import (
    QuotaRule,
    QuotaState,
    WindowState,
    WindowStoreUnavailable,
    quota_rule,
    usage_window_store_from_settings,
    window_store_from_settings,
)

from .call import call_record
from .exceptions import BatchExceedsLimit, QuotaExceeded, RateLimiterUnavailable


class _WindowThrottle(BaseThrottle):
    """A throttle that asks a window store (``store``, at ``clock()``) whether a key's request fits.

    The decision's ``WindowState`` goes into the call record, for the quota headers. The store failing is
    a 503 (fail closed: without the shared count no process can know the key's quota).
    """

    clock = staticmethod(time.time)
    store = None  # each throttle has its own

    def _acquire(
        self,
        request,
        *,
        key_id: int,
        limit: int,
        window: int,
        cost: int,
        quota: QuotaRule | None = None,
        record: bool = True,
    ) -> WindowState:
        try:
            self.state = acquire(
                self.store,
                key_id=key_id,
                limit=limit,
                window=window,
                cost=cost,
                now=self.clock(),
                quota=quota,
                record=record,
            )
        except WindowStoreUnavailable as exc:
            raise RateLimiterUnavailable() from exc
        call_record(request).window = self.state
        return self.state

    def wait(self) -> int:
        return self.state.retry_after


def acquire(
    store,
    *,
    key_id: int,
    limit: int,
    window: int,
    cost: int,
    now: float,
    quota: QuotaRule | None = None,
    record: bool = True,
) -> WindowState:
    """Ask ``store`` whether ``cost`` units of the key fit its window (and ``quota``) at ``now``, charging them when they
    do and ``record`` is on; raises WindowStoreUnavailable. (The throttles and the lean path, classifier.api.lean.)"""
    options = {} if quota is None and record else {"quota": quota, "record": record}
    return store.acquire(key_id=key_id, limit=limit, window=window, cost=cost, now=now, **options)


class SlidingWindowThrottle(_WindowThrottle):
    """Admit a request if its cost fits in the key's window and, for a key on a plan, its monthly quota;
    rejected requests cost nothing. Window and quota are one store operation (accounts.windows).

    A view may define ``throttle_cost(request) -> int`` (default 1). A cost larger than the
    key's whole limit could never fit: that is a 400 (BatchExceedsLimit), not a 429, and
    costs one unit, as any other refused-as-malformed request does (429 once the window is full).
    The quota is asked first: past a blocking allowance the answer is 429 ``quota_exceeded`` with
    Retry-After at the next month's start (waiting for the window would not help); else a full window
    is 429 ``throttled``.
    """

    store = window_store_from_settings()

    def allow_request(self, request, view) -> bool:
        api_key = request.auth
        if api_key is None:
            return True
        cost = view.throttle_cost(request) if hasattr(view, "throttle_cost") else 1
        limit, window = api_key.effective_rate_limit, api_key.effective_rate_window_seconds
        never_fits = cost > limit
        charged = 1 if never_fits else cost
        state = self._acquire(
            request, key_id=api_key.pk, limit=limit, window=window, cost=charged, quota=quota_rule(api_key)
        )
        if state.quota_exceeded:
            raise _quota_exceeded(api_key, state)
        if not state.allowed:
            return False
        call_record(request).units = charged
        if never_fits:
            raise BatchExceedsLimit(
                f"This request has {cost} images but the API key admits at most {limit} "
                f"per {window} seconds; send smaller batches."
            )
        return True

    def allow_one_more(self, request) -> bool:
        """Whether one unit would fit the key's window and quota now, recording nothing: asked before a large
        body is read, so a key that is out of room is refused without parsing it (raises QuotaExceeded)."""
        api_key = request.auth
        if api_key is None:
            return True
        state = self._acquire(
            request,
            key_id=api_key.pk,
            limit=api_key.effective_rate_limit,
            window=api_key.effective_rate_window_seconds,
            cost=1,
            quota=quota_rule(api_key),
            record=False,
        )
        if state.quota_exceeded:
            raise _quota_exceeded(api_key, state)
        return state.allowed


def _quota_exceeded(api_key, state: WindowState) -> QuotaExceeded:
    quota = state.quota
    assert quota is not None
    return QuotaExceeded(
        f"This API key has used its monthly allowance of {quota.allowance} images "
        f"(plan {api_key.plan.name!r}); it resets at {quota.resets_at:%Y-%m-%dT%H:%M:%SZ}.",
        retry_after=state.retry_after,
    )


class UsageThrottle(_WindowThrottle):
    """The usage endpoints' own limit: ACCOUNTS_USAGE_RATE_LIMIT requests per ACCOUNTS_USAGE_RATE_WINDOW_SECONDS
    per key, v1 and v2 together, counted in a window store of their own (never the classification quota).

    Every request that passes authentication is charged one unit, a malformed query too. The call record's
    ``units`` stay 0 (a usage request classifies no images).
    """

    store = usage_window_store_from_settings()

    def allow_request(self, request, view) -> bool:
        api_key = request.auth
        if api_key is None:
            return True
        return self._acquire(
            request,
            key_id=api_key.pk,
            limit=settings.ACCOUNTS_USAGE_RATE_LIMIT,
            window=settings.ACCOUNTS_USAGE_RATE_WINDOW_SECONDS,
            cost=1,
        ).allowed


def rate_limit_headers(state: WindowState) -> dict[str, str]:
    """The quota headers: the de-facto X-RateLimit-* trio and the IETF httpapi draft's pair, and the
    monthly quota's X-Quota-* trio for a key on a plan."""
    headers = {
        "X-RateLimit-Limit": str(state.limit),
        "X-RateLimit-Remaining": str(state.remaining),
        "X-RateLimit-Reset": str(state.reset_seconds),
        "RateLimit-Policy": f'"sliding";q={state.limit};w={state.window_seconds}',
        "RateLimit": f'"sliding";r={state.remaining};t={state.reset_seconds}',
    }
    if state.quota is not None:
        headers.update(quota_headers(state.quota))
    return headers


UNLIMITED = "unlimited"  # X-Quota-Limit and X-Quota-Remaining of a plan without a monthly allowance


def quota_headers(quota: QuotaState) -> dict[str, str]:
    """X-Quota-Limit (images a month, or "unlimited"), X-Quota-Remaining (or "unlimited") and X-Quota-Reset
    (whole seconds until the next month starts, UTC)."""
    return {
        "X-Quota-Limit": UNLIMITED if quota.allowance is None else str(quota.allowance),
        "X-Quota-Remaining": UNLIMITED if quota.remaining is None else str(quota.remaining),
        "X-Quota-Reset": str(quota.reset_seconds),
    }
