"""Sliding-window rate limiting per API key, exact across processes (see accounts.windows)."""

import time

from django.conf import settings
from rest_framework.throttling import BaseThrottle

from accounts.windows import (
    WindowState,
    WindowStoreUnavailable,
    usage_window_store_from_settings,
    window_store_from_settings,
)

from .call import call_record
from .exceptions import BatchExceedsLimit, RateLimiterUnavailable


class _WindowThrottle(BaseThrottle):
    """A throttle that asks a window store (``store``, at ``clock()``) whether a key's request fits.

    The decision's ``WindowState`` goes into the call record, for the quota headers. The store failing is
    a 503 (fail closed: without the shared count no process can know the key's quota).
    """

    clock = staticmethod(time.time)
    store = None  # each throttle has its own

    def _acquire(self, request, *, key_id: int, limit: int, window: int, cost: int) -> WindowState:
        try:
            self.state = self.store.acquire(key_id=key_id, limit=limit, window=window, cost=cost, now=self.clock())
        except WindowStoreUnavailable as exc:
            raise RateLimiterUnavailable() from exc
        call_record(request).window = self.state
        return self.state

    def wait(self) -> int:
        return self.state.retry_after


class SlidingWindowThrottle(_WindowThrottle):
    """Admit a request if its cost fits in the key's window; rejected requests cost nothing.

    A view may define ``throttle_cost(request) -> int`` (default 1). A cost larger than the
    key's whole limit could never fit: that is a 400 (BatchExceedsLimit), not a 429, and
    costs one unit, as any other refused-as-malformed request does (429 once the window is full).
    """

    store = window_store_from_settings()

    def allow_request(self, request, view) -> bool:
        api_key = request.auth
        if api_key is None:
            return True
        cost = view.throttle_cost(request) if hasattr(view, "throttle_cost") else 1
        never_fits = cost > api_key.rate_limit
        charged = 1 if never_fits else cost
        state = self._acquire(
            request, key_id=api_key.pk, limit=api_key.rate_limit, window=api_key.rate_window_seconds, cost=charged
        )
        if not state.allowed:
            return False
        call_record(request).units = charged
        if never_fits:
            raise BatchExceedsLimit(
                f"This request has {cost} images but the API key admits at most {api_key.rate_limit} "
                f"per {api_key.rate_window_seconds} seconds; send smaller batches."
            )
        return True


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
    """The quota headers: the de-facto X-RateLimit-* trio and the IETF httpapi draft's pair."""
    return {
        "X-RateLimit-Limit": str(state.limit),
        "X-RateLimit-Remaining": str(state.remaining),
        "X-RateLimit-Reset": str(state.reset_seconds),
        "RateLimit-Policy": f'"sliding";q={state.limit};w={state.window_seconds}',
        "RateLimit": f'"sliding";r={state.remaining};t={state.reset_seconds}',
    }
