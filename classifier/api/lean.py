"""The lean path: ``POST /api/v1/classify`` and ``/api/v2/classify`` answered in front of Django's generic machinery.

A classification is the API's hot path. Through Django it builds an ``ASGIRequest``, walks thirteen middlewares,
resolves the URL, wraps the request for DRF, negotiates, parses, validates with a serializer and renders, all
under the GIL that the decode, the preprocessing and the model's threads need too. Measured in
docs/benchmarks.md, that machinery is most of the service's own CPU per request.

``LeanClassify`` is an ASGI app in front of the Django application (behind the request guard). It takes the
requests that are plainly well formed (a JSON body, one key, an allowed host, no CORS preflight or Origin)
and runs the same steps the views run, with the same functions: ``sent_key`` and ``api_key_authenticate``
(authentication), the model permissions, v2's look at the window before a large body is parsed, the
sliding-window store (``throttling.acquire``, charged one unit per image), ``classify_image`` or
``classify_batch``, the answer's serializer, ``error_body``, v2's ``request_id``, and ``write_call`` (the
metrics, the request line and the RequestLog row, written before the answer goes out). The answer carries the
headers Django's middlewares would add.

Everything else goes to Django untouched, with the body replayed, before anything was charged or written:
a missing or bad key, a refused or unknown model, a full window or quota (so Django answers the 429 with its
repeat counting), a batch larger than the key's whole window, a body that is not valid JSON or whose fields
are not plainly valid (a base64 image that does not decode is v1's 400, so v1 leaves it to Django; in a v2 batch
it is that image's own error), multipart uploads, other methods. Once a request is charged the lean path answers
it itself, errors included (an unreadable image: 400, charged, as through Django).
tests/api/test_lean_classify.py holds both paths to the same answers, headers and log rows.

``API_LEAN_PATH`` turns it off; ``API_LEAN_THREADS`` bounds the threads its requests run in (the model runs in the
batcher's threads; these decode, preprocess, wait for the batch and write the log row, never on the event loop).
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import orjson
from django.conf import settings
from django.db import DatabaseError, close_old_connections
from django.http.request import split_domain_port, validate_host
from rest_framework.exceptions import APIException, ValidationError
from rest_framework.renderers import JSONRenderer

from accounts.services import api_key_authenticate
from accounts.windows import WindowStoreUnavailable, quota_rule

from ..runtime.errors import ServingError
from ..services import classify_batch, classify_image
from ..serving import process_runtime
from .authentication import sent_key
from .call import CallRecord
from .exceptions import ServerError, error_body, translate_error
from .middleware import (
    BODY_TIMED_OUT_SCOPE_KEY,
    BODY_TOO_LARGE_SCOPE_KEY,
    HEADERS_TOO_LARGE_SCOPE_KEY,
    REQUEST_ID_HEADER,
    request_id,
    write_call,
)
from .permissions import VERSION_SEPARATOR
from .serializers import (
    MAX_FILENAME_LENGTH,
    batch_classification_body,
    classification_body,
    decode_base64_image,
    item_images,
    plain_item,
    plain_text,
)
from .throttling import SlidingWindowThrottle, acquire, rate_limit_headers

logger = logging.getLogger(__name__)

V1_PATH = "/api/v1/classify"  # the routes' paths; their names in the log and the metrics are the same
V2_PATH = "/api/v2/classify"
ALLOW = "POST, OPTIONS"  # what DRF's Allow header says for both views
_BATCH_FIELDS = frozenset({"images", "top_k", "model"})  # a v2 JSON body with any other field is Django's
_JSON_TYPES = frozenset({b"application/json", b"application/json; charset=utf-8", b"application/json;charset=utf-8"})
_ACCEPTED = frozenset({None, b"*/*", b"application/json"})  # Accept headers whose answer is plainly JSON
_GUARD_FLAGS = (BODY_TOO_LARGE_SCOPE_KEY, BODY_TIMED_OUT_SCOPE_KEY, HEADERS_TOO_LARGE_SCOPE_KEY)
# The request headers the lean path reads; one sent twice makes it Django's request (Django joins repeats).
_READ = frozenset(
    {
        b"host",
        b"content-type",
        b"content-length",
        b"accept",
        b"authorization",
        b"x-api-key",
        b"x-forwarded-host",
        b"origin",
        b"x-request-id",
    }
)
_RENDERER = JSONRenderer()


class Fallback(Exception):
    """The request is Django's: nothing was charged or written for it."""


class LeanClassify:
    """ASGI: ``POST /api/v1/classify`` and ``/api/v2/classify`` with a JSON body on the lean path, everything
    else to ``app`` (Django)."""

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
        and scope["path"] in _ROUTES
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
        return _ROUTES[scope["path"]](scope, body, started)
    except Fallback:
        return None
    except DatabaseError:  # before the charge (errors after it are answered): Django meets it again, answers 503
        return None
    finally:
        close_old_connections()  # and request_finished


def _classify(scope, body: bytes, started: float) -> tuple[int, list, bytes]:
    """v1: one image, the default model, CLASSIFIER_TOP_K predictions."""
    headers, secure = _plain_request(scope)
    api_key = _api_key(headers)
    _model_ready(api_key, None)
    image = _image(body)
    call = CallRecord(started=started, route=V1_PATH, api_key=api_key, window=_charge(api_key, 1), units=1)
    # Charged: from here on the answer is ours, an error included.
    extra: dict[str, str] = {}
    try:
        result = classify_image(image, top_k=settings.CLASSIFIER_TOP_K)
    except Exception as exc:  # noqa: BLE001 - every error is answered as DRF's handler answers it
        status, data, extra = _error(exc)
    else:
        call.answered_by(model=result.model, version=result.model_version)
        status, data = 200, classification_body(result)
    return _respond(scope, call, status, data, extra, secure)


def _classify_batch(scope, body: bytes, started: float) -> tuple[int, list, bytes]:
    """v2: a batch of images with its top_k and model, charged one unit per image."""
    headers, secure = _plain_request(scope)
    api_key = _api_key(headers)
    if _declared_length(headers) > settings.ACCOUNTS_PEEK_BEFORE_BODY_BYTES and not _room_for_one(api_key):
        raise Fallback()  # Django refuses it before parsing the body, as the view does
    items, top_k, name, version = _batch(body)
    _model_ready(api_key, name)
    images = item_images(items)
    call = CallRecord(
        started=started,
        route=V2_PATH,
        request_id=request_id(headers.get(b"x-request-id", b"").decode("latin-1")),
        api_key=api_key,
        window=_charge(api_key, len(items)),
        units=len(items),
    )
    # Charged: from here on the answer is ours, an error included.
    extra = {REQUEST_ID_HEADER: call.request_id}
    try:
        result = classify_batch(images, top_k=top_k, model_name=name, model_version=version)
    except Exception as exc:  # noqa: BLE001 - every error is answered as DRF's handler answers it
        status, data, error_headers = _error(exc)
        extra.update(error_headers)
    else:
        call.answered_by(model=result.model, version=result.model_version)
        filenames = [item.get("filename", "") for item in items]
        status, data = 200, batch_classification_body(request_id=call.request_id, result=result, filenames=filenames)
    return _respond(scope, call, status, data, extra, secure)


_ROUTES = {V1_PATH: _classify, V2_PATH: _classify_batch}


def _respond(scope, call: CallRecord, status: int, data, extra: dict[str, str], secure: bool):
    """The rendered answer with its headers; the call is accounted for (write_call) before it goes out."""
    content = _RENDERER.render(data)
    answer_headers = _answer_headers(call, extra, secure, len(content))
    seconds = time.perf_counter() - call.started
    write_call(call, method="POST", status=status, client_ip=_client_ip(scope), seconds=seconds)
    return status, answer_headers, content


def _plain_request(scope) -> tuple[dict[bytes, bytes], bool]:
    """The headers the lean path reads and whether the request came over HTTPS; Fallback unless the request
    plainly passes Django's request checks (SSL redirect, CORS, ALLOWED_HOSTS) and is JSON in and out."""
    headers = _headers(scope)
    secure = _secure(headers, scope)
    if (settings.SECURE_SSL_REDIRECT and not secure) or b"origin" in headers or not _host_allowed(headers):
        raise Fallback()
    if headers.get(b"content-type") not in _JSON_TYPES or headers.get(b"accept") not in _ACCEPTED:
        raise Fallback()
    return headers, secure


def _charge(api_key, cost: int):
    """Charge ``cost`` units to the key's window and quota (SlidingWindowThrottle): the window's state, or
    Fallback with nothing charged (a refusal is Django's 429, a cost over the key's whole window its 400)."""
    if not 1 <= cost <= api_key.effective_rate_limit:
        raise Fallback()
    state = _window(api_key, cost, record=True)
    if state.quota_exceeded or not state.allowed:
        raise Fallback()
    return state


def _room_for_one(api_key) -> bool:
    """Whether one more image fits the key's window and quota now, charging nothing (the throttle's
    allow_one_more)."""
    state = _window(api_key, 1, record=False)
    return state.allowed and not state.quota_exceeded


def _window(api_key, cost: int, *, record: bool):
    """The key's window and quota asked for ``cost`` units now (charged when they fit and ``record``);
    Fallback when the store cannot say (Django answers its 503)."""
    try:
        return acquire(
            SlidingWindowThrottle.store,
            key_id=api_key.pk,
            limit=api_key.effective_rate_limit,
            window=api_key.effective_rate_window_seconds,
            cost=cost,
            now=SlidingWindowThrottle.clock(),
            quota=quota_rule(api_key),
            record=record,
        )
    except WindowStoreUnavailable:
        raise Fallback() from None


def _declared_length(headers: dict[bytes, bytes]) -> int:
    try:
        return int(headers.get(b"content-length") or 0)
    except ValueError:
        raise Fallback() from None


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
    """The active key the request carries; else Fallback."""
    x_api_key = headers.get(b"x-api-key")
    try:
        raw_key = sent_key(headers.get(b"authorization", b""), x_api_key.decode("latin-1") if x_api_key else None)
    except APIException:
        raise Fallback() from None
    api_key = api_key_authenticate(raw_key=raw_key) if raw_key else None
    if api_key is None:
        raise Fallback()
    return api_key


def _model_ready(api_key, name: str | None) -> None:
    """Fallback unless the key may use model ``name`` (None: the default one) and it is loaded (the views'
    ModelIsAllowed and ModelIsReady)."""
    runtime = process_runtime()
    asked = name or runtime.default_name.partition(VERSION_SEPARATOR)[0]
    if api_key.effective_allowed_models and not api_key.may_use_model(asked):
        raise Fallback()
    try:
        runtime.get(name)
    except ServingError:
        raise Fallback() from None


def _image(body: bytes) -> bytes:
    """The image of ``{"image": "<base64>", "filename"?: "..."}`` as ClassifyInput reads it; Fallback for any
    other body (Django parses it again and answers its 400)."""
    data = _json(body)
    if not isinstance(data, dict) or "file" in data or not isinstance(data.get("image"), str):
        raise Fallback()
    filename = data.get("filename", "")
    if not isinstance(filename, str) or len(filename.strip()) > MAX_FILENAME_LENGTH or not plain_text(filename):
        raise Fallback()
    image = data["image"].strip()
    if not image:
        raise Fallback()
    try:
        return decode_base64_image(image, field="image")
    except ValidationError:
        raise Fallback() from None


def _batch(body: bytes) -> tuple[list[dict], int, str | None, str | None]:
    """(items, top_k, model name, version) of a v2 JSON body as ClassifyBatchInput reads it, naming a model this
    server has; Fallback for any other body (Django answers its 400)."""
    data = _json(body)
    if not isinstance(data, dict) or not data.keys() <= _BATCH_FIELDS:
        raise Fallback()
    sent = data.get("images")
    if type(sent) is not list or not 1 <= len(sent) <= settings.CLASSIFIER_MAX_BATCH_IMAGES:
        raise Fallback()
    items = [plain_item(item) for item in sent]
    top_k = data.get("top_k", settings.CLASSIFIER_TOP_K)
    if any(item is None for item in items) or type(top_k) is not int:
        raise Fallback()
    if not 1 <= top_k <= settings.CLASSIFIER_MAX_TOP_K:
        raise Fallback()
    name, version = _model_choice(data)
    return items, top_k, name, version  # type: ignore[return-value]


def _model_choice(data: dict) -> tuple[str | None, str | None]:
    """(name, version) of the body's ``model`` (None for what it leaves to the server); Fallback unless it plainly
    names a model this server has (whether the key may use it is _model_ready's question)."""
    if "model" not in data:
        return None, None
    model = data["model"]
    if type(model) is not str or not model or model != model.strip() or not plain_text(model):
        raise Fallback()
    name, at, version = model.partition(VERSION_SEPARATOR)
    if name not in process_runtime().names():
        raise Fallback()
    return name, (version if at else None)


def _json(body: bytes):
    """The body parsed, by orjson (a third faster than the standard library on a v2 batch); Fallback where it
    fails (Django parses it with SafeJSONParser and answers). Where the two parsers differ, orjson refuses
    (NaN, Infinity, lone surrogates, a byte order mark) or reads an integer over 64 bits as a float; no body
    with such a value in a field the lean path reads passes its checks (top_k must be an int), so those go to
    Django too, and the lean path answers just what SafeJSONParser's parse would."""
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError:
        raise Fallback() from None


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
