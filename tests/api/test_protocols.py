"""aiserver.protocols.H11Protocol on a real event loop, fed bytes through a transport that records what it is told.

The live tests (tests/live/test_slow_clients.py) run it over real sockets; these check the states a socket test
cannot reach cheaply: a client that stops reading, and the marker the guard looks for.
"""

import asyncio
import json
import logging

import pytest
import uvicorn
from django.test import override_settings
from uvicorn.server import ServerState

from aiserver.guard import UNPROTECTED_WARNING, RequestGuard
from aiserver.protocols import PROTOCOL_SCOPE_KEY, H11Protocol


class RecordingTransport(asyncio.Transport):
    """What the protocol writes and whether it closed or aborted the connection."""

    def __init__(self):
        super().__init__()
        self.written = b""
        self.closed = asyncio.Event()
        self.aborted = asyncio.Event()
        self.eof_written = False
        self.buffered = 0  # bytes the client has not read yet, as the protocol sees them

    def get_extra_info(self, name, default=None):
        return {"peername": ("127.0.0.1", 5000), "sockname": ("127.0.0.1", 8000)}.get(name, default)

    def write(self, data) -> None:
        self.written += bytes(data)

    def can_write_eof(self) -> bool:
        return True

    def write_eof(self) -> None:
        self.eof_written = True

    def get_write_buffer_size(self) -> int:
        return self.buffered

    def is_closing(self) -> bool:
        return self.closed.is_set() or self.aborted.is_set()

    def close(self) -> None:
        self.closed.set()

    def abort(self) -> None:
        self.aborted.set()

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass


def connect(app) -> tuple[H11Protocol, RecordingTransport]:
    config = uvicorn.Config(app=app, http=H11Protocol, lifespan="off", timeout_keep_alive=5)
    config.load()
    protocol = H11Protocol(config=config, server_state=ServerState(), app_state={})
    transport = RecordingTransport()
    protocol.connection_made(transport)
    return protocol, transport


async def answer_ok(scope, receive, send):
    if scope["type"] == "http":
        answer_ok.scopes.append(scope)
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"2")]})
        await send({"type": "http.response.body", "body": b"ok"})


answer_ok.scopes = []


async def settle(event: asyncio.Event) -> None:
    await asyncio.wait_for(event.wait(), timeout=10)  # far beyond any setting below: a miss fails the test


def test_each_request_is_marked_as_read_by_this_protocol():
    async def scenario():
        protocol, transport = connect(answer_ok)
        protocol.data_received(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        await asyncio.sleep(0)  # the request's task runs
        await asyncio.sleep(0)
        protocol.connection_lost(None)
        return transport

    transport = asyncio.run(scenario())
    assert transport.written.startswith(b"HTTP/1.1 200 ")
    assert answer_ok.scopes[-1][PROTOCOL_SCOPE_KEY] is True


@override_settings(API_SEND_TIMEOUT_SECONDS=0.05)
def test_a_client_that_stops_reading_is_aborted_after_the_send_timeout():
    async def scenario():
        protocol, transport = connect(answer_ok)
        protocol.pause_writing()  # the transport's buffer is full: the client reads nothing
        await settle(transport.aborted)
        return transport

    assert asyncio.run(scenario()).aborted.is_set()


@override_settings(API_SEND_TIMEOUT_SECONDS=0.05)
def test_a_closed_connection_whose_answer_stays_unsent_is_aborted():
    async def scenario():
        protocol, transport = connect(answer_ok)
        transport.buffered = 1 << 20  # an answer the client never reads
        protocol.transport.close()
        await settle(transport.aborted)
        return transport

    transport = asyncio.run(scenario())
    assert transport.closed.is_set() and transport.aborted.is_set()


def test_a_request_with_both_lengths_gets_a_json_400_and_the_connection_closes():
    async def scenario():
        protocol, transport = connect(answer_ok)
        protocol.data_received(
            b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"
        )
        protocol.eof_received()
        protocol.timeout_keep_alive = 0.01  # the linger: the rest of the body is not awaited for long
        await settle(transport.closed)
        return transport

    transport = asyncio.run(scenario())
    head, _, body = transport.written.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 400 ") and b"connection: close" in head.lower()
    assert json.loads(body)["code"] == "parse_error"


@pytest.mark.parametrize("marked, warned", [(True, False), (False, True)])
def test_the_guard_warns_once_when_the_protocol_is_not_in_use(caplog, marked, warned):
    guard = RequestGuard(answer_ok, max_body_bytes=10, max_header_bytes=1000, body_timeout_s=1, idle_timeout_s=1)
    scope = {"type": "http", "headers": [], **({PROTOCOL_SCOPE_KEY: True} if marked else {})}

    async def receive():
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message):
        pass

    with caplog.at_level(logging.WARNING, logger="aiserver.guard"):
        for _ in range(3):
            asyncio.run(guard(dict(scope), receive, send))
    assert [record.getMessage() for record in caplog.records] == ([UNPROTECTED_WARNING] if warned else [])
