"""RequestLogMiddleware: what it stores, and that no failure of its own ever changes the answer."""

import base64
import datetime as dt
import logging
from unittest import mock

import pytest
from django.utils import timezone

from accounts.models import AnonymousRequestCount, RepeatedThrottleCount, RequestLog
from accounts.services import repeated_throttle_count, request_log_create
from tests.model_weights import picture

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("loaded_model")]
URL = "/api/v1/classify"
GOOD = {"image": base64.b64encode(picture("goldfish")).decode()}


def test_a_nul_byte_in_the_path_gets_the_json_404_and_is_counted(client, api_key):
    response = client.get("/api/v1/classify%00", HTTP_X_API_KEY=api_key[1])
    assert response.status_code == 404 and response.json()["code"] == "not_found"
    assert list(AnonymousRequestCount.objects.values_list("route", "status_code", "count")) == [("unmatched", 404, 1)]


def test_control_characters_are_stripped_from_what_a_log_row_stores(api_key):
    request_log_create(
        api_key_id=api_key[0].pk,
        endpoint="/api/v1/classify\x00",
        method="PO\x00ST",
        status_code=200,
        response_time_ms=1.0,
        client_ip="127.0.0.1",
        request_id="id\x00\n-1",
    )
    assert RequestLog.objects.values_list("endpoint", "method", "request_id").get() == (URL, "POST", "id-1")


def test_a_log_write_that_raises_anything_still_answers_and_says_why(auth_client, monkeypatch, caplog):
    def broken(**_):
        raise RuntimeError("the log is broken")

    monkeypatch.setattr("classifier.api.middleware.request_log_create", broken)
    with caplog.at_level(logging.ERROR, logger="classifier.api.middleware"):
        response = auth_client.post(URL, GOOD, format="json")
    assert response.status_code == 200 and response.json()["predictions"][0]["label"] == "goldfish"
    assert "the log is broken" in caplog.text and "_record_request failed for POST" in caplog.text
    assert not RequestLog.objects.exists()


def test_a_count_that_raises_still_answers_the_401(client, monkeypatch, caplog):
    def broken(**_):
        raise ValueError("no count today")

    monkeypatch.setattr("classifier.api.middleware.anonymous_request_count_increment", broken)
    with caplog.at_level(logging.ERROR, logger="classifier.api.middleware"):
        response = client.post(URL, GOOD, format="json")
    assert response.status_code == 401 and response.json()["code"] == "not_authenticated"
    assert "no count today" in caplog.text


def test_failing_metrics_still_leave_the_log_row(auth_client, monkeypatch):
    def broken(*_):
        raise RuntimeError("metrics are broken")

    monkeypatch.setattr("classifier.api.middleware._record_metrics", broken)
    assert auth_client.post(URL, GOOD, format="json").status_code == 200
    assert RequestLog.objects.values_list("endpoint", "status_code").get() == (URL, 200)


def test_a_keyed_request_that_is_refused_still_gets_its_row(client, make_key):
    api_key, raw = make_key("small", rate_limit=1)
    statuses = [client.post(URL, GOOD, format="json", HTTP_X_API_KEY=raw).status_code for _ in range(2)]
    client.post(URL, {"image": "!!"}, format="json", HTTP_X_API_KEY=raw)
    assert statuses == [200, 429]
    # The minute's first 429 is a row; the next one on the route is a repeat (a test that runs across a
    # minute's end sees it as the next minute's first row instead).
    logged = sorted(RequestLog.objects.filter(api_key=api_key).values_list("status_code", flat=True))
    repeats = sum(RepeatedThrottleCount.objects.filter(api_key=api_key).values_list("repeats", flat=True))
    assert (logged, repeats) in (([200, 429], 1), ([200, 429, 429], 0))
    assert not AnonymousRequestCount.objects.exists()


def test_a_key_sending_over_its_limit_adds_one_row_a_minute_per_route_and_every_429_is_counted(client, make_key):
    api_key, raw = make_key("eager", rate_limit=1)
    frozen = timezone.now()  # every request in one minute, wherever the test starts in it
    minute = frozen.replace(second=0, microsecond=0)
    with mock.patch("django.utils.timezone.now", return_value=frozen):
        statuses = [client.post(URL, GOOD, format="json", HTTP_X_API_KEY=raw).status_code for _ in range(6)]
    usage = client.get("/api/v2/usage", HTTP_X_API_KEY=raw).json()
    assert statuses == [200, *[429] * 5]
    assert list(RequestLog.objects.filter(endpoint=URL).order_by("id").values_list("status_code", flat=True)) == [
        200,
        429,
    ]
    assert list(RepeatedThrottleCount.objects.values_list("api_key_id", "minute", "endpoint", "repeats")) == [
        (api_key.pk, minute, URL, 4)
    ]
    assert usage["throttled"] == 5 and usage["requests"] == 6 and usage["by_status"] == {"200": 1, "429": 5}

    next_minute = minute + dt.timedelta(minutes=1)
    assert repeated_throttle_count(api_key_id=api_key.pk, endpoint=URL, now=next_minute) is True  # a new first
    assert repeated_throttle_count(api_key_id=api_key.pk, endpoint=URL, now=next_minute) is False
    assert repeated_throttle_count(api_key_id=api_key.pk, endpoint="/api/v2/classify", now=next_minute) is True
    assert RepeatedThrottleCount.objects.count() == 3
