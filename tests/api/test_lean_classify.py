"""The lean v1 classify path (classifier.api.lean) against Django's: the same answers, headers and log rows.

Each case sends the same request twice, through aiserver's ASGI handler alone and through the lean path in
front of it, each with a fresh key of the same limits at the same (frozen) clock. A spy on the handler tells
which path answered: the lean path answers plainly well-formed requests itself, and hands everything else to
Django before anything is charged or written.
"""

import asyncio
import base64
import io
import json
import re

import pytest
from django.test import override_settings
from PIL import Image

from accounts.models import RequestLog
from aiserver.guard import RequestGuard
from aiserver.handlers import ASGIHandler
from classifier.api.lean import LeanClassify
from classifier.api.throttling import SlidingWindowThrottle
from tests.asgi import http_scope
from tests.model_weights import picture

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("loaded_model")]
URL = "/api/v1/classify"
JSON = (b"content-type", b"application/json")
NOT_AN_IMAGE = base64.b64encode(b"hello, not an image").decode()


class Spy:
    """The Django handler, counting the requests it is handed."""

    def __init__(self, app):
        self.app, self.calls = app, 0

    async def __call__(self, scope, receive, send):
        self.calls += 1
        return await self.app(scope, receive, send)


@pytest.fixture
def apps():
    """(Django's handler, a spy on it, the lean path in front of the spy). Django's middlewares read their
    settings when the handler is made: a test that overrides them makes its own (fresh_apps)."""
    made = []

    def make():
        handler = ASGIHandler()
        spy = Spy(handler)
        made.append((handler, spy, LeanClassify(spy, threads=4)))
        return made[-1]

    yield Apps(make)
    for handler, _, lean in made:
        lean.close()
        handler.threads.close()


class Apps(tuple):
    """The first (handler, spy, lean) triple; ``fresh()`` makes another under the settings in force."""

    def __new__(cls, make):
        apps = super().__new__(cls, make())
        apps.fresh = make
        return apps


@pytest.fixture(autouse=True)
def frozen_clock(monkeypatch):
    monkeypatch.setattr(SlidingWindowThrottle, "clock", staticmethod(lambda: 1_000_000.0))


def request(app, *, body: bytes = b"", headers=(), method="POST", path=URL, scope_extra=None, host=b"testserver"):
    """(status, headers as a dict of str, body) of one request through ``app`` (to ``host``)."""
    sent, pending = [], [{"type": "http.request", "body": body, "more_body": False}]

    async def receive():
        if pending:
            return pending.pop()
        await asyncio.Future()

    async def send(message):
        sent.append(message)

    scope = http_scope(path, method=method, headers=[(b"content-length", str(len(body)).encode()), *headers])
    scope.update(scope_extra or {})
    scope["headers"] = [(b"host", host), *scope["headers"][1:]]
    asyncio.run(app(scope, receive, send))
    answer_headers = {name.decode().lower(): value.decode() for name, value in sent[0]["headers"]}
    return sent[0]["status"], answer_headers, b"".join(m.get("body", b"") for m in sent[1:])


def comparable(headers: dict) -> dict:
    """The headers without the CSP nonce (fresh per answer)."""
    policy = headers.get("content-security-policy", "")
    return {**headers, "content-security-policy": re.sub(r"nonce-[\w-]+", "nonce-N", policy)}


def log_rows(api_key) -> list[tuple]:
    return list(
        RequestLog.objects.filter(api_key=api_key)
        .order_by("id")
        .values_list(
            "endpoint", "method", "status_code", "images", "model_name", "model_version", "client_ip", "request_id"
        )
    )


def both(apps, make_key, *, key_kwargs=None, auth=True, **request_kwargs):
    """The same request through Django alone and through the lean path, each with its own fresh key:
    (Django's answer, the lean path's answer, whether the lean path answered it itself)."""
    handler, spy, lean = apps
    answers, rows = [], []
    sent = list(request_kwargs.pop("headers", ()))
    for name, app in (("through-django", handler), ("lean", lean)):
        api_key, raw = make_key(name=name, **{"rate_limit": 100, "rate_window_seconds": 60, **(key_kwargs or {})})
        headers = [*sent, *([(b"authorization", f"Bearer {raw}".encode())] if auth else [])]
        calls = spy.calls
        answers.append(request(app, headers=headers, **request_kwargs))
        rows.append(log_rows(api_key))
    assert rows[0] == rows[1], "the two paths wrote different log rows"
    assert answers[0][0] == answers[1][0] and answers[0][2] == answers[1][2]
    assert comparable(answers[0][1]) == comparable(answers[1][1])
    return answers[0], answers[1], spy.calls == calls


def image_body(**fields) -> bytes:
    return json.dumps({"image": base64.b64encode(picture("goldfish")).decode(), **fields}).encode()


def test_a_good_json_request_is_answered_on_the_lean_path_as_django_answers_it(apps, make_key):
    django, lean, on_lean_path = both(apps, make_key, body=image_body(filename="fish.jpg"), headers=[JSON])
    assert on_lean_path and apps[2].answered == 1
    assert lean[0] == 200 and json.loads(lean[2])["predictions"][0]["label"] == "goldfish"
    assert lean[1]["x-ratelimit-remaining"] == "99" and lean[1]["allow"] == "POST, OPTIONS"
    assert RequestLog.objects.filter(status_code=200, images=1, model_version="settings").count() == 2


@pytest.mark.parametrize(
    "headers",
    [
        [(b"content-type", b"application/json; charset=utf-8"), (b"accept", b"application/json")],
        [JSON, (b"accept", b"*/*")],
    ],
)
def test_the_usual_content_type_and_accept_headers_take_the_lean_path(apps, make_key, headers):
    assert both(apps, make_key, body=image_body(), headers=headers)[2]


def test_an_unreadable_image_is_charged_and_answered_400_on_the_lean_path(apps, make_key):
    django, lean, on_lean_path = both(apps, make_key, body=json.dumps({"image": NOT_AN_IMAGE}).encode(), headers=[JSON])
    assert on_lean_path
    assert lean[0] == 400 and json.loads(lean[2])["code"] == "invalid_image"
    assert lean[1]["x-ratelimit-remaining"] == "99"  # charged, as through Django
    assert RequestLog.objects.filter(status_code=400, images=1).count() == 2


def test_an_image_over_the_pixel_limit_is_413_on_both_paths(apps, make_key):
    with override_settings(CLASSIFIER_MAX_IMAGE_PIXELS=100):
        _, lean, on_lean_path = both(apps, make_key, body=image_body(), headers=[JSON])
    assert on_lean_path and lean[0] == 413 and json.loads(lean[2])["code"] == "image_too_large"


def _multipart() -> tuple[bytes, bytes]:
    boundary = "lean-boundary"
    body = (
        (
            f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="f.jpg"\r\n'
            "Content-Type: image/jpeg\r\n\r\n"
        ).encode()
        + picture("goldfish")
        + f"\r\n--{boundary}--\r\n".encode()
    )
    return body, f"multipart/form-data; boundary={boundary}".encode()


MULTIPART_BODY, MULTIPART_TYPE = _multipart()


@pytest.mark.parametrize(
    "case,kwargs,status",
    [
        ("invalid base64", {"body": b'{"image": "!!!"}', "headers": [JSON]}, 400),
        ("not JSON", {"body": b'{"image": ', "headers": [JSON]}, 400),
        ("NaN", {"body": b'{"image": NaN}', "headers": [JSON]}, 400),
        ("no image", {"body": b'{"filename": "x"}', "headers": [JSON]}, 400),
        ("image and file", {"body": image_body(file="x"), "headers": [JSON]}, 400),
        ("a number for an image", {"body": b'{"image": 12}', "headers": [JSON]}, 400),
        ("a list", {"body": b"[1, 2]", "headers": [JSON]}, 400),
        ("an empty image", {"body": b'{"image": "  "}', "headers": [JSON]}, 400),
        ("a null in the filename", {"body": image_body(filename="a\x00b"), "headers": [JSON]}, 400),
        ("a long filename", {"body": image_body(filename="f" * 256), "headers": [JSON]}, 400),
        ("multipart", {"body": MULTIPART_BODY, "headers": [(b"content-type", MULTIPART_TYPE)]}, 200),
        ("text/plain", {"body": image_body(), "headers": [(b"content-type", b"text/plain")]}, 415),
        ("an Origin", {"body": image_body(), "headers": [JSON, (b"origin", b"https://elsewhere.example")]}, 200),
        ("Accept: text/html", {"body": image_body(), "headers": [JSON, (b"accept", b"text/html")]}, 406),
        ("a query string", {"body": image_body(), "headers": [JSON], "scope_extra": {"query_string": b"a=1"}}, 200),
        ("GET", {"method": "GET", "headers": [JSON]}, 405),
        ("an unknown host", {"body": image_body(), "headers": [JSON], "host": b"evil.example"}, 400),
        ("two keys", {"body": image_body(), "headers": [JSON, (b"authorization", b"Bearer x")]}, 401),
    ],
)
def test_requests_that_are_not_plainly_well_formed_go_to_django_untouched(apps, make_key, case, kwargs, status):
    django, lean, on_lean_path = both(apps, make_key, **kwargs)
    assert not on_lean_path, case
    assert lean[0] == status, (case, lean)


@pytest.mark.parametrize(
    "case,kwargs,status",
    [
        ("no key", {"auth": False}, 401),
        ("a wrong key", {"auth": False, "headers": [(b"authorization", b"Bearer aik_wrong.key")]}, 401),
        ("a malformed Bearer header", {"auth": False, "headers": [(b"authorization", b"Bearer a b")]}, 401),
        ("a model the key may not use", {"key_kwargs": {"allowed_models": ["flowers"]}}, 403),
    ],
)
def test_key_refusals_are_djangos_answers(apps, make_key, case, kwargs, status):
    headers = [JSON, *kwargs.pop("headers", ())]
    django, lean, on_lean_path = both(apps, make_key, body=image_body(), headers=headers, **kwargs)
    assert not on_lean_path and lean[0] == status, (case, lean)


def test_the_x_api_key_header_takes_the_lean_path(apps, make_key):
    handler, spy, lean = apps
    _, raw = make_key(rate_limit=5)
    status, _, body = request(lean, body=image_body(), headers=[JSON, (b"x-api-key", raw.encode())])
    assert status == 200 and spy.calls == 0 and lean.answered == 1


def test_a_full_window_is_djangos_429_and_nothing_more_is_charged(apps, make_key):
    handler, spy, lean = apps
    api_key, raw = make_key(rate_limit=1, rate_window_seconds=60)
    headers = [JSON, (b"authorization", f"Bearer {raw}".encode())]
    answers = [request(lean, body=image_body(), headers=headers) for _ in range(3)]
    assert [a[0] for a in answers] == [200, 429, 429]
    assert spy.calls == 2 and lean.answered == 1
    assert answers[1][1]["retry-after"] == "60" and json.loads(answers[1][2])["code"] == "throttled"
    # the first 429 of the minute is a log row, the repeat raises the minute's count (as through Django)
    assert [row[2] for row in log_rows(api_key)] == [200, 429]


def test_https_answers_carry_hsts_as_djangos_do(apps, make_key):
    with override_settings(SECURE_HSTS_SECONDS=3600, SECURE_HSTS_INCLUDE_SUBDOMAINS=True):
        django, lean, on_lean_path = both(
            apps.fresh(), make_key, body=image_body(), headers=[JSON], scope_extra={"scheme": "https"}
        )
    assert on_lean_path and lean[1]["strict-transport-security"] == "max-age=3600; includeSubDomains"


def test_a_forwarded_https_header_counts_as_djangos_does(apps, make_key):
    forwarded = [JSON, (b"x-forwarded-proto", b"https")]
    with override_settings(SECURE_HSTS_SECONDS=60, SECURE_PROXY_SSL_HEADER=("HTTP_X_FORWARDED_PROTO", "https")):
        django, lean, on_lean_path = both(apps.fresh(), make_key, body=image_body(), headers=forwarded)
    assert on_lean_path and lean[1]["strict-transport-security"] == "max-age=60"


def test_ssl_redirect_on_plain_http_is_djangos_redirect(apps, make_key):
    with override_settings(SECURE_SSL_REDIRECT=True):
        django, lean, on_lean_path = both(apps.fresh(), make_key, body=image_body(), headers=[JSON])
    assert not on_lean_path and lean[0] == 301


def test_a_body_the_guard_cut_is_djangos_413(apps, make_key):
    handler, spy, lean = apps
    _, raw = make_key(rate_limit=5)
    guarded = RequestGuard(lean, max_body_bytes=1000, max_header_bytes=32768, body_timeout_s=5, idle_timeout_s=5)
    status, _, body = request(guarded, body=image_body(), headers=[JSON, (b"authorization", f"Bearer {raw}".encode())])
    assert status == 413 and json.loads(body)["code"] == "payload_too_large"
    assert spy.calls == 1 and lean.answered == 0


def test_the_setting_turns_the_lean_path_off(apps, make_key):
    with override_settings(API_LEAN_PATH=False):
        django, lean, on_lean_path = both(apps, make_key, body=image_body(), headers=[JSON])
    assert not on_lean_path and lean[0] == 200 and apps[2].answered == 0


def test_a_png_with_transparency_answers_the_same(apps, make_key):
    buffer = io.BytesIO()
    Image.new("RGBA", (40, 30), (10, 200, 30, 128)).save(buffer, format="PNG")
    body = json.dumps({"image": "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()}).encode()
    assert both(apps, make_key, body=body, headers=[JSON])[2]
