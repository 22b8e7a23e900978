"""uvicorn's h11 HTTP protocol with a deadline on every state of a connection (``--http aiserver.protocols:H11Protocol``).

uvicorn times out idle keep-alive connections, and nothing else a client can hold. Here:

- **a request head** that is not complete ``API_HEADER_READ_TIMEOUT_SECONDS`` after its first byte (or after the
  connection opened) closes the connection (its size is bounded by ``--h11-max-incomplete-event-size``);
- **a request body** is timed by aiserver.guard while the app reads it (408);
- **a body the answer did not wait for** (the guard's 413 and 408, anything answered before the body ended): the
  connection is closed after the answer. It first lingers, reading and dropping what the client still sends, so a
  client that sends its whole body before reading gets the answer rather than a reset; but for no longer than the
  keep-alive time (``--timeout-keep-alive``), whatever it sends. (uvicorn alone re-armed no timer once the client
  sent a byte after such an answer: one byte held the connection for ever.)
- **an answer the client does not read**: writing that stays paused, or a close whose answer is still unsent,
  for ``API_SEND_TIMEOUT_SECONDS`` aborts the connection;
- **a request with both Content-Length and Transfer-Encoding** is answered 400 and the connection closed
  (RFC 9112 §6.3: such a message may be a request-smuggling attempt).

Each request's scope carries ``PROTOCOL_SCOPE_KEY``, so aiserver.guard can warn when a server runs without it.
"""

import asyncio
import json
from typing import cast

import h11
from uvicorn.protocols.http import h11_impl

PROTOCOL_SCOPE_KEY = "aiserver.protocol"  # in the scope of each request this protocol reads


class StrictConnection(h11.Connection):
    """h11's server side, refusing a request that declares its length twice."""

    def next_event(self):
        event = super().next_event()
        if isinstance(event, h11.Request):
            names = {name.lower() for name, _ in event.headers}
            if b"content-length" in names and b"transfer-encoding" in names:
                raise h11.RemoteProtocolError("both Content-Length and Transfer-Encoding", 400)
        return event


class _LingeringTransport:
    """The connection's transport as uvicorn sees it: ``close()`` goes through the protocol, which may linger."""

    def __init__(self, transport: asyncio.Transport, protocol: "H11Protocol"):
        self._transport = transport
        self._protocol = protocol

    def __getattr__(self, name):
        return getattr(self._transport, name)

    def close(self) -> None:
        self._protocol.close_connection()

    def is_closing(self) -> bool:
        return self._protocol.lingering or self._transport.is_closing()


class H11Protocol(h11_impl.H11Protocol):
    """``uvicorn.protocols.http.h11_impl.H11Protocol`` with the deadlines above."""

    def __init__(self, *args, **kwargs):
        from django.conf import settings  # read when the connection opens: Django is set up by then

        super().__init__(*args, **kwargs)
        max_head = self.config.h11_max_incomplete_event_size or h11_impl.DEFAULT_MAX_INCOMPLETE_EVENT_SIZE
        self.conn = StrictConnection(h11.SERVER, max_head)
        self.header_timeout_s = settings.API_HEADER_READ_TIMEOUT_SECONDS
        self.send_timeout_s = settings.API_SEND_TIMEOUT_SECONDS
        self.header_timer: asyncio.TimerHandle | None = None
        self.linger_timer: asyncio.TimerHandle | None = None
        self.send_timer: asyncio.TimerHandle | None = None
        self.raw_transport = cast(asyncio.Transport, None)  # set when the connection opens

    @property
    def lingering(self) -> bool:
        return self.linger_timer is not None

    def connection_made(self, transport) -> None:
        self.raw_transport = transport
        super().connection_made(cast(asyncio.Transport, _LingeringTransport(transport, self)))
        self._arm_header_timer()

    def data_received(self, data: bytes) -> None:
        if self.lingering:
            return  # the rest of a body nobody reads: dropped, and the linger deadline stands
        super().data_received(data)
        if self.conn.their_state is h11.IDLE:  # still waiting for (the rest of) a request's head
            if self.header_timer is None:
                self._arm_header_timer()
        else:
            self._cancel_header_timer()

    def handle_events(self) -> None:
        super().handle_events()
        if self.scope is not None:  # the request being served; its task has not run yet
            self.scope[PROTOCOL_SCOPE_KEY] = True  # type: ignore[literal-required]

    def connection_lost(self, exc) -> None:
        self._cancel_header_timer()
        for timer in (self.linger_timer, self.send_timer):
            if timer is not None:
                timer.cancel()
        super().connection_lost(exc)

    def on_response_complete(self) -> None:
        super().on_response_complete()
        self._cancel_header_timer()  # the next request's head is timed from its first byte; till then keep-alive
        if self.conn.their_state is h11.SEND_BODY and not self.transport.is_closing():
            self.transport.close()  # answered before the body ended: h11 cannot read the next request

    def send_400_response(self, msg: str) -> None:
        """uvicorn's answer to a request h11 cannot parse, in the API's error shape."""
        reason = h11_impl.STATUS_PHRASES[400]
        body = json.dumps({"detail": msg, "code": "parse_error"}).encode()
        headers = [
            (b"content-type", b"application/json"),
            (b"content-length", str(len(body)).encode()),
            (b"connection", b"close"),
        ]
        for event in (h11.Response(status_code=400, headers=headers, reason=reason), h11.Data(data=body)):
            self.transport.write(self.conn.send(event))
        self.transport.write(self.conn.send(h11.EndOfMessage()))
        self.transport.close()

    def pause_writing(self) -> None:
        super().pause_writing()
        if self.send_timer is None:
            self.send_timer = self.loop.call_later(self.send_timeout_s, self._send_timed_out)

    def resume_writing(self) -> None:
        super().resume_writing()
        if self.send_timer is not None and not self.raw_transport.is_closing():
            self.send_timer.cancel()
            self.send_timer = None

    def close_connection(self) -> None:
        """Close now, or, while the client is still sending a body, linger first (see the module's docstring)."""
        if self.lingering or self.raw_transport.is_closing():
            return
        if self.conn.their_state is h11.SEND_BODY:
            if self.raw_transport.can_write_eof():
                self.raw_transport.write_eof()  # the answer is whole: the client reads it, then its end
            self.raw_transport.resume_reading()
            self.linger_timer = self.loop.call_later(self.timeout_keep_alive, self._close_now)
            return
        self._close_now()

    def _close_now(self) -> None:
        self.raw_transport.close()
        if self.raw_transport.get_write_buffer_size() and self.send_timer is None:
            self.send_timer = self.loop.call_later(self.send_timeout_s, self._send_timed_out)

    def _send_timed_out(self) -> None:
        self.logger.info("aborting a connection whose client read nothing for %gs", self.send_timeout_s)
        self.raw_transport.abort()

    def _arm_header_timer(self) -> None:
        self.header_timer = self.loop.call_later(self.header_timeout_s, self._header_timed_out)

    def _cancel_header_timer(self) -> None:
        if self.header_timer is not None:
            self.header_timer.cancel()
            self.header_timer = None

    def _header_timed_out(self) -> None:
        self.header_timer = None
        if self.conn.their_state is h11.IDLE and not self.transport.is_closing():
            self.logger.info("closing a connection whose request head did not arrive in %gs", self.header_timeout_s)
            self.transport.close()
