import base64
import datetime as dt

import pytest
from django.db import connection

from accounts.models import ApiKey, RequestLog
from accounts.selectors import UsageQuery, percentile
from tests.model_weights import picture

pytestmark = pytest.mark.django_db
URL = "/api/v2/usage"
NOW = dt.datetime(2026, 11, 22, 12, 0, tzinfo=dt.UTC)


@pytest.fixture
def keyed(client, make_key):
    api_key, raw = make_key(rate_limit=10, rate_window_seconds=60)
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {raw}")
    return client, api_key


def log(api_key, *, endpoint="/api/v2/classify", status=200, ms=10.0, images=1, at=NOW, model="", version=""):
    return RequestLog.objects.create(
        api_key=api_key,
        endpoint=endpoint,
        method="POST",
        status_code=status,
        response_time_ms=ms,
        images=images,
        created_at=at,
        model_name=model,
        model_version=version,
    )


@pytest.mark.usefixtures("loaded_model")
def test_usage_adds_up_exactly_to_what_was_sent_over_v1_and_v2(keyed):
    client, _ = keyed
    image = base64.b64encode(picture("goldfish")).decode()
    assert client.post("/api/v2/classify", {"images": [{"image": image}] * 4}, format="json").status_code == 200
    bad = {"images": [{"image": image}, {"image": "bm90IGFuIGltYWdl"}]}
    assert client.post("/api/v2/classify", bad, format="json").status_code == 200
    assert client.post("/api/v1/classify", {"image": image}, format="json").status_code == 200
    assert client.post("/api/v2/classify", {"images": [{"image": image}] * 4}, format="json").status_code == 429
    assert client.post("/api/v2/classify", {"images": []}, format="json").status_code == 400
    client.get("/api/v2/models")

    body = client.get(URL).json()
    # The malformed (400) batch cost one unit, as a v1 request does, and is counted as what it cost.
    assert body["requests"] == 5 and body["images"] == 8 and body["throttled"] == 1
    assert body["by_endpoint"] == [
        {"endpoint": "/api/v1/classify", "requests": 1, "images": 1},
        {"endpoint": "/api/v2/classify", "requests": 4, "images": 7},
    ]
    assert body["by_status"] == {"200": 3, "400": 1, "429": 1}
    assert body["by_model"] == [
        {"name": "resnet18", "version": "settings", "requests": 3, "images": 7}
    ]  # the answered ones
    assert body["limit"]["limit"] == 10 and body["limit"]["window_seconds"] == 60
    assert body["limit"]["remaining"] == 2 and 0 < body["limit"]["reset_seconds"] <= 60
    assert sum(day["images"] for day in body["daily"]) == 8


def test_other_keys_and_other_endpoints_are_not_counted(keyed, make_key):
    client, api_key = keyed
    other, _ = make_key(name="other")
    log(api_key, images=3)
    log(other, images=5)
    log(api_key, endpoint="/api/v1/usage", images=0)
    body = client.get(URL, {"since": "2026-01-01T00:00:00Z", "until": "2026-12-01T00:00:00Z"}).json()
    assert body["requests"] == 1 and body["images"] == 3


def test_usage_breaks_the_answered_requests_down_by_model_and_version(keyed, make_key):
    client, api_key = keyed
    log(api_key, model="resnet18", images=4)
    log(api_key, model="resnet18", images=2, endpoint="/api/v1/classify")
    log(api_key, model="flowers", version="1", images=3)
    log(api_key, model="flowers", version="2", images=5)
    log(api_key, model="flowers", version="2", images=1)
    log(api_key, status=429, images=0)  # refused: no model answered
    log(make_key(name="other")[0], model="flowers", version="2", images=16)  # another key's
    log(api_key, model="flowers", version="2", images=7, at=NOW - dt.timedelta(days=3))  # before the range
    body = client.get(
        URL, {"since": (NOW - dt.timedelta(days=1)).isoformat(), "until": (NOW + dt.timedelta(hours=1)).isoformat()}
    ).json()
    assert body["by_model"] == [
        {"name": "flowers", "version": "1", "requests": 1, "images": 3},
        {"name": "flowers", "version": "2", "requests": 2, "images": 6},
        {"name": "resnet18", "version": "", "requests": 2, "images": 6},
    ]
    assert body["requests"] == 6 and body["images"] == 15


def test_usage_by_model_is_empty_without_answered_requests(keyed):
    client, api_key = keyed
    log(api_key, status=429, images=0)
    assert client.get(URL, {"since": "2026-01-01T00:00:00Z"}).json()["by_model"] == []


def test_latency_percentiles_use_the_nearest_rank(keyed):
    client, api_key = keyed
    for ms in range(100, 0, -1):
        log(api_key, ms=float(ms))
    latency = client.get(URL, {"since": "2026-11-22T00:00:00Z"}).json()["latency_ms"]
    assert latency == {"p50": 50.0, "p95": 95.0, "p99": 99.0}


@pytest.mark.parametrize(
    "values,q,expected", [([], 50, None), ([7.0], 99, 7.0), ([1.0, 2.0], 50, 1.0), ([1.0, 2.0, 3.0, 4.0], 95, 4.0)]
)
def test_percentile_edges(values, q, expected):
    assert percentile(values, q) == expected


def test_since_until_bounds_the_range_and_the_daily_series_has_zero_days(keyed):
    client, api_key = keyed
    log(api_key, at=NOW - dt.timedelta(days=3), images=2)
    log(api_key, at=NOW - dt.timedelta(days=1), images=4)
    log(api_key, at=NOW, images=8)  # until is exclusive
    body = client.get(URL, {"since": "2026-11-19T00:00:00Z", "until": NOW.isoformat()}).json()
    assert body["requests"] == 2 and body["images"] == 6
    assert body["daily"] == [
        {"date": "2026-11-19", "requests": 1, "images": 2},
        {"date": "2026-11-20", "requests": 0, "images": 0},
        {"date": "2026-11-21", "requests": 1, "images": 4},
        {"date": "2026-11-22", "requests": 0, "images": 0},
    ]
    assert body["since"] == "2026-11-19T00:00:00Z" and body["until"] == "2026-11-22T12:00:00Z"


def test_days_counts_back_from_now(keyed):
    client, api_key = keyed
    from django.utils import timezone

    now = timezone.now()
    ApiKey.objects.filter(pk=api_key.pk).update(created_at=now - dt.timedelta(days=30))  # no since: from then
    log(api_key, at=now - dt.timedelta(days=10), images=5)
    log(api_key, at=now - dt.timedelta(hours=30), images=3)
    log(api_key, at=now - dt.timedelta(minutes=1), images=1)
    assert client.get(URL, {"days": 2}).json()["images"] == 4
    assert client.get(URL, {"days": 11}).json()["images"] == 9
    assert client.get(URL).json()["images"] == 9
    assert len(client.get(URL, {"days": 2}).json()["daily"]) == 3  # the partial first day, one full day, today


@pytest.mark.parametrize(
    "query",
    [
        {"days": 0},
        {"days": 367},
        {"days": 2, "since": "2026-11-01T00:00:00Z"},
        {"since": "2026-11-02T00:00:00Z", "until": "2026-11-01T00:00:00Z"},
        {"since": "yesterday"},
    ],
)
def test_bad_ranges_are_400(keyed, query):
    client, _ = keyed
    response = client.get(URL, query)
    assert response.status_code == 400 and response.json()["code"]


def test_an_empty_range_reports_zeros_and_no_latency(keyed):
    client, _ = keyed
    body = client.get(URL).json()
    assert body["requests"] == 0 and body["images"] == 0
    assert body["daily"] and all(
        day["requests"] == day["images"] == 0 for day in body["daily"]
    )  # since the key was made
    assert body["latency_ms"] == {"p50": None, "p95": None, "p99": None}
    assert body["limit"]["remaining"] == 10 and body["limit"]["reset_seconds"] == 0


def test_usage_requires_a_key(client):
    assert client.get(URL).status_code == 401


def test_latency_percentiles_read_at_most_the_sample_bound(keyed, make_key, settings, monkeypatch):
    client, api_key = keyed
    settings.ACCOUNTS_DASHBOARD_LATENCY_SAMPLE_ROWS = 10
    other = make_key(name="other")[0]
    for ms in range(1, 201):  # the two keys' ids interleave
        log(api_key, ms=float(ms))
        log(other, ms=5000.0)
    samples = []
    read_sample = UsageQuery.response_time_sample

    def recorded_sample(self, **kwargs):
        samples.append(read_sample(self, **kwargs))
        return samples[-1]

    monkeypatch.setattr(UsageQuery, "response_time_sample", recorded_sample)

    latency = client.get(URL, {"since": "2026-11-22T00:00:00Z"}).json()["latency_ms"]

    if connection.vendor == "postgresql":  # exact, in SQL
        assert samples == [] and latency == {"p50": 100.0, "p95": 190.0, "p99": 198.0}
    else:
        assert len(samples) == 1 and 5 <= len(samples[0]) <= settings.ACCOUNTS_DASHBOARD_LATENCY_SAMPLE_ROWS
        assert abs(latency["p50"] - 100.0) <= 20 and latency["p99"] >= 180.0
