"""The lean path: ``POST /api/v1/classify`` answered in front of Django's generic request machinery.

A v1 classification is the API's hot path. Through Django it builds an ``ASGIRequest``, walks thirteen
middlewares, resolves the URL, wraps the request for DRF, negotiates, parses, validates with a serializer and
renders, all under the GIL that the decode, the preprocessing and the model's threads need too. Measured in
docs/benchmarks.md, that machinery is most of the service's own CPU per request.

``LeanClassify`` is an ASGI app in front of the Django application (behind the request guard). It takes the
requests that are plainly well formed (a JSON body, one key, an allowed host, no CORS preflight or Origin)
and runs the same steps the view runs, with the same functions: ``sent_key`` and ``api_key_authenticate``
(authentication), the model permissions, the sliding-window store (``throttling.acquire``), ``classify_image``,
``classification_body``, ``error_body`` and ``write_call`` (the metrics, the request line and the RequestLog row,
written before the answer goes out). The answer carries the headers Django's middlewares would add.

Everything else goes to Django untouched, with the body replayed, before anything was charged or written:
a missing or bad key, a refused model, a full window or quota (so Django answers the 429 with its repeat
counting), a body that is not valid JSON or whose image is not valid base64, multipart uploads, other methods.
Once a request is charged the lean path answers it itself, errors included (an unreadable image: 400, charged,
as through Django). tests/api/test_lean_classify.py holds both paths to the same answers, headers and log rows.

``API_LEAN_PATH`` turns it off; ``API_LEAN_THREADS`` bounds the threads its requests run in (the model runs in the
batcher's threads; these decode, preprocess, wait for the batch and write the log row, never on the event loop).
"""

from __future__ import annotations

import asyncio
import json
import logging
import secrets
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from django.conf import settings
from django.db import DatabaseError, close_old_connections
from django.http.request import split_domain_port, validate_host
from rest_framework.exceptions import APIException, ValidationError
from rest_framework.renderers import JSONRenderer

from accounts.services import api_key_authenticate
from accounts.windows import WindowStoreUnavailable, quota_rule

from ..runtime.errors import ServingError
from ..services import classify_image
from ..serving import process_runtime
from .authentication import sent_key
from .call import CallRecord
from .exceptions import ServerError, error_body, translate_error
from .middleware import BODY_TIMED_OUT_SCOPE_KEY, BODY_TOO_LARGE_SCOPE_KEY, HEADERS_TOO_LARGE_SCOPE_KEY, write_call
from .permissions import VERSION_SEPARATOR
from .serializers import classification_body, decode_base64_image
from .throttling import SlidingWindowThrottle, acquire, rate_limit_headers

logger = logging.getLogger(__name__)

PATH = "/api/v1/classify"  # the route's path; its name in the log and the metrics is the same
ALLOW = "POST, OPTIONS"  # what DRF's Allow header says for the view
_JSON_TYPES = frozenset({b"application/json", b"application/json; charset=utf-8", b"application/json;charset=utf-8"})
_ACCEPTED = frozenset({None, b"*/*", b"application/json"})  # Accept headers whose answer is plainly JSON
_GUARD_FLAGS = (BODY_TOO_LARGE_SCOPE_KEY, BODY_TIMED_OUT_SCOPE_KEY, HEADERS_TOO_LARGE_SCOPE_KEY)
# The request headers the lean path reads; one sent twice makes it Django's request (Django joins repeats).
_READ = frozenset({b"host", b"content-type", b"accept", b"authorization", b"x-api-key", b"x-forwarded-host", b"origin"})
_RENDERER = JSONRenderer()


class Fallback(Exception):
    """The request is Django's: nothing was charged or written for it."""


class LeanClassify:
    """ASGI: ``POST /api/v1/classify`` with a JSON body on the lean path, everything else to ``app`` (Django)."""

    def __init__(self, app, *, threads: int):
        self.app = app
        self.threads = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="lean")
        self.answered = 0  # requests the lean path answered itself (tests and the benchmark read it)

    async def __call__(self, scope, receive, send):
        if not _claimable(scope):
            return await self.app(scope, receive, send)
        chunks: list[bytes] = []
        while True:
            message = await receive()
            if message["type"] != "http.request":  # the client went away: Django's handler sees it too
                return await self.app(scope, _replay(chunks, receive, message), send)
            chunks.append(message.get("body", b""))
            if not message.get("more_body", False):
                break
        body = b"".join(chunks)
        if any(scope.get(flag) for flag in _GUARD_FLAGS):  # cut short by the guard: Django answers 413/408/431
            return await self.app(scope, _replay([body], receive), send)
        answer = await asyncio.get_running_loop().run_in_executor(
            self.threads, _answer, scope, body, time.perf_counter()
        )
        if answer is None:
            return await self.app(scope, _replay([body], receive), send)
        self.answered += 1
        status, headers, content = answer
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": content})

    def close(self) -> None:
        self.threads.shutdown(wait=True)


def _claimable(scope) -> bool:
    return (
        scope["type"] == "http"
        and scope["path"] == PATH
        and scope["method"] == "POST"
        and not scope.get("query_string")
        and settings.API_LEAN_PATH
        and not settings.DISALLOWED_USER_AGENTS
    )


def _replay(chunks: list[bytes], receive, last: dict | None = None):
    """``receive`` as Django's handler should see it: the body already read, then whatever comes next."""
    pending = [{"type": "http.request", "body": b"".join(chunks), "more_body": last is not None}]
    if last is not None:
        pending.append(last)

    async def replayed():
        if pending:
            return pending.pop(0)
        return await receive()

    return replayed


def _answer(scope, body: bytes, started: float) -> tuple[int, list, bytes] | None:
    """The answer to a claimed request (status, headers, body), or None when it is Django's. Runs in a lean thread."""
    close_old_connections()  # what Django's request_started signal does: drop a broken or expired connection
    try:
        return _classify(scope, body, started)
    except Fallback:
        return None
    finally:
        close_old_connections()  # and request_finished


def _classify(scope, body: bytes, started: float) -> tuple[int, list, bytes]:
    try:
        call, image, secure = _admitted(scope, body, started)
    except DatabaseError:  # Django meets it again and answers 503 database_unavailable
        raise Fallback() from None
    # Charged: from here on the answer is ours, an error included.
    extra: dict[str, str] = {}
    try:
        result = classify_image(image, top_k=settings.CLASSIFIER_TOP_K)
    except Exception as exc:  # noqa: BLE001 - every error is answered as DRF's handler answers it
        status, data, extra = _error(exc)
    else:
        call.answered_by(model=result.model, version=result.model_version)
        status, data = 200, classification_body(result)
    content = _RENDERER.render(data)
    answer_headers = _answer_headers(call, extra, secure, len(content))
    write_call(call, method="POST", status=status, client_ip=_client_ip(scope), seconds=time.perf_counter() - started)
    return status, answer_headers, content


def _admitted(scope, body: bytes, started: float) -> tuple[CallRecord, bytes, bool]:
    """Authenticate, check the model, read the image and charge the key's window, as the view's steps do:
    (the call, the image, whether the request came over HTTPS). Fallback, with nothing charged, when any step
    would not simply pass."""
    headers = _headers(scope)
    secure = _secure(headers, scope)
    if (settings.SECURE_SSL_REDIRECT and not secure) or b"origin" in headers or not _host_allowed(headers):
        raise Fallback()
    if headers.get(b"content-type") not in _JSON_TYPES or headers.get(b"accept") not in _ACCEPTED:
        raise Fallback()
    api_key = _api_key(headers)
    image = _image(body)
    limit, window = api_key.effective_rate_limit, api_key.effective_rate_window_seconds
    if limit < 1:
        raise Fallback()
    try:
        state = acquire(
            SlidingWindowThrottle.store,
            key_id=api_key.pk,
            limit=limit,
            window=window,
            cost=1,
            now=SlidingWindowThrottle.clock(),
            quota=quota_rule(api_key),
        )
    except WindowStoreUnavailable:
        raise Fallback() from None
    if state.quota_exceeded or not state.allowed:  # refused: nothing was charged, Django answers the 429
        raise Fallback()
    return CallRecord(started=started, route=PATH, api_key=api_key, window=state, units=1), image, secure


def _headers(scope) -> dict[bytes, bytes]:
    """The request headers the lean path reads (names in lower case, as ASGI gives them); Fallback on a repeat."""
    found: dict[bytes, bytes] = {}
    for name, value in scope["headers"]:
        if name in _READ:
            if name in found:
                raise Fallback()
            found[name] = value
    return found


def _secure(headers: dict[bytes, bytes], scope) -> bool:
    """HttpRequest.is_secure(): SECURE_PROXY_SSL_HEADER's header when it is set and sent, else the scope's scheme."""
    if settings.SECURE_PROXY_SSL_HEADER:
        meta_name, secure_value = settings.SECURE_PROXY_SSL_HEADER
        name = meta_name.removeprefix("HTTP_").lower().replace("_", "-").encode("latin-1")
        sent = next((value for key, value in scope["headers"] if key == name), None)
        if sent is not None:
            return sent.decode("latin-1").split(",", 1)[0].strip() == secure_value
    return scope.get("scheme") == "https"


def _host_allowed(headers: dict[bytes, bytes]) -> bool:
    """HttpRequest.get_host()'s check against ALLOWED_HOSTS (Django answers 400 for the others)."""
    sent = headers.get(b"x-forwarded-host") if settings.USE_X_FORWARDED_HOST else None
    sent = sent or headers.get(b"host")
    if sent is None:
        return False
    domain, _port = split_domain_port(sent.decode("latin-1"))
    allowed = settings.ALLOWED_HOSTS
    if settings.DEBUG and not allowed:
        allowed = [".localhost", "127.0.0.1", "[::1]"]
    return bool(domain) and validate_host(domain, allowed)


def _api_key(headers: dict[bytes, bytes]):
    """The active key the request carries, allowed to use the default model, which is ready; else Fallback."""
    x_api_key = headers.get(b"x-api-key")
    try:
        raw_key = sent_key(headers.get(b"authorization", b""), x_api_key.decode("latin-1") if x_api_key else None)
    except APIException:
        raise Fallback() from None
    api_key = api_key_authenticate(raw_key=raw_key) if raw_key else None
    if api_key is None:
        raise Fallback()
    runtime = process_runtime()
    if api_key.effective_allowed_models:
        name = runtime.default_name.partition(VERSION_SEPARATOR)[0]
        if not api_key.may_use_model(name):
            raise Fallback()
    try:
        runtime.get(None)
    except ServingError:
        raise Fallback() from None
    return api_key


def _image(body: bytes) -> bytes:
    """The image of ``{"image": "<base64>", "filename"?: "..."}`` as ClassifyInput reads it; Fallback for any
    other body (Django parses it again and answers its 400)."""
    try:
        data = json.loads(body.decode("utf-8"), parse_constant=_no_constant)
    except (ValueError, RecursionError):
        raise Fallback() from None
    if not isinstance(data, dict) or "file" in data or not isinstance(data.get("image"), str):
        raise Fallback()
    filename = data.get("filename", "")
    if not isinstance(filename, str) or len(filename.strip()) > 255 or not _plain(filename):
        raise Fallback()
    image = data["image"].strip()
    if not image:
        raise Fallback()
    try:
        return decode_base64_image(image, field="image")
    except ValidationError:
        raise Fallback() from None


def _no_constant(name: str):
    raise ValueError(f"{name} is not JSON")  # DRF's STRICT_JSON: NaN and Infinity are refused


def _plain(text: str) -> bool:
    """No null character and no lone surrogate: DRF's CharField refuses those."""
    return "\x00" not in text and not any("\ud800" <= c <= "\udfff" for c in text)


def _error(exc: Exception) -> tuple[int, dict, dict[str, str]]:
    """(status, body, headers) of an error raised after the request was charged, as DRF's handler answers it."""
    error = translate_error(exc)
    if not isinstance(error, APIException):
        logger.exception("unhandled error in the lean classify path", exc_info=exc)
        error = ServerError()
    wait = getattr(error, "wait", None)
    return error.status_code, error_body(error), ({"Retry-After": str(int(wait))} if wait else {})


def _answer_headers(call: CallRecord, extra: dict[str, str], secure: bool, length: int) -> list[tuple[bytes, bytes]]:
    """The answer's headers: the view's (Allow, the quota headers), then what Django's middlewares add."""
    headers: dict[str, Any] = {"Content-Type": "application/json", "Allow": ALLOW, **extra}
    if call.window is not None:
        headers.update(rate_limit_headers(call.window))
    headers["X-Frame-Options"] = settings.X_FRAME_OPTIONS
    headers["Content-Length"] = str(length)
    headers["Vary"] = "origin"  # corsheaders, on every /api/ answer
    if settings.CONTENT_SECURITY_POLICY:
        headers["Content-Security-Policy"] = settings.CONTENT_SECURITY_POLICY.format(nonce=secrets.token_urlsafe(16))
    if settings.SECURE_HSTS_SECONDS and secure:
        hsts = f"max-age={settings.SECURE_HSTS_SECONDS}"
        if settings.SECURE_HSTS_INCLUDE_SUBDOMAINS:
            hsts += "; includeSubDomains"
        if settings.SECURE_HSTS_PRELOAD:
            hsts += "; preload"
        headers["Strict-Transport-Security"] = hsts
    if settings.SECURE_CONTENT_TYPE_NOSNIFF:
        headers["X-Content-Type-Options"] = "nosniff"
    if settings.SECURE_REFERRER_POLICY:
        policy = settings.SECURE_REFERRER_POLICY
        headers["Referrer-Policy"] = (
            ",".join(v.strip() for v in policy.split(",")) if isinstance(policy, str) else ",".join(policy)
        )
    if settings.SECURE_CROSS_ORIGIN_OPENER_POLICY:
        headers["Cross-Origin-Opener-Policy"] = settings.SECURE_CROSS_ORIGIN_OPENER_POLICY
    return [(name.encode("latin-1"), str(value).encode("latin-1")) for name, value in headers.items()]


def _client_ip(scope) -> str | None:
    client = scope.get("client")
    return client[0] if client else None
