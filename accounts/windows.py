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

from .models import ApiKey, RateLimitEvent, UsageRateLimitEvent


@dataclass(frozen=True)
class WindowState:
    allowed: bool
    limit: int
    window_seconds: int
    remaining: int  # units still free after this decision
    reset_seconds: int  # whole seconds until the next unit frees (0: nothing in use)
    retry_after: int  # for a refusal: whole seconds until this request's cost would fit


def _free_at(events, *, used: int, cost: int, limit: int) -> float | None:
    """When a refused request's cost fits: the admission time of the event (oldest first) whose
    expiry frees enough units, or None if none does."""
    freed = 0
    for at, c in events:
        freed += c
        if used - freed + cost <= limit:
            return at
    return None


def _state(
    *, used: int, oldest: float | None, free_at: float | None, allowed: bool, limit: int, window: int, now: float
) -> WindowState:
    """The window's state from the units in use (after this decision) and the times that matter."""
    return WindowState(
        allowed=allowed,
        limit=limit,
        window_seconds=window,
        remaining=max(0, limit - used),
        reset_seconds=max(0, math.ceil(oldest + window - now)) if oldest is not None else 0,
        retry_after=max(1, math.ceil(free_at + window - now)) if not allowed and free_at is not None else 0,
    )


_LOCK_KEY_SQL = f"SELECT id FROM {ApiKey._meta.db_table} WHERE id = %s FOR UPDATE"


class DatabaseWindowStore:
    """Window state in an events table (``RateLimitEvent`` unless told), counted by the database (SUM, MIN).

    SQLite: the connection opens every transaction IMMEDIATE (see settings), which takes the
    database's write lock before the count. PostgreSQL: the key's row is locked FOR UPDATE.
    Either way count-then-insert cannot interleave between processes. Stores on different
    tables keep different windows for the same key (the usage endpoints' own limit).
    """

    def __init__(self, events=RateLimitEvent):
        # Plain statements on the (key, at) index: the ORM's create(), aggregate() and select_for_update() cost
        # several times more Python than the queries themselves, and this runs on every admitted request.
        table = events._meta.db_table
        self._events = events
        self._expire_sql = f"DELETE FROM {table} WHERE api_key_id = %s AND at <= %s"
        self._totals_sql = f"SELECT SUM(cost), MIN(at) FROM {table} WHERE api_key_id = %s AND at > %s"
        self._record_sql = f"INSERT INTO {table} (api_key_id, at, cost) VALUES (%s, %s, %s)"

    def acquire(self, *, key_id: int, limit: int, window: int, cost: int, now: float) -> WindowState:
        with transaction.atomic(), connection.cursor() as cursor:
            if connection.vendor != "sqlite":
                cursor.execute(_LOCK_KEY_SQL, [key_id])
            cursor.execute(self._expire_sql, [key_id, now - window])
            used, oldest = self._totals(cursor, key_id=key_id, since=now - window)
            allowed = used + cost <= limit
            free_at = None
            if allowed:
                cursor.execute(self._record_sql, [key_id, now, cost])
                used, oldest = used + cost, now if oldest is None else oldest
            else:
                events = self._events.objects.filter(api_key_id=key_id, at__gt=now - window).order_by("at")
                free_at = _free_at(events.values_list("at", "cost").iterator(), used=used, cost=cost, limit=limit)
        return _state(used=used, oldest=oldest, free_at=free_at, allowed=allowed, limit=limit, window=window, now=now)

    def peek(self, *, key_id: int, limit: int, window: int, now: float) -> WindowState:
        with connection.cursor() as cursor:
            used, oldest = self._totals(cursor, key_id=key_id, since=now - window)
        return _state(used=used, oldest=oldest, free_at=None, allowed=True, limit=limit, window=window, now=now)

    def _totals(self, cursor, *, key_id: int, since: float) -> tuple[int, float | None]:
        """Units in use and the oldest admission after ``since``."""
        cursor.execute(self._totals_sql, [key_id, since])
        used, oldest = cursor.fetchone()
        return used or 0, oldest


# Trim, count and (if it fits) record in one server-side step. Members are "cost:unique". Returns the
# decision, the units in use after it, the oldest admission time and, for a refusal, the admission time
# whose expiry makes room (as strings: Redis would truncate Lua floats to integers).
_ACQUIRE_SCRIPT = """
local key, now, window, limit, cost, member = KEYS[1], tonumber(ARGV[1]), tonumber(ARGV[2]),
    tonumber(ARGV[3]), tonumber(ARGV[4]), ARGV[5]
redis.call('ZREMRANGEBYSCORE', key, '-inf', now - window)
local entries = redis.call('ZRANGE', key, 0, -1, 'WITHSCORES')
local used = 0
for i = 1, #entries, 2 do
  used = used + tonumber(string.match(entries[i], '^(%d+):'))
end
local oldest = entries[2] or ''
local allowed, free_at = 0, ''
if cost > 0 and used + cost <= limit then
  redis.call('ZADD', key, now, member)
  allowed, used = 1, used + cost
  if oldest == '' then oldest = ARGV[1] end
elseif cost > 0 then
  local freed = 0
  for i = 1, #entries, 2 do
    freed = freed + tonumber(string.match(entries[i], '^(%d+):'))
    if used - freed + cost <= limit then free_at = entries[i + 1]; break end
  end
end
redis.call('EXPIRE', key, math.ceil(window) + 1)
return {allowed, tostring(used), oldest, free_at}
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

    def acquire(self, *, key_id: int, limit: int, window: int, cost: int, now: float) -> WindowState:
        member = f"{cost}:{uuid.uuid4().hex}"
        try:
            allowed, used, oldest, free_at = self._script(
                keys=[f"{self._prefix}{key_id}"], args=[repr(now), window, limit, cost, member]
            )
        except self._errors as exc:
            raise WindowStoreUnavailable(str(exc)) from exc
        return _state(
            used=int(used),
            oldest=float(oldest) if oldest else None,
            free_at=float(free_at) if free_at else None,
            allowed=bool(allowed) or cost == 0,
            limit=limit,
            window=window,
            now=now,
        )

    def peek(self, *, key_id: int, limit: int, window: int, now: float) -> WindowState:
        return self.acquire(key_id=key_id, limit=limit, window=window, cost=0, now=now)


def window_store_from_settings():
    """Redis when REDIS_URL is set (shared by every machine), else the database."""
    from django.conf import settings

    return RedisWindowStore(settings.REDIS_URL) if settings.REDIS_URL else DatabaseWindowStore()


def usage_window_store_from_settings():
    """The usage endpoints' windows, apart from the classification windows: Redis keys under their own prefix
    when REDIS_URL is set, else the ``UsageRateLimitEvent`` table."""
    from django.conf import settings

    if settings.REDIS_URL:
        return RedisWindowStore(settings.REDIS_URL, prefix="aiserver:usage-window:")
    return DatabaseWindowStore(events=UsageRateLimitEvent)
