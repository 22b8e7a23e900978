"""uvicorn's h11 HTTP protocol with a deadline for each request's head (``--http aiserver.protocols:H11Protocol``).

uvicorn times out idle keep-alive connections but not a client that has started a request and
stops before the headers end: such connections were held for ever, each counting against
``--limit-concurrency`` until the server answered everyone 503. Here a connection whose request
head (the request line and headers) is not complete ``API_HEADER_READ_TIMEOUT_SECONDS`` after its
first byte (or after the connection opened) is closed. The size of the head is bounded by
uvicorn's own ``--h11-max-incomplete-event-size``; the app's limit on headers is aiserver.guard's.
"""

import asyncio

import h11
from uvicorn.protocols.http import h11_impl


class H11Protocol(h11_impl.H11Protocol):
    """``uvicorn.protocols.http.h11_impl.H11Protocol`` that closes connections whose head is late."""

    def __init__(self, *args, **kwargs):
        from django.conf import settings  # read when the connection opens: Django is set up by then

        super().__init__(*args, **kwargs)
        self.header_timeout_s = settings.API_HEADER_READ_TIMEOUT_SECONDS
        self.header_timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport) -> None:
        super().connection_made(transport)
        self._arm_header_timer()

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        if self.conn.their_state is h11.IDLE:  # still waiting for (the rest of) a request's head
            if self.header_timer is None:
                self._arm_header_timer()
        else:
            self._cancel_header_timer()

    def connection_lost(self, exc) -> None:
        self._cancel_header_timer()
        super().connection_lost(exc)

    def on_response_complete(self) -> None:
        super().on_response_complete()
        self._cancel_header_timer()  # the next request's head is timed from its first byte; till then keep-alive

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
