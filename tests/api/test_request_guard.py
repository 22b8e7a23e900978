"""aiserver.guard.RequestGuard in front of the real Django handler, fed by receive functions that stall or drip."""

import asyncio
import json
import time

import pytest
from django.conf import settings
from django.http import JsonResponse
from django.test import override_settings
from django.urls import path
from django.views.decorators.csrf import csrf_exempt

from accounts.models import AnonymousRequestCount, RequestLog
from aiserver.guard import RequestGuard
from aiserver.handlers import ASGIHandler
from classifier.api.middleware import BODY_TIMED_OUT_SCOPE_KEY
from tests.asgi import http_scope

pytestmark = pytest.mark.django_db(transaction=True)  # the request threads use their own connections


@csrf_exempt
def slow_view(request):
    """A test-only view that works for longer than the guard's idle timeout after reading the body."""
    time.sleep(0.2)
    return JsonResponse({"read": len(request.body)})


urlpatterns = [path("api/slow", slow_view)]  # this module is the URLconf of the tests marked urls(__name__)


class FakeClock:
    """Monotonic seconds that move only when the test moves them."""

    def __init__(self):
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def handler():
    handler = ASGIHandler()
    yield handler
    handler.threads.close()


def guard(app) -> RequestGuard:
    """The guard as aiserver.asgi builds it, from the settings in force."""
    return RequestGuard(
        app,
        max_body_bytes=settings.API_MAX_BODY_BYTES,
        max_header_bytes=settings.API_MAX_HEADER_BYTES,
        body_timeout_s=settings.API_BODY_READ_TIMEOUT_SECONDS,
        idle_timeout_s=settings.API_BODY_IDLE_TIMEOUT_SECONDS,
        upload_path_prefix=settings.ADMIN_UPLOAD_PATH_PREFIX,
        max_upload_bytes=settings.ADMIN_UPLOAD_MAX_BYTES,
    )


def scope_for(path: str, *, method: str = "POST", headers=()) -> dict:
    return http_scope(path, method=method, headers=headers)


def stall_forever():
    async def stall():
        await asyncio.Future()  # the client never sends anything again (nor disconnects)

    return stall()


async def run(app, scope, receive) -> tuple[int, dict]:
    sent = []

    async def send(message):
        sent.append(message)

    await app(scope, receive, send)
    return sent[0]["status"], json.loads(b"".join(m.get("body", b"") for m in sent[1:]))


def receive_from(messages):
    """A client that sends ``messages`` and then stalls (as a connection held open does)."""
    pending = list(messages)

    async def receive():
        if pending:
            return pending.pop(0)
        return await stall_forever()

    return receive


def anonymous_statuses() -> dict[int, int]:
    """Requests accounted for without a key (the guard answers before authentication), by status."""
    counts: dict[int, int] = {}
    for status, count in AnonymousRequestCount.objects.values_list("status_code", "count"):
        counts[status] = counts.get(status, 0) + count
    return counts


@override_settings(API_BODY_IDLE_TIMEOUT_SECONDS=0.05)
def test_a_body_that_stops_arriving_is_answered_408_and_logged(handler):
    receive = receive_from([{"type": "http.request", "body": b"half", "more_body": True}])
    status, body = asyncio.run(
        run(
            guard(handler),
            scope_for(
                "/api/v1/classify", headers=[(b"content-length", b"100000"), (b"content-type", b"application/json")]
            ),
            receive,
        )
    )

    assert (status, body["code"]) == (408, "request_timeout")
    assert str(settings.API_BODY_IDLE_TIMEOUT_SECONDS) in body["detail"]
    assert anonymous_statuses() == {408: 1}  # cut before any key was read: counted, not a row
    assert not RequestLog.objects.exists()


@override_settings(API_BODY_READ_TIMEOUT_SECONDS=5.0)
def test_a_body_dripping_in_is_cut_at_the_whole_body_deadline(handler):
    """Each byte comes well within the idle timeout, but the clock passes the deadline after five of them."""
    clock, sent, cut_after = FakeClock(), [], []
    scope = scope_for("/api/v1/classify", headers=[(b"transfer-encoding", b"chunked")])

    async def drip():
        if scope.get(BODY_TIMED_OUT_SCOPE_KEY) and not cut_after:
            cut_after.append(len(sent))
        if len(sent) >= 60:
            return await stall_forever()
        await asyncio.sleep(0)  # yield to the event loop, as a real socket read does
        clock.now += 1.0
        sent.append(b"x")
        return {"type": "http.request", "body": b"x", "more_body": True}

    app = guard(handler)
    app.clock = clock
    status, body = asyncio.run(run(app, scope, drip))

    assert (status, body["code"]) == (408, "request_timeout")
    assert cut_after == [settings.API_BODY_READ_TIMEOUT_SECONDS]  # one byte per fake second until the deadline
    assert anonymous_statuses() == {408: 1}


@override_settings(API_BODY_IDLE_TIMEOUT_SECONDS=0.01)
@pytest.mark.urls(__name__)
def test_the_timeouts_end_with_the_body(handler):
    """Once the body has arrived the guard stops timing: Django's wait for a disconnect is left alone."""
    receive = receive_from([{"type": "http.request", "body": b"all of it", "more_body": False}])
    status, body = asyncio.run(
        run(guard(handler), scope_for("/api/slow", headers=[(b"content-length", b"9")]), receive)
    )

    assert (status, body) == (200, {"read": 9})


@override_settings(API_MAX_BODY_BYTES=1000)
def test_a_streamed_body_over_the_limit_is_cut_at_413(handler):
    chunk = {"type": "http.request", "body": b"x" * 600, "more_body": True}
    status, body = asyncio.run(
        run(
            guard(handler),
            scope_for("/api/v1/classify", headers=[(b"transfer-encoding", b"chunked")]),
            receive_from([chunk, chunk]),
        )
    )

    assert (status, body["code"]) == (413, "payload_too_large")


@override_settings(API_MAX_HEADER_BYTES=4096)
def test_headers_over_the_limit_are_answered_431_and_logged(handler):
    big = [(b"x-padding", b"p" * settings.API_MAX_HEADER_BYTES), (b"authorization", b"Bearer secret-key")]
    receive = receive_from([{"type": "http.request", "body": b"", "more_body": False}])
    status, body = asyncio.run(run(guard(handler), scope_for("/api/v1/classify", headers=big), receive))

    assert (status, body["code"]) == (431, "headers_too_large")
    assert str(settings.API_MAX_HEADER_BYTES) in body["detail"]
    assert anonymous_statuses() == {431: 1}


@override_settings(API_MAX_HEADER_BYTES=4096)
def test_headers_within_the_limit_pass(handler):
    headers = [(b"x-padding", b"p" * (settings.API_MAX_HEADER_BYTES - 200))]
    receive = receive_from([{"type": "http.request", "body": b"", "more_body": False}])
    status, body = asyncio.run(run(guard(handler), scope_for("/api/v1/classify", headers=headers), receive))

    assert (status, body["code"]) == (401, "not_authenticated")


def test_the_deployed_application_is_guarded_with_the_named_settings():
    import aiserver.asgi

    app = aiserver.asgi.application
    assert isinstance(app, RequestGuard)
    assert (app.max_body_bytes, app.max_header_bytes, app.body_timeout_s, app.idle_timeout_s) == (
        settings.API_MAX_BODY_BYTES,
        settings.API_MAX_HEADER_BYTES,
        settings.API_BODY_READ_TIMEOUT_SECONDS,
        settings.API_BODY_IDLE_TIMEOUT_SECONDS,
    )
    assert (app.upload_path_prefix, app.max_upload_bytes) == (
        settings.ADMIN_UPLOAD_PATH_PREFIX,
        settings.ADMIN_UPLOAD_MAX_BYTES,
    )


@override_settings(API_MAX_BODY_BYTES=1000, ADMIN_UPLOAD_MAX_BYTES=5000)
def test_admin_model_uploads_have_their_own_limit_and_the_api_keeps_its_own():
    async def read_all(scope, receive, send):
        size = 0
        while True:
            message = await receive()
            size += len(message.get("body", b""))
            if not message.get("more_body"):
                break
        status = 413 if scope.get("aiserver.body_too_large") else 200
        await send({"type": "http.response.start", "status": status, "headers": []})
        await send({"type": "http.response.body", "body": str(size).encode()})

    chunk = {"type": "http.request", "body": b"x" * 1500, "more_body": True}
    last = {"type": "http.request", "body": b"x" * 1500, "more_body": False}
    app = guard(read_all)
    statuses = {}
    for url in ("/admin/classifier/modelversion/add/", "/api/v1/classify", "/admin/accounts/apikey/add/"):
        sent = []

        async def send(message, sent=sent):
            sent.append(message)

        asyncio.run(app(scope_for(url), receive_from([chunk, last]), send))
        statuses[url] = sent[0]["status"]
    assert statuses == {
        "/admin/classifier/modelversion/add/": 200,
        "/api/v1/classify": 413,
        "/admin/accounts/apikey/add/": 413,
    }
