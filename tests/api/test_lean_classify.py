"""The lean classify path (classifier.api.lean, v1 and v2) against Django's: the same answers, headers and log rows.

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


def comparable(answer) -> dict:
    """The answer's headers without the CSP nonce (fresh per answer), and its Content-Length checked against the
    body (a v2 answer's length moves with its processing_time_ms)."""
    _, headers, body = answer
    assert headers.get("content-length", str(len(body))) == str(len(body))  # Django's redirects carry none
    policy = headers.get("content-security-policy", "")
    return {**headers, "content-security-policy": re.sub(r"nonce-[\w-]+", "nonce-N", policy), "content-length": "N"}


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
    (Django's answer, the lean path's answer, whether the lean path answered it itself). A v2 answer's
    ``created`` and ``processing_time_ms`` differ between any two answers; they are compared as present."""
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
    assert answers[0][0] == answers[1][0] and same_body(answers[0][2]) == same_body(answers[1][2])
    assert comparable(answers[0]) == comparable(answers[1])
    return answers[0], answers[1], spy.calls == calls


def same_body(body: bytes):
    """A v2 answer with its timing fields reduced to their presence; any other body as it is."""
    try:
        data = json.loads(body)
    except ValueError:
        return body
    if isinstance(data, dict) and "created" in data:
        data["created"] = bool(data["created"])
        data["processing_time_ms"] = data["processing_time_ms"] >= 0
    return data


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


# --- v2 -------------------------------------------------------------------------------------

V2 = "/api/v2/classify"
V2_HEADERS = [JSON, (b"x-request-id", b"lean-parity-1")]  # the same request id on both paths, for the log rows


def item(name="goldfish", **fields) -> dict:
    return {"image": base64.b64encode(picture(name)).decode(), **fields}


def batch_body(items=None, **fields) -> bytes:
    return json.dumps({"images": items if items is not None else [item()], **fields}).encode()


def both_v2(apps, make_key, *, headers=V2_HEADERS, **kwargs):
    return both(apps, make_key, path=V2, headers=headers, **kwargs)


def test_a_good_batch_is_answered_on_the_lean_path_as_django_answers_it(apps, make_key):
    body = batch_body([item(filename="a.jpg"), item("jellyfish", filename=" b.jpg "), item()], top_k=3)
    django, lean, on_lean_path = both_v2(apps, make_key, body=body)
    assert on_lean_path and apps[2].answered == 1
    answer = json.loads(lean[2])
    assert lean[0] == 200 and answer["id"] == lean[1]["x-request-id"] == "lean-parity-1"
    assert [r["predictions"][0]["label"] for r in answer["results"]] == ["goldfish", "jellyfish", "goldfish"]
    assert [r["filename"] for r in answer["results"]] == ["a.jpg", "b.jpg", ""]
    assert all(len(r["predictions"]) == 3 for r in answer["results"]) and answer["engine"]["exact"] is True
    assert lean[1]["x-ratelimit-remaining"] == "97"  # one unit per image
    assert RequestLog.objects.filter(endpoint=V2, status_code=200, images=3, model_name="resnet18").count() == 2


def test_unreadable_images_are_their_own_errors_on_the_lean_path(apps, make_key):
    body = batch_body([item(), {"image": "!!!"}, {"image": " "}, {"image": NOT_AN_IMAGE, "filename": "x.jpg"}])
    django, lean, on_lean_path = both_v2(apps, make_key, body=body)
    assert on_lean_path and lean[0] == 200
    codes = [r.get("error", {}).get("code") for r in json.loads(lean[2])["results"]]
    assert codes == [None, "invalid_base64", "empty_image", "invalid_image"]
    assert lean[1]["x-ratelimit-remaining"] == "96"


def test_a_model_and_a_version_it_does_not_serve_is_charged_and_404_on_the_lean_path(apps, make_key):
    django, lean, on_lean_path = both_v2(apps, make_key, body=batch_body(model="resnet18@v999"))
    assert on_lean_path and lean[0] == 404 and json.loads(lean[2])["code"] == "model_not_found"
    assert lean[1]["x-ratelimit-remaining"] == "99" and lean[1]["x-request-id"] == "lean-parity-1"


def test_a_named_model_the_key_may_use_takes_the_lean_path(apps, make_key):
    body = batch_body(model="resnet18")
    django, lean, on_lean_path = both_v2(apps, make_key, body=body, key_kwargs={"allowed_models": ["resnet18"]})
    assert on_lean_path and lean[0] == 200 and json.loads(lean[2])["model"] == "resnet18"


def test_a_request_without_a_sane_request_id_gets_a_new_one_on_the_lean_path(apps, make_key):
    handler, spy, lean = apps
    api_key, raw = make_key(rate_limit=5)
    headers = [JSON, (b"x-request-id", b"not sane!"), (b"authorization", f"Bearer {raw}".encode())]
    status, answer_headers, body = request(lean, path=V2, body=batch_body(), headers=headers)
    assert status == 200 and lean.answered == 1
    assert (
        re.fullmatch(r"[0-9a-f]{32}", answer_headers["x-request-id"])
        and json.loads(body)["id"] == answer_headers["x-request-id"]
    )
    assert log_rows(api_key)[0][-1] == answer_headers["x-request-id"]


@pytest.mark.parametrize(
    "case,body,status",
    [
        ("no images", b'{"top_k": 3}', 400),
        ("an empty batch", batch_body([]), 400),
        ("too many images", batch_body([item()] * 17), 400),
        ("images not a list", b'{"images": {"image": "x"}}', 400),
        ("top_k 0", batch_body(top_k=0), 400),
        ("top_k as a string", batch_body(top_k="3"), 200),
        ("top_k true", batch_body(top_k=True), 400),
        ("an unknown model", batch_body(model="vgg_nonexistent"), 400),
        ("a null model", batch_body(model=None), 400),
        ("a model with spaces", batch_body(model=" resnet18 "), 200),
        ("an unknown field", batch_body(extra=1), 200),
        ("files in JSON", batch_body(files=["x"]), 400),
        ("an item with another field", batch_body([item(note="x")]), 200),
        ("an image that is a number", batch_body([{"image": 12}]), 200),
        ("a null filename", batch_body([item(filename=None)]), 400),
        ("a long filename", batch_body([item(filename="f" * 256)]), 400),
        ("a null character in a filename", batch_body([item(filename="a\x00b")]), 400),
        ("an item that is not an object", batch_body(["x"]), 400),
        ("not JSON", b'{"images": [', 400),
        # where orjson (the lean path's parser) and SafeJSONParser differ: Django parses and answers
        ("top_k over 64 bits", batch_body(top_k=10**30), 400),
        ("top_k NaN", batch_body()[:-1] + b', "top_k": NaN}', 400),
        ("top_k 1e400", batch_body()[:-1] + b', "top_k": 1e400}', 400),
        ("a lone surrogate in a filename", batch_body([item(filename="\ud800")]), 400),
    ],
)
def test_batches_that_are_not_plainly_well_formed_go_to_django_untouched(apps, make_key, case, body, status):
    django, lean, on_lean_path = both_v2(apps, make_key, body=body)
    assert not on_lean_path, case
    assert lean[0] == status, (case, lean)


def test_a_model_the_key_may_not_use_is_djangos_403(apps, make_key):
    body = batch_body(model="resnet18")
    django, lean, on_lean_path = both_v2(apps, make_key, body=body, key_kwargs={"allowed_models": ["flowers"]})
    assert not on_lean_path and lean[0] == 403


def test_a_batch_over_the_keys_whole_window_is_djangos_400(apps, make_key):
    django, lean, on_lean_path = both_v2(apps, make_key, body=batch_body([item()] * 3), key_kwargs={"rate_limit": 2})
    assert not on_lean_path and lean[0] == 400 and json.loads(lean[2])["code"] == "batch_exceeds_limit"


def test_a_large_body_from_a_key_out_of_room_is_refused_by_django_before_it_is_parsed(apps, make_key):
    handler, spy, lean = apps
    api_key, raw = make_key(rate_limit=1, rate_window_seconds=60)
    headers = [*V2_HEADERS, (b"authorization", f"Bearer {raw}".encode())]
    with override_settings(ACCOUNTS_PEEK_BEFORE_BODY_BYTES=0):  # every body is "large"
        answers = [request(lean, path=V2, body=batch_body(), headers=headers) for _ in range(2)]
    assert [a[0] for a in answers] == [200, 429]
    assert lean.answered == 1 and spy.calls == 1  # the peek sent the second to Django, which refused it
