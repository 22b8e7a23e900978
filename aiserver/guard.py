"""The ASGI guard in front of Django: it bounds what a request may send before Django reads it.

Django's ASGI handler reads the whole body before any middleware runs, so a huge upload would be
spooled to disk first, and a body that drips in would hold a request thread's slot for as long as
the client likes. The guard

- hands Django an empty body when the declared length is over ``max_body_bytes``, and cuts a
  streamed (chunked) body at it: ``BodyLimitMiddleware`` answers 413;
- cuts a body that has not arrived ``body_timeout_s`` after the request began, or whose next chunk
  is ``idle_timeout_s`` late: 408 ``request_timeout``;
- hands Django no headers but the length when the headers total more than ``max_header_bytes``: 431.

In every case Django still runs, so the refusal is a JSON ``{"detail", "code"}`` answer and is
logged like any request. An answer that starts before the body was read to its end (these refusals)
carries ``Connection: close``: the rest of that body is never read, so the connection cannot serve
another request (aiserver.protocols closes it, lingering a bounded time for the client to finish). A head that never finishes never reaches the app: ``aiserver.protocols``
closes it.
"""

import asyncio
import logging
import time

from aiserver.protocols import PROTOCOL_SCOPE_KEY
from classifier.api.middleware import BODY_TIMED_OUT_SCOPE_KEY, BODY_TOO_LARGE_SCOPE_KEY, HEADERS_TOO_LARGE_SCOPE_KEY

logger = logging.getLogger(__name__)
# Without aiserver.protocols.H11Protocol (its PROTOCOL_SCOPE_KEY in the first request's scope), half-sent heads and
# connections after an early refusal are not timed: the guard says so once per process.
UNPROTECTED_WARNING = (
    "This server runs without aiserver.protocols.H11Protocol: half-sent request heads and connections after an "
    "early refusal can be held for ever. Pass uvicorn --http aiserver.protocols:H11Protocol (docs/deployment.md)."
)
_END_OF_BODY = {"type": "http.request", "body": b"", "more_body": False}
CONNECTION_CLOSE = (b"connection", b"close")


def declared_length(headers) -> int | None:
    """The Content-Length header's value, or None when it is absent or not a number."""
    for name, value in headers:
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None
    return None


def header_bytes(headers) -> int:
    """The bytes of the header names and values together."""
    return sum(len(name) + len(value) for name, value in headers)


class RequestGuard:
    """ASGI middleware: the size and time limits above, for HTTP requests; anything else passes through.

    ``clock`` (monotonic seconds) is an attribute so tests can advance time instead of waiting.
    """

    clock = staticmethod(time.monotonic)
    protocol_checked = False  # whether the first request's protocol has been looked at (see UNPROTECTED_WARNING)

    def __init__(
        self,
        app,
        *,
        max_body_bytes: int,
        max_header_bytes: int,
        body_timeout_s: float,
        idle_timeout_s: float,
        upload_path_prefix: str | None = None,
        max_upload_bytes: int = 0,
    ):
        self.app = app
        self.max_body_bytes = max_body_bytes
        self.upload_path_prefix = upload_path_prefix  # staff uploads of model files: max_upload_bytes instead
        self.max_upload_bytes = max_upload_bytes
        self.max_header_bytes = max_header_bytes
        self.body_timeout_s = body_timeout_s
        self.idle_timeout_s = idle_timeout_s

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        if not self.protocol_checked:
            self.protocol_checked = True
            if not scope.get(PROTOCOL_SCOPE_KEY):
                logger.warning(UNPROTECTED_WARNING)
        headers = scope.get("headers", [])
        if header_bytes(headers) > self.max_header_bytes:
            scope = {
                **scope,
                "headers": [(n, v) for n, v in headers if n == b"content-length"],
                HEADERS_TOO_LARGE_SCOPE_KEY: True,
            }
        body = _BodyState()
        return await self.app(scope, self._guarded(scope, receive, body), _closing_early(send, body))

    def body_limit(self, path: str) -> int:
        """The body limit for a request to ``path``: the upload limit under the upload prefix, else the API's."""
        if self.upload_path_prefix and path.startswith(self.upload_path_prefix):
            return self.max_upload_bytes
        return self.max_body_bytes

    def _guarded(self, scope, receive, body: "_BodyState"):
        """``receive``, bounded in size and time until the body's end; after it, passed through."""
        declared = declared_length(scope.get("headers", []))
        deadline = self.clock() + self.body_timeout_s
        limit = self.body_limit(scope.get("path", ""))
        received, cut = 0, False

        def cut_short(reason_key: str) -> dict:
            nonlocal cut
            cut = True
            scope[reason_key] = True  # BodyLimitMiddleware answers for it
            return dict(_END_OF_BODY)

        async def guarded_receive():
            nonlocal received
            while cut:  # the body was cut: drop its rest, pass on the disconnect
                message = await receive()
                if message["type"] != "http.request":
                    return message
            if body.ended:
                return await receive()
            if declared is not None and declared > limit:  # not read at all
                return cut_short(BODY_TOO_LARGE_SCOPE_KEY)
            message = await self._next_chunk(receive, deadline)
            if message is None:
                return cut_short(BODY_TIMED_OUT_SCOPE_KEY)
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    return cut_short(BODY_TOO_LARGE_SCOPE_KEY)
                body.ended = not message.get("more_body", False)
            return message

        return guarded_receive

    async def _next_chunk(self, receive, deadline: float):
        """The next message, or None when it does not come within the idle timeout and the deadline."""
        wait = min(self.idle_timeout_s, deadline - self.clock())
        if wait <= 0:
            return None
        try:
            return await asyncio.wait_for(receive(), wait)
        except TimeoutError:
            return None


class _BodyState:
    """Whether a request's body has been read to its end."""

    ended = False


def _closing_early(send, body: _BodyState):
    """``send``, adding ``Connection: close`` to an answer that starts before the body was read to its end."""

    async def send_closing(message):
        if message["type"] == "http.response.start" and not body.ended:
            headers = list(message.get("headers", []))
            if CONNECTION_CLOSE not in headers:
                message = {**message, "headers": [*headers, CONNECTION_CLOSE]}
        await send(message)

    return send_closing
