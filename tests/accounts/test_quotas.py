"""The monthly quota in both window stores: counted with the window in one operation, per key per calendar
month (UTC), exact at the month's edges, refusals charging nothing."""

import datetime as dt

import pytest

from accounts.models import MonthlyUsage
from accounts.services import api_key_create
from accounts.windows import DatabaseWindowStore, QuotaRule, RedisWindowStore, quota_period
from tests.services import require_redis

pytestmark = pytest.mark.django_db

NOV_30_LAST_MS = dt.datetime(2026, 11, 30, 23, 59, 59, 999000, tzinfo=dt.UTC).timestamp()
DEC_1 = dt.datetime(2026, 12, 1, tzinfo=dt.UTC).timestamp()
MID_NOV = dt.datetime(2026, 11, 15, 12, tzinfo=dt.UTC).timestamp()
BLOCK_3 = QuotaRule(allowance=3, block=True)


@pytest.fixture(params=["database", "redis"])
def store(request):
    return DatabaseWindowStore() if request.param == "database" else RedisWindowStore(require_redis())


@pytest.fixture
def acquire(store):
    api_key, _ = api_key_create(name="quota", rate_limit=100, rate_window_seconds=10)

    def acquire(now, cost=1, quota=BLOCK_3, limit=100, record=True):
        return store.acquire(key_id=api_key.pk, limit=limit, window=10, cost=cost, now=now, quota=quota, record=record)

    acquire.peek = lambda now, quota=BLOCK_3: store.peek(key_id=api_key.pk, limit=100, window=10, now=now, quota=quota)
    return acquire


def test_admits_exactly_the_allowance_then_refuses_until_next_month(acquire):
    states = [acquire(MID_NOV + t) for t in range(4)]
    assert [s.allowed for s in states] == [True, True, True, False]
    refused = states[-1]
    assert refused.quota_exceeded
    assert refused.quota.used == 3 and refused.quota.remaining == 0
    assert refused.quota.resets_at == dt.datetime(2026, 12, 1, tzinfo=dt.UTC)
    assert refused.retry_after == int(DEC_1 - (MID_NOV + 3))  # to the next month's start, to the second


def test_a_quota_refusal_charges_neither_the_quota_nor_the_window(acquire):
    for t in range(3):
        acquire(MID_NOV + t)
    for t in range(3, 6):
        assert acquire(MID_NOV + t).quota_exceeded
    state = acquire.peek(MID_NOV + 6)
    assert state.quota.used == 3
    assert state.remaining == 100 - 3  # the window holds only the admitted three


def test_a_batch_that_does_not_fit_the_rest_of_the_allowance_is_refused_whole(acquire):
    assert acquire(MID_NOV, cost=2).allowed
    assert acquire(MID_NOV + 1, cost=2).quota_exceeded
    assert acquire(MID_NOV + 2, cost=1).allowed  # exactly the last image fits


def test_a_window_refusal_charges_nothing_to_the_quota(acquire):
    assert acquire(MID_NOV, limit=1).allowed
    refused = acquire(MID_NOV + 1, limit=1)
    assert not refused.allowed and not refused.quota_exceeded  # the window refused: its own 429
    assert refused.retry_after == 9
    assert acquire.peek(MID_NOV + 2).quota.used == 1


def test_the_last_millisecond_of_a_month_counts_in_it_and_midnight_in_the_next(acquire):
    assert acquire(NOV_30_LAST_MS - 20, cost=2).allowed
    last = acquire(NOV_30_LAST_MS)
    assert last.allowed and last.quota.used == 3
    assert last.quota.period_start == dt.datetime(2026, 11, 1, tzinfo=dt.UTC)
    assert acquire(NOV_30_LAST_MS + 0.0005).quota_exceeded  # still November, to the microsecond
    first = acquire(DEC_1)
    assert first.allowed and first.quota.used == 1  # December's allowance, whole
    assert first.quota.period_start == dt.datetime(2026, 12, 1, tzinfo=dt.UTC)
    assert first.quota.reset_seconds == 31 * 86400


def test_overage_allowed_serves_past_the_allowance_and_counts_it(acquire):
    allow = QuotaRule(allowance=3, block=False)
    states = [acquire(MID_NOV + t, quota=allow) for t in range(5)]
    assert all(s.allowed for s in states)
    assert states[-1].quota.used == 5 and states[-1].quota.overage == 2 and states[-1].quota.remaining == 0


def test_an_unlimited_plan_is_counted_without_a_limit(acquire):
    unlimited = QuotaRule(allowance=None, block=True)
    for t in range(5):
        assert acquire(MID_NOV + t, quota=unlimited).allowed
    state = acquire.peek(MID_NOV + 6, quota=unlimited)
    assert state.quota.used == 5 and state.quota.remaining is None and state.quota.overage == 0


def test_deciding_without_recording_charges_nothing(acquire):
    for t in range(2):
        acquire(MID_NOV + t)
    assert acquire(MID_NOV + 2, record=False).allowed
    assert acquire(MID_NOV + 3, cost=2, record=False).quota_exceeded
    assert acquire.peek(MID_NOV + 4).quota.used == 2


def test_without_a_quota_nothing_is_counted(acquire):
    state = acquire(MID_NOV, quota=None)
    assert state.allowed and state.quota is None and not state.quota_exceeded
    assert not MonthlyUsage.objects.exists()


def test_the_database_store_keeps_one_row_per_key_and_month(make_key):
    api_key, _ = make_key(name="rows")
    store = DatabaseWindowStore()
    for now in (MID_NOV, MID_NOV + 20, DEC_1):
        store.acquire(key_id=api_key.pk, limit=10, window=10, cost=2, now=now, quota=BLOCK_3 if now != DEC_1 else None)
    store.acquire(key_id=api_key.pk, limit=10, window=10, cost=1, now=DEC_1 + 20, quota=BLOCK_3)
    rows = dict(MonthlyUsage.objects.filter(api_key=api_key).values_list("month", "images"))
    assert rows == {dt.date(2026, 11, 1): 2, dt.date(2026, 12, 1): 1}  # the second November batch of 2 was refused


def test_quota_period_is_the_calendar_month_in_utc():
    start, end = quota_period(dt.datetime(2026, 12, 31, 23, 30, tzinfo=dt.UTC).timestamp())
    assert (start, end) == (dt.datetime(2026, 12, 1, tzinfo=dt.UTC), dt.datetime(2027, 1, 1, tzinfo=dt.UTC))
