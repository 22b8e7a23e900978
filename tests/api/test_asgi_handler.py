"""aiserver.handlers.ASGIHandler, called in-process the way uvicorn calls it."""

import asyncio
import base64
import json
import threading

import pytest
from asgiref.sync import AsyncToSync, SyncToAsync
from django.db import connection, connections
from django.http import JsonResponse
from django.urls import path

from accounts.models import AnonymousRequestCount, RequestLog
from aiserver.handlers import ASGIHandler
from tests.asgi import call
from tests.model_weights import picture

pytestmark = pytest.mark.django_db(transaction=True)  # the request threads use their own connections


REQUEST_THREADS: list[threading.Thread] = []  # where each request to this module's /thread view ran


def record_thread(request):
    """A test-only view: notes the thread it runs in, which opens its database connection there."""
    connection.ensure_connection()
    REQUEST_THREADS.append(threading.current_thread())  # the Thread itself: an ident may be reused once it ends
    return JsonResponse({})


urlpatterns = [path("thread", record_thread)]  # this module is the URLconf of the tests marked urls(__name__)


@pytest.fixture
def request_threads():
    """The threads requests to /thread ran in, in the order they ran; empty at the start of each test."""
    REQUEST_THREADS.clear()
    yield REQUEST_THREADS
    REQUEST_THREADS.clear()


@pytest.fixture
def handler():
    handler = ASGIHandler()
    yield handler
    handler.threads.close()


def run_concurrently(app, n, path="/healthz"):  # no database write: SQLite's in-memory test database locks whole tables
    async def all_at_once():
        return await asyncio.gather(*(call(app, path) for _ in range(n)))

    return asyncio.run(all_at_once())


def in_thread(executor, function):
    return executor.submit(function).result()


def test_requests_in_turn_reuse_one_thread(handler):
    status, body = asyncio.run(call(handler, "/api/v1/classify", method="POST"))
    assert (status, body["code"]) == (401, "not_authenticated")
    executor = handler.threads._idle[-1]
    name = in_thread(executor, lambda: threading.current_thread().name)
    for _ in range(4):
        assert asyncio.run(call(handler, "/api/v1/classify", method="POST"))[0] == 401
    assert handler.threads.started == 1 and handler.threads._idle == [executor]
    assert in_thread(executor, lambda: threading.current_thread().name) == name
    counted = AnonymousRequestCount.objects.filter(status_code=401).values_list("count", flat=True)
    assert list(counted) == [5]  # every request still accounted for: no key, so counted, not logged
    assert not RequestLog.objects.exists()


def test_concurrent_requests_get_a_thread_each_and_the_threads_are_reused(handler):
    assert [status for status, _ in run_concurrently(handler, 4)] == [200] * 4
    assert (handler.threads.started, handler.threads.idle) == (4, 4)
    run_concurrently(handler, 4)
    assert (handler.threads.started, handler.threads.idle) == (4, 4)


def test_threads_beyond_the_idle_limit_end():
    handler = ASGIHandler(idle_threads=1)
    try:
        run_concurrently(handler, 3)
        assert (handler.threads.started, handler.threads.idle) == (3, 1)
    finally:
        handler.threads.close()
    assert handler.threads.idle == 0


@pytest.mark.urls(__name__)
def test_requests_in_turn_run_in_one_thread_seen_from_the_view(handler, request_threads):
    for _ in range(5):
        assert asyncio.run(call(handler, "/thread"))[0] == 200
    first = request_threads[0]
    assert first is not threading.current_thread()
    assert [thread is first for thread in request_threads] == [True] * 5


@pytest.mark.urls(__name__)
def test_concurrent_requests_run_in_a_thread_each_and_the_next_burst_reuses_them(handler, request_threads):
    assert [status for status, _ in run_concurrently(handler, 4, path="/thread")] == [200] * 4
    burst = set(request_threads)
    assert len(burst) == 4
    request_threads.clear()
    run_concurrently(handler, 4, path="/thread")
    assert set(request_threads) == burst


@pytest.mark.urls(__name__)
def test_threads_beyond_the_idle_limit_close_their_connections_and_end(request_threads, monkeypatch):
    closed_in = []  # the threads connections.close_all() ran in
    close_all = connections.close_all

    def recording_close_all():
        close_all()
        closed_in.append(threading.current_thread())

    monkeypatch.setattr(connections, "close_all", recording_close_all)
    handler = ASGIHandler(idle_threads=1)
    try:
        run_concurrently(handler, 3, path="/thread")
        burst = list(request_threads)
        asyncio.run(call(handler, "/thread"))  # a request in turn runs in the one thread kept
        kept = request_threads[-1]
        assert len(set(burst)) == 3 and kept in burst
        retired = [thread for thread in burst if thread is not kept]
        for thread in retired:
            thread.join(timeout=30)
        assert [thread.is_alive() for thread in retired] == [False, False]
        assert set(closed_in) == set(retired)  # each closed its own connections before it ended
        assert kept.is_alive()
    finally:
        handler.threads.close()
    assert not kept.is_alive() and kept in closed_in


def test_a_request_enters_its_thread_once_for_the_whole_middleware_chain(handler, monkeypatch):
    """Django's own handler under ASGI steps thread -> event loop -> thread around the view (and
    more around async-capable middlewares); here the chain and the view run in one call."""
    into_thread, onto_loop = [], []
    original_sync_to_async, original_async_to_sync = SyncToAsync.__call__, AsyncToSync.__call__

    async def counting_sync_to_async(self, *args, **kwargs):
        if self._thread_sensitive:  # (Django logs a 4xx from a shared pool thread, not this one)
            into_thread.append(self.func.__qualname__)
        return await original_sync_to_async(self, *args, **kwargs)

    def counting_async_to_sync(self, *args, **kwargs):
        onto_loop.append(self.awaitable)
        return original_async_to_sync(self, *args, **kwargs)

    monkeypatch.setattr(SyncToAsync, "__call__", counting_sync_to_async)
    monkeypatch.setattr(AsyncToSync, "__call__", counting_async_to_sync)
    status, _ = asyncio.run(call(handler, "/api/v1/classify", method="POST"))
    assert status == 401
    assert onto_loop == []
    # The request_started signal, the whole chain with the view, and closing the response.
    assert into_thread == [
        "Signal.asend.<locals>.sync_send",
        "convert_exception_to_response.<locals>.inner",
        "HttpResponseBase.close",
    ]


@pytest.mark.usefixtures("loaded_model")
def test_a_classification_through_the_handler(handler, make_key):
    _, raw_key = make_key(rate_limit=10, rate_window_seconds=60)
    body = json.dumps({"image": base64.b64encode(picture("jellyfish")).decode()}).encode()
    headers = [(b"authorization", f"Bearer {raw_key}".encode()), (b"content-type", b"application/json")]
    status, answer = asyncio.run(call(handler, "/api/v1/classify", method="POST", headers=headers, body=body))
    assert status == 200, answer
    assert answer["predictions"][0]["label"] == "jellyfish"


def test_other_scopes_are_refused_as_django_does(handler):
    with pytest.raises(ValueError, match="lifespan"):
        asyncio.run(handler({"type": "lifespan"}, None, None))


def test_sqlite_connections_outlive_their_request(handler, settings):
    database = settings.DATABASES["default"]
    if database["ENGINE"] != "django.db.backends.sqlite3":
        pytest.skip("PostgreSQL connections come from psycopg's pool, one per request")
    # The in-memory test database ignores close(), so the identity check alone could not see a
    # CONN_MAX_AGE of 0; the setting is what keeps a file database's connection open.
    assert database["CONN_MAX_AGE"] is None
    asyncio.run(call(handler, "/api/v1/classify", method="POST"))
    executor = handler.threads._idle[-1]
    first = in_thread(executor, lambda: connection.connection)  # held here, so no new one can take its id
    asyncio.run(call(handler, "/api/v1/classify", method="POST"))
    assert first is not None and in_thread(executor, lambda: connection.connection) is first
