"""Sliding-window stores: where each key's admitted requests are counted.

A true sliding window: an admitted request of cost c occupies c units for exactly
``window`` seconds after it was admitted; rejected requests occupy nothing. Each store's
``acquire`` counts and records in one atomic step of the backing store, so several
processes (or machines) sharing it never admit more than the limit.
"""
import math
from dataclasses import dataclass

from django.db import connection, transaction

from .models import ApiKey, RateLimitEvent


@dataclass(frozen=True)
class WindowState:
    allowed: bool
    limit: int
    window_seconds: int
    remaining: int  # units still free after this decision
    reset_seconds: int  # whole seconds until the next unit frees (0: nothing in use)
    retry_after: int  # for a refusal: whole seconds until this request's cost would fit


def _state(*, events: list[tuple[float, int]], allowed: bool, limit: int, window: int, cost: int, now: float):
    """Derive the window's state from the admitted (time, cost) events still inside it, oldest first."""
    used = sum(c for _, c in events)
    reset = max(0, math.ceil(events[0][0] + window - now)) if events else 0
    retry_after = 0
    if not allowed:
        freed = 0
        for at, c in events:
            freed += c
            if used - freed + cost <= limit:
                retry_after = max(1, math.ceil(at + window - now))
                break
    return WindowState(
        allowed=allowed,
        limit=limit,
        window_seconds=window,
        remaining=max(0, limit - used),
        reset_seconds=reset,
        retry_after=retry_after,
    )


class DatabaseWindowStore:
    """Window state in the ``RateLimitEvent`` table.

    SQLite: the connection opens every transaction IMMEDIATE (see settings), which takes the
    database's write lock before the count. PostgreSQL: the key's row is locked FOR UPDATE.
    Either way count-then-insert cannot interleave between processes.
    """

    def acquire(self, *, key_id: int, limit: int, window: int, cost: int, now: float) -> WindowState:
        with transaction.atomic():
            if connection.vendor != "sqlite":
                list(ApiKey.objects.select_for_update().filter(pk=key_id).values_list("pk"))
            RateLimitEvent.objects.filter(api_key_id=key_id, at__lte=now - window).delete()
            events = list(
                RateLimitEvent.objects.filter(api_key_id=key_id, at__gt=now - window)
                .order_by("at")
                .values_list("at", "cost")
            )
            allowed = sum(c for _, c in events) + cost <= limit
            if allowed:
                RateLimitEvent.objects.create(api_key_id=key_id, at=now, cost=cost)
                events.append((now, cost))
        return _state(events=events, allowed=allowed, limit=limit, window=window, cost=cost, now=now)

    def peek(self, *, key_id: int, limit: int, window: int, now: float) -> WindowState:
        events = list(
            RateLimitEvent.objects.filter(api_key_id=key_id, at__gt=now - window).order_by("at").values_list("at", "cost")
        )
        return _state(events=events, allowed=True, limit=limit, window=window, cost=0, now=now)
