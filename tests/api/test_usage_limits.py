"""The usage endpoints' own bounds: the longest range (ACCOUNTS_USAGE_MAX_RANGE_DAYS) and their own per-key rate
limit (ACCOUNTS_USAGE_RATE_LIMIT per ACCOUNTS_USAGE_RATE_WINDOW_SECONDS), which never spends classification quota."""

import base64
import datetime as dt

import pytest
from django.conf import settings as django_settings

from accounts.models import ApiKey, RequestLog
from classifier.api.throttling import UsageThrottle
from tests.model_weights import picture

pytestmark = pytest.mark.django_db
V1, V2 = "/api/v1/usage", "/api/v2/usage"
UNTIL = dt.datetime(2026, 11, 22, 12, 0, tzinfo=dt.UTC)


@pytest.fixture
def keyed(client, make_key):
    api_key, raw = make_key(rate_limit=10, rate_window_seconds=60)
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {raw}")
    return client, api_key


@pytest.fixture
def frozen_usage_clock(monkeypatch):
    """The usage throttle's clock stands still at t=1000 s, so Retry-After is exactly the window."""
    monkeypatch.setattr(UsageThrottle, "clock", staticmethod(lambda: 1000.0))


def iso(moment: dt.datetime) -> str:
    return moment.isoformat().replace("+00:00", "Z")


def test_the_maximum_range_is_366_days_by_default():
    assert django_settings.ACCOUNTS_USAGE_MAX_RANGE_DAYS == 366


def test_a_range_of_exactly_the_maximum_is_reported(keyed):
    client, _ = keyed
    since = UNTIL - dt.timedelta(days=django_settings.ACCOUNTS_USAGE_MAX_RANGE_DAYS)
    response = client.get(V2, {"since": iso(since), "until": iso(UNTIL)})
    assert response.status_code == 200
    assert len(response.json()["daily"]) == django_settings.ACCOUNTS_USAGE_MAX_RANGE_DAYS + 1  # two partial days


def test_a_range_one_second_over_the_maximum_is_400_range_too_long(keyed):
    client, _ = keyed
    since = UNTIL - dt.timedelta(days=django_settings.ACCOUNTS_USAGE_MAX_RANGE_DAYS, seconds=1)
    response = client.get(V2, {"since": iso(since), "until": iso(UNTIL)})
    assert response.status_code == 400
    assert response.json()["code"] == "range_too_long"
    assert str(django_settings.ACCOUNTS_USAGE_MAX_RANGE_DAYS) in response.json()["detail"]


@pytest.mark.parametrize(
    "query",
    [
        {"since": "0001-01-02T00:00:00Z", "until": "9999-12-30T00:00:00Z"},  # the probe from issue 13
        {"since": "2000-01-01T00:00:00Z"},  # until defaults to now
        {"days": 367},
    ],
)
def test_longer_ranges_are_refused_before_any_query(keyed, query, django_assert_max_num_queries):
    client, _ = keyed
    with django_assert_max_num_queries(8):  # the key lookup and the usage window, not the logs
        response = client.get(V2, query)
    assert response.status_code == 400 and response.json()["code"] == "range_too_long"


def test_the_maximum_range_is_a_setting(keyed, settings):
    settings.ACCOUNTS_USAGE_MAX_RANGE_DAYS = 2
    client, _ = keyed
    assert client.get(V2, {"days": 2}).status_code == 200
    assert client.get(V2, {"days": 3}).json()["code"] == "range_too_long"
    assert (
        client.get(V2, {"since": iso(UNTIL - dt.timedelta(days=2, seconds=1)), "until": iso(UNTIL)}).status_code == 400
    )


def test_without_since_the_report_starts_when_the_key_was_made(keyed):
    client, api_key = keyed
    body = client.get(V2).json()
    assert dt.datetime.fromisoformat(body["since"]) == api_key.created_at
    assert len(body["daily"]) in (1, 2)


def test_without_since_an_old_key_gets_the_longest_range_back_from_until(keyed):
    client, api_key = keyed
    ApiKey.objects.filter(pk=api_key.pk).update(created_at=UNTIL - dt.timedelta(days=1000))
    RequestLog.objects.create(
        api_key=api_key,
        endpoint="/api/v2/classify",
        method="POST",
        status_code=200,
        response_time_ms=1.0,
        images=2,
        created_at=UNTIL - dt.timedelta(days=900),
    )
    body = client.get(V2, {"until": iso(UNTIL)}).json()
    assert body["since"] == iso(UNTIL - dt.timedelta(days=django_settings.ACCOUNTS_USAGE_MAX_RANGE_DAYS))
    assert body["images"] == 0  # the request 900 days before until is outside the longest range


def test_the_range_is_documented_in_the_openapi_schema(client):
    operation = client.get("/api/schema/", HTTP_ACCEPT="application/json").json()["paths"][V2]["get"]
    assert "range_too_long" in operation["responses"]["400"]["description"]
    assert "429" in operation["responses"]
    days = next(p for p in operation["parameters"] if p["name"] == "days")
    assert days["schema"]["maximum"] == django_settings.ACCOUNTS_USAGE_MAX_RANGE_DAYS


@pytest.mark.parametrize("url", [V1, V2])
def test_usage_requests_past_their_limit_are_429_with_retry_after_and_the_quota_headers(
    keyed, settings, frozen_usage_clock, url
):
    settings.ACCOUNTS_USAGE_RATE_LIMIT = 3
    settings.ACCOUNTS_USAGE_RATE_WINDOW_SECONDS = 30
    client, _ = keyed
    answers = [client.get(url) for _ in range(4)]
    assert [r.status_code for r in answers] == [200, 200, 200, 429]
    assert answers[0]["X-RateLimit-Limit"] == "3" and answers[0]["X-RateLimit-Remaining"] == "2"
    refused = answers[3]
    assert refused.json()["code"] == "throttled"
    assert refused["Retry-After"] == "30" and refused["X-RateLimit-Remaining"] == "0"
    assert refused["RateLimit-Policy"] == '"sliding";q=3;w=30'


def test_v1_and_v2_usage_share_one_window_per_key(keyed, make_key, settings, frozen_usage_clock):
    settings.ACCOUNTS_USAGE_RATE_LIMIT = 2
    client, _ = keyed
    assert client.get(V1).status_code == 200 and client.get(V2).status_code == 200
    assert client.get(V1).status_code == 429 and client.get(V2).status_code == 429
    _, other = make_key(name="other")
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {other}")
    assert client.get(V2).status_code == 200  # another key has a window of its own


def test_a_refused_usage_query_is_still_charged(keyed, settings, frozen_usage_clock):
    settings.ACCOUNTS_USAGE_RATE_LIMIT = 2
    client, _ = keyed
    assert client.get(V2, {"days": 9999}).status_code == 400
    assert client.get(V2, {"since": "yesterday"}).status_code == 400
    assert client.get(V2).status_code == 429


@pytest.mark.usefixtures("loaded_model")
def test_usage_calls_spend_no_classification_quota_and_classify_calls_none_of_usage(
    keyed, settings, frozen_usage_clock
):
    settings.ACCOUNTS_USAGE_RATE_LIMIT = 3
    client, api_key = keyed
    for _ in range(3):
        assert client.get(V2).json()["limit"]["remaining"] == api_key.rate_limit
    assert client.get(V1).status_code == 429
    image = base64.b64encode(picture("goldfish")).decode()
    classified = client.post("/api/v2/classify", {"images": [{"image": image}] * api_key.rate_limit}, format="json")
    assert classified.status_code == 200 and classified["X-RateLimit-Remaining"] == "0"
    assert client.post("/api/v1/classify", {"image": image}, format="json").status_code == 429
    assert client.get(V2).status_code == 429  # still the usage window's own refusal, not the spent quota's


def test_usage_requests_are_logged_with_no_units(keyed):
    client, api_key = keyed
    client.get(V2)
    client.get(V1)
    assert list(RequestLog.objects.filter(api_key=api_key).values_list("images", flat=True)) == [0, 0]


def test_the_usage_limit_defaults_are_named_settings():
    assert django_settings.ACCOUNTS_USAGE_RATE_LIMIT == 30
    assert django_settings.ACCOUNTS_USAGE_RATE_WINDOW_SECONDS == 60
