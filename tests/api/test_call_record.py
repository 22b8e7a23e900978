"""The call record: one object carries a call from the log middleware through auth, throttle and view to the log."""

import base64

import pytest
from django.test import RequestFactory
from rest_framework.request import Request

from accounts.models import RateLimitEvent, RequestLog
from classifier.api import middleware
from classifier.api.call import CallRecord, call_record, open_call
from classifier.runtime.registry import Slot
from classifier.runtime.sources import ModelSource
from classifier.serving import process_runtime
from tests.model_weights import picture

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("loaded_model", "database_windows")]
V1, V2 = "/api/v1/classify", "/api/v2/classify"
# What steps used to leave on the request for each other; the record replaced every one of them.
OLD_HAND_OFFS = ("api_key", "api_units", "api_model_name", "api_model_version", "rate_limit_state", "request_id")


def images(count: int) -> dict:
    return {"images": [{"image": base64.b64encode(picture("goldfish")).decode()}] * count}


@pytest.fixture
def written(monkeypatch):
    """The records the log middleware writes, as it hands them to its writers."""
    records: list[CallRecord] = []
    real = middleware._record_request

    def capture(call, *answer):
        records.append(call)
        real(call, *answer)

    monkeypatch.setattr(middleware, "_record_request", capture)
    return records


def test_a_drf_request_and_its_django_request_share_one_record():
    django_request = RequestFactory().get("/api/v1/usage")
    opened = open_call(django_request)
    assert call_record(Request(django_request)) is opened
    assert call_record(django_request) is opened


def test_a_request_without_the_middleware_gets_a_fresh_record_once():
    django_request = RequestFactory().get("/api/v1/usage")
    first = call_record(django_request)
    assert first.api_key is None and first.units == 0 and first.route == "unmatched"
    assert call_record(django_request) is first


def test_a_v2_batch_fills_one_record_from_auth_to_log(client, make_key, written):
    key, raw = make_key(rate_limit=10, rate_window_seconds=60)
    response = client.post(V2, images(3), format="json", HTTP_AUTHORIZATION=f"Bearer {raw}", HTTP_X_REQUEST_ID="r-1")
    assert response.status_code == 200
    [call] = written
    assert call.api_key == key  # authentication
    assert call.units == 3 and call.window.remaining == 7  # the throttle
    assert call.request_id == "r-1" == response.json()["id"]  # the request-id middleware, read by the view
    assert (call.model_name, call.model_version) == (process_runtime().default_name, response.json()["model_version"])
    assert call.route == "/api/v2/classify"
    row = RequestLog.objects.get()
    assert (row.api_key_id, row.images, row.request_id, row.model_name, row.endpoint) == (
        key.pk,
        3,
        "r-1",
        call.model_name,
        "/api/v2/classify",
    )
    assert response["X-RateLimit-Remaining"] == "7"


def test_nothing_else_travels_on_the_request(client, make_key):
    _, raw = make_key(rate_limit=10, rate_window_seconds=60)
    response = client.post(V2, images(1), format="json", HTTP_AUTHORIZATION=f"Bearer {raw}")
    assert response.status_code == 200
    assert [name for name in OLD_HAND_OFFS if hasattr(response.wsgi_request, name)] == []


def test_a_call_without_a_key_is_recorded_with_none_and_no_units(client, written):
    response = client.post(V2, images(1), format="json")
    assert response.status_code == 401
    [call] = written
    assert call.api_key is None and call.units == 0 and call.window is None and call.request_id
    assert not RequestLog.objects.exists()


def test_a_refused_call_records_its_key_but_no_model(client, make_key, written):
    key, raw = make_key(rate_limit=1, rate_window_seconds=60)
    for _ in range(2):
        response = client.post(V1, {"file": picture("goldfish")}, HTTP_AUTHORIZATION=f"Bearer {raw}")
    assert response.status_code == 429
    assert written[-1].api_key == key and written[-1].units == 0 and written[-1].model_name == ""
    assert written[-1].window is not None and not written[-1].window.allowed


# The order of a v2 classification: authenticate → permission → validate → throttle.


def test_without_a_key_a_malformed_body_is_401_and_not_read(client, monkeypatch):
    def must_not_validate(self, request):
        raise AssertionError("validated before the key check")

    monkeypatch.setattr("classifier.api.views.api_v2.ClassifyBatchView.validate", must_not_validate)
    response = client.post(V2, "{not json", content_type="application/json")
    assert response.status_code == 401


def test_model_permissions_judge_the_model_the_validated_payload_names(client, make_key):
    _, raw = make_key(rate_limit=10, rate_window_seconds=60, allowed_models=["other"])
    asked = process_runtime().default_name
    response = client.post(V2, {**images(1), "model": asked}, format="json", HTTP_AUTHORIZATION=f"Bearer {raw}")
    assert response.status_code == 403 and response.json()["code"] == "model_not_allowed"
    assert f"{asked!r}" in response.json()["detail"]
    assert not RateLimitEvent.objects.exists()  # refused before the throttle


def test_a_malformed_body_is_charged_one_unit_after_the_permissions(client, make_key):
    _, raw = make_key(rate_limit=10, rate_window_seconds=60)
    response = client.post(V2, {"images": "x"}, format="json", HTTP_AUTHORIZATION=f"Bearer {raw}")
    assert response.status_code == 400
    assert list(RateLimitEvent.objects.values_list("cost", flat=True)) == [1]
    assert RequestLog.objects.get().images == 1


def test_a_malformed_body_for_a_default_model_still_loading_is_503_before_any_quota(client, make_key, install_slot):
    _, raw = make_key(rate_limit=10, rate_window_seconds=60)
    source = ModelSource(name=process_runtime().default_name, architecture="resnet18", weights="random")
    install_slot(Slot(source=source))
    response = client.post(V2, {"images": "x"}, format="json", HTTP_AUTHORIZATION=f"Bearer {raw}")
    assert response.status_code == 503
    assert not RateLimitEvent.objects.exists()
