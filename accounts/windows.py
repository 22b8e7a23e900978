"""Sliding-window stores: where each key's admitted requests, and its monthly quota, are counted.

A true sliding window: an admitted request of cost c occupies c units for exactly
``window`` seconds after it was admitted; rejected requests occupy nothing. Each store's
``acquire`` counts and records in one atomic step of the backing store, so several
processes (or machines) sharing it never admit more than the limit.

A key on a plan also has a monthly quota (``QuotaRule``): the units it was charged in the calendar month
(UTC) that holds ``now``. The same atomic step reads that counter, refuses past a blocking allowance, and
raises it by the cost of an admitted request, so the window and the quota are one store operation and a
refusal of either charges neither.
"""

import datetime as dt
import math
import uuid
from dataclasses import dataclass

from django.db import connection, transaction

from .models import ApiKey, MonthlyUsage, RateLimitEvent, UsageRateLimitEvent, month_start, next_month_start


@dataclass(frozen=True)
class QuotaRule:
    """A key's monthly quota for one decision: the allowance (None: unlimited, counted only) and whether a
    request past it is refused (``block``) or served as overage."""

    allowance: int | None
    block: bool


@dataclass(frozen=True)
class QuotaState:
    """A key's monthly quota after one decision: the units it was charged this month (UTC), its allowance."""

    allowance: int | None  # None: unlimited
    used: int
    period_start: dt.datetime
    resets_at: dt.datetime  # the start of the next month (UTC)
    reset_seconds: int  # whole seconds until resets_at

    @property
    def remaining(self) -> int | None:
        return None if self.allowance is None else max(0, self.allowance - self.used)

    @property
    def overage(self) -> int:
        return 0 if self.allowance is None else max(0, self.used - self.allowance)


def quota_period(now: float) -> tuple[dt.datetime, dt.datetime]:
    """The calendar month (UTC) that holds unix time ``now``: its start and the next month's."""
    moment = dt.datetime.fromtimestamp(now, dt.UTC)
    return month_start(moment), next_month_start(moment)


def quota_rule(api_key: ApiKey) -> QuotaRule | None:
    """``api_key``'s monthly quota: its plan's allowance and overage mode; None without a plan (no quota)."""
    if api_key.plan_id is None:
        return None
    plan = api_key.plan
    return QuotaRule(allowance=plan.monthly_images, block=plan.blocks_overage)


def _quota_state(rule: QuotaRule, *, used: int, now: float) -> QuotaState:
    start, resets_at = quota_period(now)
    return QuotaState(
        allowance=rule.allowance,
        used=used,
        period_start=start,
        resets_at=resets_at,
        reset_seconds=max(1, math.ceil(resets_at.timestamp() - now)),
    )


def _over_quota(rule: QuotaRule | None, *, used: int, cost: int) -> bool:
    return rule is not None and rule.block and rule.allowance is not None and cost > 0 and used + cost > rule.allowance


@dataclass(frozen=True)
class WindowState:
    allowed: bool
    limit: int
    window_seconds: int
    remaining: int  # units still free after this decision
    reset_seconds: int  # whole seconds until the next unit frees (0: nothing in use)
    retry_after: int  # for a refusal: whole seconds until this request's cost would fit
    quota: QuotaState | None = None  # the key's monthly quota, when it has one
    quota_exceeded: bool = False  # refused by the monthly quota (the window was not asked)


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


def _with_quota(state: WindowState, rule: QuotaRule | None, *, used: int, exceeded: bool, now: float) -> WindowState:
    """``state`` with the quota's state; a quota refusal retries at the next month's start."""
    if rule is None:
        return state
    quota = _quota_state(rule, used=used, now=now)
    if not exceeded:
        return WindowState(**{**state.__dict__, "quota": quota})
    return WindowState(
        **{
            **state.__dict__,
            "allowed": False,
            "quota": quota,
            "quota_exceeded": True,
            "retry_after": quota.reset_seconds,
        }
    )


_LOCK_KEY_SQL = f"SELECT id FROM {ApiKey._meta.db_table} WHERE id = %s FOR NO KEY UPDATE"
_MONTHLY = MonthlyUsage._meta.db_table
_MONTHLY_USED_SQL = f"SELECT images FROM {_MONTHLY} WHERE api_key_id = %s AND month = %s"
# One upsert: the (key, month) row is created at the cost or raised by it (SQLite 3.24+ and PostgreSQL).
_MONTHLY_CHARGE_SQL = (
    f"INSERT INTO {_MONTHLY} (api_key_id, month, images) VALUES (%s, %s, %s) "
    f"ON CONFLICT (api_key_id, month) DO UPDATE SET images = {_MONTHLY}.images + excluded.images"
)


def _monthly_used(cursor, *, key_id: int, month: dt.date) -> int:
    """The units charged to the key in ``month`` (its first day) in the database store."""
    cursor.execute(_MONTHLY_USED_SQL, [key_id, month])
    row = cursor.fetchone()
    return int(row[0]) if row else 0


class DatabaseWindowStore:
    """Window state in an events table (``RateLimitEvent`` unless told), counted by the database (SUM, MIN).

    SQLite: the connection opens every transaction IMMEDIATE (see settings), which takes the
    database's write lock before the count. PostgreSQL: the key's row is locked FOR NO KEY UPDATE, which
    serialises the windows of one key but not the inserts that reference it (a log row's foreign-key check takes
    KEY SHARE, which FOR UPDATE would block, and a cycle of such waits was seen as a deadlock under load).
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
        # With a quota, the month's count is read in the window's count (a statement after the lock, so it sees
        # what the last holder committed; a join in the locking statement would read a stale snapshot) and, on
        # PostgreSQL, charged in the event's insert (a data-modifying CTE): no round trip added to the window's.
        self._totals_and_month_sql = (
            f"SELECT SUM(cost), MIN(at), (SELECT images FROM {_MONTHLY} WHERE api_key_id = %s AND month = %s) "
            f"FROM {table} WHERE api_key_id = %s AND at > %s"
        )
        self._record_and_charge_sql = f"WITH charged AS ({_MONTHLY_CHARGE_SQL}) {self._record_sql}"

    def acquire(
        self,
        *,
        key_id: int,
        limit: int,
        window: int,
        cost: int,
        now: float,
        quota: QuotaRule | None = None,
        record: bool = True,
    ) -> WindowState:
        """Admit ``cost`` units at ``now`` if they fit the window (and ``quota``), recording them; ``record``
        False: decide only (nothing is charged)."""
        with transaction.atomic(), connection.cursor() as cursor:
            postgres = connection.vendor == "postgresql"
            if connection.vendor != "sqlite":
                cursor.execute(_LOCK_KEY_SQL, [key_id])
            cursor.execute(self._expire_sql, [key_id, now - window])
            month = quota_period(now)[0].date()
            quota_used = 0
            if quota is None:
                used, oldest = self._totals(cursor, key_id=key_id, since=now - window)
            else:
                cursor.execute(self._totals_and_month_sql, [key_id, month, key_id, now - window])
                used, oldest, quota_used = cursor.fetchone()
                used, quota_used = used or 0, int(quota_used or 0)
            exceeded = _over_quota(quota, used=quota_used, cost=cost)
            allowed = not exceeded and used + cost <= limit
            free_at = None
            if allowed and record:
                if quota is None:
                    cursor.execute(self._record_sql, [key_id, now, cost])
                elif postgres:
                    cursor.execute(self._record_and_charge_sql, [key_id, month, cost, key_id, now, cost])
                else:
                    cursor.execute(self._record_sql, [key_id, now, cost])
                    cursor.execute(_MONTHLY_CHARGE_SQL, [key_id, month, cost])
                used, oldest = used + cost, now if oldest is None else oldest
                quota_used += cost if quota is not None else 0
            elif not allowed and not exceeded:
                events = self._events.objects.filter(api_key_id=key_id, at__gt=now - window).order_by("at")
                free_at = _free_at(events.values_list("at", "cost").iterator(), used=used, cost=cost, limit=limit)
        state = _state(used=used, oldest=oldest, free_at=free_at, allowed=allowed, limit=limit, window=window, now=now)
        return _with_quota(state, quota, used=quota_used, exceeded=exceeded, now=now)

    def problem(self) -> str | None:
        """None: this store is the database, which readiness checks on its own."""
        return None

    def peek(self, *, key_id: int, limit: int, window: int, now: float, quota: QuotaRule | None = None) -> WindowState:
        with connection.cursor() as cursor:
            used, oldest = self._totals(cursor, key_id=key_id, since=now - window)
            quota_used = 0
            if quota is not None:
                quota_used = _monthly_used(cursor, key_id=key_id, month=quota_period(now)[0].date())
        state = _state(used=used, oldest=oldest, free_at=None, allowed=True, limit=limit, window=window, now=now)
        return _with_quota(state, quota, used=quota_used, exceeded=False, now=now)

    def _totals(self, cursor, *, key_id: int, since: float) -> tuple[int, float | None]:
        """Units in use and the oldest admission after ``since``."""
        cursor.execute(self._totals_sql, [key_id, since])
        used, oldest = cursor.fetchone()
        return used or 0, oldest


# Trim, count and (if it fits) record in one server-side step. Members are "cost:unique". Returns the
# decision, the units in use after it, the oldest admission time and, for a refusal, the admission time
# whose expiry makes room (as strings: Redis would truncate Lua floats to integers).
# With a second key (the month's quota counter, ARGV[6] its mode: 0 none, 1 count, 2 block past ARGV[7]),
# the quota is read first, a request past a blocking allowance is refused without touching the window, and an
# admitted request raises the counter (which expires ARGV[8] seconds later). ARGV[9] "0": decide, record nothing.
_ACQUIRE_SCRIPT = """
local key, now, window, limit, cost, member = KEYS[1], tonumber(ARGV[1]), tonumber(ARGV[2]),
    tonumber(ARGV[3]), tonumber(ARGV[4]), ARGV[5]
local qmode, record = tonumber(ARGV[6] or '0'), (ARGV[9] or '1') == '1'
local qused, over = 0, 0
if qmode > 0 then qused = tonumber(redis.call('GET', KEYS[2]) or '0') end
if qmode == 2 and cost > 0 and qused + cost > tonumber(ARGV[7]) then over = 1 end
redis.call('ZREMRANGEBYSCORE', key, '-inf', now - window)
local entries = redis.call('ZRANGE', key, 0, -1, 'WITHSCORES')
local used = 0
for i = 1, #entries, 2 do
  used = used + tonumber(string.match(entries[i], '^(%d+):'))
end
local oldest = entries[2] or ''
local allowed, free_at = 0, ''
if over == 0 and cost > 0 and used + cost <= limit then
  allowed = 1
  if record then
    redis.call('ZADD', key, now, member)
    used = used + cost
    if oldest == '' then oldest = ARGV[1] end
    if qmode > 0 then
      qused = redis.call('INCRBY', KEYS[2], cost)
      redis.call('EXPIRE', KEYS[2], tonumber(ARGV[8]))
    end
  end
elseif over == 0 and cost > 0 then
  local freed = 0
  for i = 1, #entries, 2 do
    freed = freed + tonumber(string.match(entries[i], '^(%d+):'))
    if used - freed + cost <= limit then free_at = entries[i + 1]; break end
  end
end
redis.call('EXPIRE', key, math.ceil(window) + 1)
return {allowed, tostring(used), oldest, free_at, tostring(qused), over}
"""
QUOTA_KEY_GRACE_SECONDS = 86400  # a month's Redis counter outlives the month by this much


class WindowStoreUnavailable(Exception):
    """The shared window store cannot be reached; the caller must not guess a decision."""


class RedisWindowStore:
    """Window state in one Redis sorted set per key, updated by a Lua script (atomic in Redis).

    Shared by every process on every machine that points at the same Redis. Time comes from
    the callers' clocks, so keep the app servers' clocks in sync (NTP), as with any
    distributed limiter.
    """

    def __init__(self, url: str, *, prefix: str = "aiserver:window:", quota_prefix: str = "aiserver:quota:"):
        import redis

        self._redis = redis.Redis.from_url(url, socket_timeout=1.0, socket_connect_timeout=1.0)
        self._script = self._redis.register_script(_ACQUIRE_SCRIPT)
        self._prefix = prefix
        self._quota_prefix = quota_prefix
        self._errors = (redis.RedisError, OSError)

    def acquire(
        self,
        *,
        key_id: int,
        limit: int,
        window: int,
        cost: int,
        now: float,
        quota: QuotaRule | None = None,
        record: bool = True,
    ) -> WindowState:
        """As DatabaseWindowStore.acquire, in one Lua script: window and quota in one round trip."""
        member = f"{cost}:{uuid.uuid4().hex}"
        keys = [f"{self._prefix}{key_id}"]
        args: list[str | int] = [repr(now), window, limit, cost, member]
        if quota is not None:
            start, resets_at = quota_period(now)
            keys.append(f"{self._quota_prefix}{key_id}:{start:%Y-%m}")
            mode = 2 if quota.block and quota.allowance is not None else 1
            ttl = math.ceil(resets_at.timestamp() - now) + QUOTA_KEY_GRACE_SECONDS
            args += [mode, quota.allowance or 0, ttl, 1 if record else 0]
        elif not record:
            args += [0, 0, 0, 0]
        try:
            allowed, used, oldest, free_at, quota_used, exceeded = self._script(keys=keys, args=args)
        except self._errors as exc:
            raise WindowStoreUnavailable(str(exc)) from exc
        state = _state(
            used=int(used),
            oldest=float(oldest) if oldest else None,
            free_at=float(free_at) if free_at else None,
            allowed=(bool(allowed) or cost == 0) and not exceeded,
            limit=limit,
            window=window,
            now=now,
        )
        return _with_quota(state, quota, used=int(quota_used), exceeded=bool(exceeded), now=now)

    def peek(self, *, key_id: int, limit: int, window: int, now: float, quota: QuotaRule | None = None) -> WindowState:
        return self.acquire(key_id=key_id, limit=limit, window=window, cost=0, now=now, quota=quota)

    def problem(self) -> str | None:
        """Why Redis does not answer a PING (the exception's type name), or None when it does (readiness)."""
        try:
            self._redis.ping()
        except self._errors as exc:
            return type(exc).__name__
        return None


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
