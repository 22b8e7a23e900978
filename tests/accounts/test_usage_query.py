"""UsageQuery and UsageTally: the one place each usage number is read and summed."""

import datetime as dt

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from accounts.models import RequestLog
from accounts.selectors import StatusCount, UsageQuery, UsageTally

pytestmark = pytest.mark.django_db
NOON = dt.datetime(2026, 11, 20, 12, 0, tzinfo=dt.UTC)
V1, V2 = "/api/v1/classify", "/api/v2/classify"


def log(api_key, *, ms, endpoint=V2, status=200, at=NOON):
    return RequestLog(
        api_key=api_key, endpoint=endpoint, method="POST", status_code=status, response_time_ms=ms, created_at=at
    )


def test_tally_classes_requests_by_status():
    tally = UsageTally.of(
        [
            StatusCount(group=("a",), status_code=200, requests=3, images=7),
            StatusCount(group=("b",), status_code=201, requests=1, images=1),
            StatusCount(group=("a",), status_code=429, requests=2, images=0),
            StatusCount(group=("b",), status_code=400, requests=1, images=1),
            StatusCount(group=("b",), status_code=503, requests=1, images=0),
        ]
    )
    assert (tally.requests, tally.images, tally.successful, tally.throttled, tally.errors) == (8, 9, 4, 2, 2)
    assert tally.by_status == {"200": 3, "201": 1, "400": 1, "429": 2, "503": 1}
    assert tally.success_rate == 50.0
    assert UsageTally.of([]).success_rate == 0.0 and UsageTally.of([]).by_status == {}


def test_status_counts_group_by_fields_and_utc_day(make_key):
    alpha = make_key("alpha")[0]
    RequestLog.objects.bulk_create(
        [
            log(alpha, ms=1.0, endpoint=V1),
            log(alpha, ms=1.0, status=429),
            log(alpha, ms=1.0, at=NOON + dt.timedelta(hours=13)),  # the next UTC day
        ]
    )
    counts = UsageQuery(api_key=alpha).status_counts("endpoint", "day")
    assert sorted((c.group, c.status_code, c.requests) for c in counts) == [
        ((V1, dt.date(2026, 11, 20)), 200, 1),
        ((V2, dt.date(2026, 11, 20)), 429, 1),
        ((V2, dt.date(2026, 11, 21)), 200, 1),
    ]


@pytest.mark.parametrize("shape", ["every key over a range", "one key", "one key to some endpoints"])
def test_latency_reads_at_most_the_sample_bound_of_response_times(make_key, settings, shape):
    """Two keys' requests interleave, so one key's ids are every other id: a sample of every n-th id
    (n even) would read all of them."""
    settings.ACCOUNTS_DASHBOARD_LATENCY_SAMPLE_ROWS = bound = 10
    alpha, beta = make_key("alpha")[0], make_key("beta")[0]
    rows = []
    for i in range(200):
        at = NOON + dt.timedelta(seconds=i)
        rows += [log(alpha, ms=float(i + 1), at=at, endpoint=V1 if i % 2 else V2), log(beta, ms=5000.0, at=at)]
    RequestLog.objects.bulk_create(rows)
    until = NOON + dt.timedelta(hours=1)
    query = {
        "every key over a range": UsageQuery(since=NOON, until=until),
        "one key": UsageQuery(api_key=alpha, since=NOON, until=until),
        "one key to some endpoints": UsageQuery(api_key=alpha, endpoints=(V1, V2), until=until),
    }[shape]

    with CaptureQueriesContext(connection) as queries:
        latency = query.latency_percentiles()

    if connection.vendor == "postgresql":  # exact, in SQL: one row comes back
        assert [q["sql"] for q in queries if "percentile_disc" in q["sql"]]
        return
    sample = query.response_time_sample()
    assert bound // 2 <= len(sample) <= bound and sample == sorted(sample)
    if shape != "every key over a range":  # alpha's 1..200 ms, spread over the whole range
        assert abs(latency["p50"] - 100.0) <= 20 and latency["p99"] >= 180.0
