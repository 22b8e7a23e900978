"""The client's retry and batching rules, against a scripted session (no server)."""

import json

import pytest
import requests

from aiserver_client import ApiError, Client


class ScriptedSession:
    """Answers requests from a list of (status, body, headers), recording what was sent."""

    def __init__(self, answers):
        self.answers = list(answers)
        self.sent = []

    def request(self, method, url, **kwargs):
        self.sent.append((method, url, kwargs))
        status, body, headers = self.answers.pop(0)
        response = requests.Response()
        response.status_code = status
        response._content = json.dumps(body).encode()
        response.headers.update(headers)
        return response


def client_with(answers, **kwargs):
    waits = []
    session = ScriptedSession(answers)
    return Client("http://server/", "ais_key", session=session, sleep=waits.append, **kwargs), session, waits


THROTTLED = (429, {"detail": "slow down", "code": "throttled"}, {"Retry-After": "7"})
MODELS = (200, {"max_batch_images": 4, "max_top_k": 20, "models": []}, {})


def ok(n):
    return (
        200,
        {
            "model": "resnet18",
            "results": [{"index": i, "predictions": [{"label": "x", "confidence": 1}]} for i in range(n)],
        },
        {},
    )


def test_retry_after_is_honoured_then_the_answer_returned():
    client, session, waits = client_with([THROTTLED, (503, {"detail": "busy", "code": "overloaded"}, {}), ok(1)])
    assert client.classify([("a.jpg", b"data")])["model"] == "resnet18"
    assert waits == [7.0, 2.0] and client.retries == 2
    assert session.sent[0][2]["headers"] == {"Authorization": "Bearer ais_key"}


def test_retries_are_bounded_and_then_the_error_is_raised():
    client, _, waits = client_with([THROTTLED] * 3, max_retries=2)
    with pytest.raises(ApiError) as raised:
        client.classify([("a.jpg", b"data")])
    assert raised.value.status == 429 and raised.value.code == "throttled" and len(waits) == 2


def test_waits_are_capped():
    client, _, waits = client_with([(429, {}, {"Retry-After": "3600"}), ok(1)], max_wait_seconds=30)
    client.classify([("a.jpg", b"data")])
    assert waits == [30]


def test_files_are_batched_to_the_servers_maximum_and_a_batch_over_the_key_limit_is_split(tmp_path):
    files = [tmp_path / f"{i}.jpg" for i in range(6)]
    for path in files:
        path.write_bytes(b"jpeg")
    too_big = (400, {"detail": "over the limit", "code": "batch_exceeds_limit"}, {})
    client, session, _ = client_with([MODELS, too_big, ok(2), ok(2), ok(2)])
    results = list(client.classify_files(files))
    assert [r.path for r in results] == [str(p) for p in files] and all(r.ok for r in results)
    sizes = [len(kwargs["json"]["images"]) for method, _, kwargs in session.sent if method == "POST"]
    assert sizes == [4, 2, 2, 2]


def test_a_refused_batch_marks_its_files_and_the_run_goes_on(tmp_path):
    files = [tmp_path / f"{i}.jpg" for i in range(5)]
    for path in files:
        path.write_bytes(b"jpeg")
    refused = (413, {"detail": "image too big", "code": "image_too_large"}, {})
    client, _, _ = client_with([MODELS, refused, ok(1)])
    results = list(client.classify_files(files))
    assert [r.error["code"] if r.error else "ok" for r in results] == ["image_too_large"] * 4 + ["ok"]


def test_a_bad_key_stops_the_run(tmp_path):
    (tmp_path / "a.jpg").write_bytes(b"jpeg")
    client, _, _ = client_with([MODELS, (401, {"detail": "bad key", "code": "invalid_api_key"}, {})])
    with pytest.raises(ApiError) as raised:
        list(client.classify_files([tmp_path / "a.jpg"]))
    assert raised.value.status == 401


def test_the_usage_table_breaks_requests_down_by_model():
    from aiserver_client.cli import format_usage  # noqa: PLC0415

    body = {
        "key": {"name": "team-a", "prefix": "ais_3f2c9a7e"},
        "since": None,
        "until": "2026-11-22T21:45:04Z",
        "requests": 3,
        "images": 9,
        "throttled": 0,
        "latency_ms": {"p50": 1.0, "p95": 2.0, "p99": 2.0},
        "limit": {"limit": 60, "window_seconds": 60, "remaining": 51, "reset_seconds": 3},
        "by_endpoint": [{"endpoint": "/api/v2/classify", "requests": 3, "images": 9}],
        "by_status": {"200": 3},
        "daily": [],
        "by_model": [
            {"name": "flowers", "version": "2", "requests": 2, "images": 8},
            {"name": "resnet18", "version": "", "requests": 1, "images": 1},
        ],
    }
    rows = [line.split() for line in format_usage(body).splitlines()]
    assert ["MODEL", "VERSION", "REQUESTS", "IMAGES"] in rows
    assert ["flowers", "2", "2", "8"] in rows and ["resnet18", "-", "1", "1"] in rows
