import pytest

from accounts.services import api_key_create
from accounts.windows import DatabaseWindowStore, RedisWindowStore, WindowStoreUnavailable
from tests.services import require_redis

pytestmark = pytest.mark.django_db


@pytest.fixture(params=["database", "redis"])
def store(request):
    return DatabaseWindowStore() if request.param == "database" else RedisWindowStore(require_redis())


@pytest.fixture
def acquire(store):
    api_key, _ = api_key_create(name="window", rate_limit=3, rate_window_seconds=10)

    def acquire(now, cost=1):
        return store.acquire(key_id=api_key.pk, limit=3, window=10, cost=cost, now=now)

    return acquire


def test_admits_exactly_the_limit_then_refuses_with_retry_after(acquire):
    assert [acquire(t).allowed for t in (100.0, 101.0, 102.0)] == [True, True, True]
    refused = acquire(103.0)
    assert not refused.allowed
    assert refused.remaining == 0
    assert refused.retry_after == 7  # the request at t=100 leaves the window at t=110


def test_window_slides_one_request_at_a_time_not_in_fixed_blocks(acquire):
    for t in (100.0, 104.0, 108.0):
        assert acquire(t).allowed
    assert acquire(110.5).allowed  # t=100 has left the window
    assert not acquire(111.0).allowed  # t=104 is still inside: a fixed window would have reset here
    assert acquire(114.5).allowed


def test_refused_requests_do_not_use_quota(acquire):
    for t in (100.0, 100.1, 100.2):
        acquire(t)
    for t in (101.0, 102.0, 103.0):
        assert not acquire(t).allowed
    assert acquire(110.05).allowed
    assert not acquire(110.06).allowed


def test_cost_weighted_request_waits_until_enough_units_free(acquire):
    assert acquire(100.0).allowed
    assert acquire(101.0).allowed
    refused = acquire(102.0, cost=3)
    assert not refused.allowed
    assert refused.retry_after == 9  # both earlier units must leave: t=101 leaves at t=111
    assert acquire(111.5, cost=3).allowed


def test_headers_state_reports_remaining_and_reset(acquire):
    state = acquire(100.0)
    assert (state.limit, state.remaining, state.reset_seconds) == (3, 2, 10)


def test_unreachable_redis_raises_instead_of_guessing():
    store = RedisWindowStore("redis://127.0.0.1:1/0")
    with pytest.raises(WindowStoreUnavailable):
        store.acquire(key_id=1, limit=3, window=10, cost=1, now=100.0)


@pytest.mark.parametrize("backend", ["database", "redis"])
def test_the_usage_window_store_counts_apart_from_the_classification_store(backend, settings):
    from accounts.models import RateLimitEvent, UsageRateLimitEvent
    from accounts.windows import usage_window_store_from_settings, window_store_from_settings

    settings.REDIS_URL = require_redis() if backend == "redis" else ""
    classify, usage = window_store_from_settings(), usage_window_store_from_settings()
    if backend == "redis":
        classify._redis.flushdb()
    api_key, _ = api_key_create(name="two-windows", rate_limit=2, rate_window_seconds=10)
    window = {"key_id": api_key.pk, "limit": 2, "window": 10}
    assert [usage.acquire(**window, cost=1, now=100.0 + t).allowed for t in range(3)] == [True, True, False]
    assert classify.peek(**window, now=103.0).remaining == 2
    assert classify.acquire(**window, cost=2, now=103.0).allowed
    assert not usage.acquire(**window, cost=1, now=104.0).allowed
    if backend == "database":
        assert RateLimitEvent.objects.filter(api_key=api_key).count() == 1
        assert UsageRateLimitEvent.objects.filter(api_key=api_key).count() == 2
