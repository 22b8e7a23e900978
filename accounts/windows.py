"""Sliding-window stores: where each key's admitted requests are counted.

A true sliding window: an admitted request of cost c occupies c units for exactly
``window`` seconds after it was admitted; rejected requests occupy nothing. Each store's
``acquire`` counts and records in one atomic step of the backing store, so several
processes (or machines) sharing it never admit more than the limit.
"""
import math
import uuid
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


# Trim, count and (if it fits) record in one server-side step. Members are "cost:unique".
_ACQUIRE_SCRIPT = """
local key, now, window, limit, cost, member = KEYS[1], tonumber(ARGV[1]), tonumber(ARGV[2]),
    tonumber(ARGV[3]), tonumber(ARGV[4]), ARGV[5]
redis.call('ZREMRANGEBYSCORE', key, '-inf', now - window)
local entries = redis.call('ZRANGE', key, 0, -1, 'WITHSCORES')
local used = 0
for i = 1, #entries, 2 do
  used = used + tonumber(string.match(entries[i], '^(%d+):'))
end
local allowed = 0
if cost > 0 and used + cost <= limit then
  redis.call('ZADD', key, now, member)
  allowed = 1
end
redis.call('EXPIRE', key, math.ceil(window) + 1)
return {allowed, entries}
"""


class WindowStoreUnavailable(Exception):
    """The shared window store cannot be reached; the caller must not guess a decision."""


class RedisWindowStore:
    """Window state in one Redis sorted set per key, updated by a Lua script (atomic in Redis).

    Shared by every process on every machine that points at the same Redis. Time comes from
    the callers' clocks, so keep the app servers' clocks in sync (NTP), as with any
    distributed limiter.
    """

    def __init__(self, url: str, *, prefix: str = "aiserver:window:"):
        import redis

        self._redis = redis.Redis.from_url(url, socket_timeout=1.0, socket_connect_timeout=1.0)
        self._script = self._redis.register_script(_ACQUIRE_SCRIPT)
        self._prefix = prefix
        self._errors = (redis.RedisError, OSError)

    def _run(self, *, key_id: int, limit: int, window: int, cost: int, now: float) -> tuple[bool, list]:
        member = f"{cost}:{uuid.uuid4().hex}"
        try:
            allowed, flat = self._script(keys=[f"{self._prefix}{key_id}"], args=[now, window, limit, cost, member])
        except self._errors as exc:
            raise WindowStoreUnavailable(str(exc)) from exc
        events = [(float(flat[i + 1]), int(flat[i].split(b":", 1)[0])) for i in range(0, len(flat), 2)]
        events.sort()
        if allowed:
            events.append((now, cost))
        return bool(allowed), events

    def acquire(self, *, key_id: int, limit: int, window: int, cost: int, now: float) -> WindowState:
        allowed, events = self._run(key_id=key_id, limit=limit, window=window, cost=cost, now=now)
        return _state(events=events, allowed=allowed, limit=limit, window=window, cost=cost, now=now)

    def peek(self, *, key_id: int, limit: int, window: int, now: float) -> WindowState:
        _, events = self._run(key_id=key_id, limit=limit, window=window, cost=0, now=now)
        return _state(events=events, allowed=True, limit=limit, window=window, cost=0, now=now)


def window_store_from_settings():
    """Redis when REDIS_URL is set (shared by every machine), else the database."""
    from django.conf import settings

    return RedisWindowStore(settings.REDIS_URL) if settings.REDIS_URL else DatabaseWindowStore()
