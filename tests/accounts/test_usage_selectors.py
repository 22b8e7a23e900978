"""The staff dashboard's reads: every key's requests per bucket, status mix, latency, top keys."""

import datetime as dt

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from accounts.models import RepeatedThrottleCount, RequestLog
from accounts.selectors import (
    NO_KEY_LABEL,
    OTHER_KEYS_LABEL,
    latency_percentiles,
    percentile,
    status_mix,
    top_keys,
    usage_dashboard,
    usage_report,
    usage_timeseries,
)

pytestmark = pytest.mark.django_db
UTC = dt.UTC
NOON = dt.datetime(2026, 11, 20, 12, 0, tzinfo=UTC)


def log(api_key=None, *, at, status=200, ms=10.0, images=1, endpoint="/api/v2/classify"):
    return RequestLog.objects.create(
        api_key=api_key,
        endpoint=endpoint,
        method="POST",
        status_code=status,
        response_time_ms=ms,
        created_at=at,
        images=images if status == 200 else 0,
    )


@pytest.fixture
def keys(make_key):
    return make_key("alpha")[0], make_key("beta")[0]


def test_timeseries_counts_each_keys_requests_per_hour_with_zero_hours(keys):
    alpha, beta = keys
    log(alpha, at=NOON + dt.timedelta(minutes=5))
    log(alpha, at=NOON + dt.timedelta(minutes=59))
    log(alpha, at=NOON + dt.timedelta(hours=2, minutes=1))
    log(beta, at=NOON + dt.timedelta(minutes=30), status=429)
    log(None, at=NOON + dt.timedelta(hours=1), status=401)
    log(alpha, at=NOON - dt.timedelta(minutes=1))  # before the range
    log(alpha, at=NOON + dt.timedelta(hours=3))  # at `until`: excluded

    series = usage_timeseries(since=NOON, until=NOON + dt.timedelta(hours=3), bucket="hour")

    assert series.starts == [NOON + dt.timedelta(hours=h) for h in range(3)]
    assert [(s.label, s.counts) for s in series.series] == [
        ("alpha", [2, 0, 1]),
        (NO_KEY_LABEL, [0, 1, 0]),
        ("beta", [1, 0, 0]),
    ]


def test_timeseries_by_day_starts_at_midnight_utc_and_can_show_one_key(keys):
    alpha, beta = keys
    log(alpha, at=NOON)
    log(alpha, at=NOON + dt.timedelta(days=1, hours=11))
    log(beta, at=NOON + dt.timedelta(days=1))

    series = usage_timeseries(since=NOON, until=NOON + dt.timedelta(days=2), bucket="day", api_key=alpha)

    assert series.starts == [dt.datetime(2026, 11, d, tzinfo=UTC) for d in (20, 21, 22)]
    assert [(s.label, s.counts) for s in series.series] == [("alpha", [1, 1, 0])]


def test_timeseries_sums_the_quieter_keys_beyond_the_busiest_few(make_key):
    for i, count in enumerate([5, 4, 3, 2, 1]):
        api_key = make_key(f"k{i}")[0]
        for _ in range(count):
            log(api_key, at=NOON)

    series = usage_timeseries(since=NOON, until=NOON + dt.timedelta(hours=1), bucket="hour", max_series=2)

    assert [(s.label, s.counts) for s in series.series] == [("k0", [5]), ("k1", [4]), (OTHER_KEYS_LABEL, [6])]


def test_timeseries_refuses_an_unknown_bucket():
    with pytest.raises(ValueError):
        usage_timeseries(since=NOON, until=NOON + dt.timedelta(hours=1), bucket="minute")


def test_status_mix_and_latency_percentiles_over_the_range(keys):
    alpha, beta = keys
    for ms in range(1, 101):  # 1..100 ms, all 200s
        log(alpha, at=NOON, ms=float(ms))
    log(beta, at=NOON, status=429, ms=1000.0)
    log(None, at=NOON, status=401, ms=2000.0)
    log(alpha, at=NOON - dt.timedelta(seconds=1), status=500, ms=9999.0)  # outside
    since, until = NOON, NOON + dt.timedelta(minutes=1)

    assert status_mix(since=since, until=until) == {"200": 100, "401": 1, "429": 1}
    assert latency_percentiles(since=since, until=until) == {
        "p50": 51.0,
        "p95": 97.0,
        "p99": 1000.0,
    }  # nearest rank of 102
    assert latency_percentiles(since=since, until=until, api_key=alpha) == {"p50": 50.0, "p95": 95.0, "p99": 99.0}
    assert latency_percentiles(since=until, until=until + dt.timedelta(hours=1)) == {
        "p50": None,
        "p95": None,
        "p99": None,
    }


def test_top_keys_rank_by_requests_with_images_throttled_and_errors(keys):
    alpha, beta = keys
    for _ in range(3):
        log(alpha, at=NOON, images=4)
    log(alpha, at=NOON, status=429)
    log(alpha, at=NOON, status=400)
    log(beta, at=NOON, images=2)
    log(None, at=NOON, status=401)
    log(None, at=NOON, status=401)

    rows = top_keys(since=NOON, until=NOON + dt.timedelta(minutes=1))

    assert [(r.name, r.prefix, r.requests, r.images, r.throttled, r.errors) for r in rows] == [
        ("alpha", alpha.prefix, 5, 12, 1, 1),
        (NO_KEY_LABEL, "", 2, 0, 0, 2),
        ("beta", beta.prefix, 1, 2, 0, 0),
    ]
    assert rows[0].key_id == alpha.pk and rows[1].key_id is None
    assert [r.name for r in top_keys(since=NOON, until=NOON + dt.timedelta(minutes=1), limit=1)] == ["alpha"]


def test_dashboard_totals_agree_with_its_parts_and_the_key_filter(keys):
    alpha, beta = keys
    log(alpha, at=NOON)
    log(alpha, at=NOON, status=429)
    log(beta, at=NOON, status=429)
    log(beta, at=NOON)
    log(beta, at=NOON)
    since, until = NOON - dt.timedelta(hours=1), NOON + dt.timedelta(hours=1)

    everyone = usage_dashboard(since=since, until=until, bucket="hour")
    only_beta = usage_dashboard(since=since, until=until, bucket="hour", api_key=beta)

    assert (everyone.requests, everyone.throttled) == (5, 2)
    assert everyone.status_mix == {"200": 3, "429": 2}
    assert sum(sum(s.counts) for s in everyone.timeseries.series) == 5
    assert (only_beta.requests, only_beta.throttled) == (3, 1)
    assert [r.name for r in only_beta.top_keys] == ["beta"]
    assert [s.label for s in only_beta.timeseries.series] == ["beta"]


def test_latency_percentiles_read_a_bounded_even_sample_on_sqlite(keys, settings):
    settings.ACCOUNTS_DASHBOARD_LATENCY_SAMPLE_ROWS = 10
    for ms in range(1, 201):
        log(keys[0], at=NOON, ms=float(ms))
    since, until = NOON, NOON + dt.timedelta(minutes=1)

    with CaptureQueriesContext(connection) as queries:
        latency = latency_percentiles(since=since, until=until, total=200)

    if connection.vendor == "postgresql":
        assert latency == {"p50": 100.0, "p95": 190.0, "p99": 198.0}  # exact, in SQL
        assert len(queries) == 1 and "percentile_disc" in queries[0]["sql"]
    else:  # every 20th id from the range's first: 10 of the 200 times, spread over the whole range
        ids = sorted(RequestLog.objects.values_list("id", flat=True))
        sample = sorted(float(ms) for ms, pk in zip(range(1, 201), ids) if (pk - ids[0]) % 20 == 0)
        assert len(sample) == settings.ACCOUNTS_DASHBOARD_LATENCY_SAMPLE_ROWS
        assert latency == {f"p{q}": percentile(sample, q) for q in (50, 95, 99)}
        assert abs(latency["p50"] - 100.0) <= 20 and latency["p99"] >= 180.0
        assert len(queries) == 3  # the range's first and last id, then the sample by primary key
        only_alpha = latency_percentiles(since=since, until=until, api_key=keys[0], total=200)
        assert abs(only_alpha["p50"] - 100.0) <= 20


def test_repeated_429s_count_in_every_number_but_the_latencies(keys):
    alpha, beta = keys
    log(alpha, at=NOON + dt.timedelta(minutes=5), ms=40.0)
    log(alpha, at=NOON + dt.timedelta(minutes=5, seconds=1), status=429, ms=1.0)  # the minute's first 429
    RepeatedThrottleCount.objects.create(
        api_key=alpha, minute=NOON + dt.timedelta(minutes=5), endpoint="/api/v2/classify", repeats=6
    )
    RepeatedThrottleCount.objects.create(api_key=beta, minute=NOON + dt.timedelta(hours=1), endpoint="/x", repeats=2)
    RepeatedThrottleCount.objects.create(api_key=alpha, minute=NOON + dt.timedelta(hours=3), endpoint="/x", repeats=9)

    dashboard = usage_dashboard(since=NOON, until=NOON + dt.timedelta(hours=3), bucket="hour")

    assert (dashboard.requests, dashboard.throttled) == (2 + 6 + 2, 1 + 6 + 2)  # the last minute is past `until`
    assert dashboard.status_mix == {"200": 1, "429": 9}
    assert [(s.label, s.counts) for s in dashboard.timeseries.series] == [("alpha", [8, 0, 0]), ("beta", [0, 2, 0])]
    assert [(k.name, k.requests, k.throttled) for k in dashboard.top_keys] == [("alpha", 8, 7), ("beta", 2, 2)]
    assert dashboard.latency_ms["p50"] == 1.0 and dashboard.latency_ms["p99"] == 40.0  # the two logged requests

    report = usage_report(api_key=alpha, endpoints=["/api/v2/classify"], since=NOON, until=NOON + dt.timedelta(days=1))
    assert (report.requests, report.throttled, report.by_status) == (8, 7, {"200": 1, "429": 7})
    assert [(day.date, day.requests) for day in report.daily][0] == (NOON.date(), 8)
