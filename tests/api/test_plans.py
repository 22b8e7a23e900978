"""Plans over the API: the monthly quota (429 quota_exceeded, X-Quota-* headers), the plan's limit and models,
a key's own settings over its plan's, changing plans mid-month, the usage period, and large bodies refused
before they are parsed."""

import base64
import datetime as dt

import pytest
from django.conf import settings

from accounts.models import MonthlyUsage, RequestLog
from accounts.services import api_key_set_plan, plan_create
from classifier.api.throttling import SlidingWindowThrottle
from classifier.api.views.api_v2 import ClassifyBatchView
from tests.model_weights import picture

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("loaded_model")]
V1, V2, USAGE = "/api/v1/classify", "/api/v2/classify", "/api/v2/usage"
NOV_15 = dt.datetime(2026, 11, 15, 12, tzinfo=dt.UTC).timestamp()
DEC_1 = dt.datetime(2026, 12, 1, tzinfo=dt.UTC).timestamp()
QUOTA_HEADERS = ("X-Quota-Limit", "X-Quota-Remaining", "X-Quota-Reset")


def images(n: int) -> dict:
    return {"images": [{"image": base64.b64encode(picture("goldfish")).decode()}] * n}


V1_BODY = {"image": base64.b64encode(picture("goldfish")).decode()}


@pytest.fixture
def clock(monkeypatch):
    now = [NOV_15]
    monkeypatch.setattr(SlidingWindowThrottle, "clock", staticmethod(lambda: now[0]))
    return now


@pytest.fixture
def on_plan(client, make_key):
    """A client whose key is on plan ``free`` (5 images a month, 100 per minute), and the key."""
    plan = plan_create(name="free", monthly_images=5, rate_limit=100, rate_window_seconds=60)
    api_key, raw = make_key(name="customer", plan=plan)
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {raw}")
    return client, api_key


def test_a_key_stops_at_exactly_its_monthly_allowance_with_quota_exceeded(on_plan, clock):
    client, _ = on_plan
    assert client.post(V2, images(3), format="json").status_code == 200
    assert client.post(V1, V1_BODY, format="json").status_code == 200
    last = client.post(V2, images(1), format="json")
    assert last.status_code == 200 and last["X-Quota-Remaining"] == "0"
    refused = client.post(V1, V1_BODY, format="json")
    assert refused.status_code == 429
    assert refused.json()["code"] == "quota_exceeded"
    assert "5 images" in refused.json()["detail"] and "2026-12-01T00:00:00Z" in refused.json()["detail"]
    assert refused["Retry-After"] == str(int(DEC_1 - NOV_15))
    assert refused["X-Quota-Limit"] == "5" and refused["X-Quota-Remaining"] == "0"
    assert refused["X-Quota-Reset"] == str(int(DEC_1 - NOV_15))
    assert sum(RequestLog.objects.values_list("images", flat=True)) == 5  # the refusal charged nothing


def test_every_keyed_classification_answer_carries_the_quota_headers(on_plan, clock):
    client, _ = on_plan
    ok = client.post(V2, images(2), format="json")
    assert (ok["X-Quota-Limit"], ok["X-Quota-Remaining"], ok["X-Quota-Reset"]) == ("5", "3", str(int(DEC_1 - NOV_15)))
    malformed = client.post(V2, {"images": "no"}, format="json")
    assert malformed.status_code == 400 and malformed["X-Quota-Remaining"] == "2"  # charged one, as today
    assert ok["X-RateLimit-Limit"] == "100"  # the plan's rate limit


def test_the_next_month_starts_a_fresh_allowance(on_plan, clock):
    client, _ = on_plan
    assert client.post(V2, images(5), format="json").status_code == 200
    clock[0] = DEC_1 - 0.001
    assert client.post(V1, V1_BODY, format="json").json()["code"] == "quota_exceeded"
    clock[0] = DEC_1
    fresh = client.post(V1, V1_BODY, format="json")
    assert fresh.status_code == 200 and fresh["X-Quota-Remaining"] == "4"


def test_changing_plans_mid_month_keeps_the_use_and_applies_the_new_allowance_at_once(on_plan, clock):
    client, api_key = on_plan
    assert client.post(V2, images(4), format="json").status_code == 200
    api_key_set_plan(api_key=api_key, plan=plan_create(name="tiny", monthly_images=3, rate_limit=100))
    refused = client.post(V1, V1_BODY, format="json")
    assert refused.json()["code"] == "quota_exceeded" and refused["X-Quota-Limit"] == "3"
    api_key_set_plan(api_key=api_key, plan=plan_create(name="pro", monthly_images=6, rate_limit=100))
    assert client.post(V2, images(2), format="json").status_code == 200  # 4 + 2 = 6 of pro's 6
    assert client.post(V1, V1_BODY, format="json").json()["code"] == "quota_exceeded"


def test_the_rate_limit_refuses_first_with_its_own_code_and_headers(client, make_key, clock):
    plan = plan_create(name="burst", monthly_images=10, rate_limit=2, rate_window_seconds=60)
    _, raw = make_key(name="burst-key", plan=plan)
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {raw}")
    assert client.post(V2, images(2), format="json").status_code == 200
    throttled = client.post(V1, V1_BODY, format="json")
    assert throttled.status_code == 429 and throttled.json()["code"] == "throttled"
    assert throttled["Retry-After"] == "60" and throttled["X-RateLimit-Remaining"] == "0"
    assert throttled["X-Quota-Remaining"] == "8"  # the quota is not what refused


def test_past_an_allowance_that_allows_overage_requests_are_served_and_counted(client, make_key, clock):
    plan = plan_create(name="pro", monthly_images=2, overage="allow", rate_limit=100, price_per_1000_images=1)
    _, raw = make_key(name="pro-key", plan=plan)
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {raw}")
    assert [client.post(V2, images(2), format="json").status_code for _ in range(2)] == [200, 200]
    period = client.get(USAGE).json()["period"]
    assert (period["allowance"], period["used"], period["remaining"], period["overage"]) == (2, 4, 0, 2)


def test_the_usage_report_gives_the_current_period(on_plan, clock):
    client, _ = on_plan
    client.post(V2, images(3), format="json")
    period = client.get(USAGE).json()["period"]
    assert period == {
        "plan": "free",
        "start": "2026-11-01T00:00:00Z",
        "resets_at": "2026-12-01T00:00:00Z",
        "allowance": 5,
        "used": 3,
        "remaining": 2,
        "overage": 0,
    }


def test_a_plan_without_an_allowance_is_unlimited_and_says_so(client, make_key, clock):
    plan = plan_create(name="unlimited", monthly_images=None, rate_limit=100)
    _, raw = make_key(name="u", plan=plan)
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {raw}")
    response = client.post(V2, images(3), format="json")
    assert response["X-Quota-Limit"] == "unlimited" and response["X-Quota-Remaining"] == "unlimited"
    assert client.get(USAGE).json()["period"]["used"] == 3


def test_a_key_without_a_plan_behaves_as_before(client, make_key, clock):
    _, raw = make_key(name="legacy", rate_limit=3, rate_window_seconds=60)
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {raw}")
    response = client.post(V2, images(3), format="json")
    assert response.status_code == 200 and not any(h in response for h in QUOTA_HEADERS)
    assert client.post(V1, V1_BODY, format="json").json()["code"] == "throttled"
    usage = client.get(USAGE).json()
    assert usage["period"] is None and usage["key"]["rate_limit"] == 3
    assert not MonthlyUsage.objects.exists()


def test_a_key_uses_its_plans_models_unless_it_names_its_own(client, make_key, clock):
    plan = plan_create(name="narrow", monthly_images=100, rate_limit=100, allowed_models=["flowers"])
    _, raw = make_key(name="narrow-key", plan=plan)
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {raw}")
    refused = client.post(V1, V1_BODY, format="json")
    assert refused.status_code == 403 and refused.json()["code"] == "model_not_allowed"
    _, own = make_key(name="own-models", plan=plan, allowed_models=["resnet18"], rate_limit=7)
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {own}")
    served = client.post(V1, V1_BODY, format="json")
    assert served.status_code == 200 and served["X-RateLimit-Limit"] == "7"  # its own limit over the plan's


def test_a_large_body_is_refused_before_it_is_parsed_when_the_quota_is_spent(on_plan, clock, monkeypatch):
    client, _ = on_plan
    assert client.post(V2, images(5), format="json").status_code == 200
    parsed = []
    original = ClassifyBatchView.validate
    monkeypatch.setattr(
        ClassifyBatchView, "validate", lambda view, request: parsed.append(1) or original(view, request)
    )
    body = images(3)
    small = client.post(V2, body, format="json")  # under ACCOUNTS_PEEK_BEFORE_BODY_BYTES: parsed, then refused
    assert small.json()["code"] == "quota_exceeded" and parsed == [1]
    monkeypatch.setattr(settings, "ACCOUNTS_PEEK_BEFORE_BODY_BYTES", 1000)
    large = client.post(V2, body, format="json")
    assert large.status_code == 429 and large.json()["code"] == "quota_exceeded"
    assert large["Retry-After"] == str(int(DEC_1 - NOV_15)) and large["X-Quota-Remaining"] == "0"
    assert parsed == [1]  # the large body was never parsed


def test_a_large_body_is_refused_before_it_is_parsed_when_the_window_is_full(client, make_key, clock, monkeypatch):
    _, raw = make_key(name="window-full", rate_limit=2, rate_window_seconds=60)
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {raw}")
    monkeypatch.setattr(settings, "ACCOUNTS_PEEK_BEFORE_BODY_BYTES", 1000)
    assert client.post(V2, images(2), format="json").status_code == 200  # room: peeked, then parsed and charged
    parsed = []
    monkeypatch.setattr(ClassifyBatchView, "validate", lambda view, request: parsed.append(1))
    refused = client.post(V2, images(1), format="json")
    assert refused.status_code == 429 and refused.json()["code"] == "throttled" and refused["Retry-After"] == "60"
    assert parsed == []


def test_the_peek_threshold_is_a_setting_of_256_kib_by_default():
    assert settings.ACCOUNTS_PEEK_BEFORE_BODY_BYTES == 256 * 1024
