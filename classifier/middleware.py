"""Request-boundary middleware: the request log, v2 request ids and the body size limit."""
import logging
import re
import time
import uuid

from django.conf import settings
from django.db import DatabaseError

from accounts.services import request_log_create

from . import metrics
from .exceptions import PayloadTooLarge, error_response

logger = logging.getLogger(__name__)

API_PREFIX = "/api/"
BODY_TOO_LARGE_SCOPE_KEY = "aiserver.body_too_large"  # set by aiserver.asgi on oversized streamed bodies


class RequestLogMiddleware:
    """Write one RequestLog row for every request under /api/ (docs and unknown paths too), whatever its outcome."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        if not request.path.startswith(API_PREFIX):
            return self.get_response(request)
        started = time.perf_counter()
        response = self.get_response(request)
        elapsed = time.perf_counter() - started
        elapsed_ms = elapsed * 1000.0
        _record_metrics(request, response.status_code, elapsed)
        api_key = getattr(request, "api_key", None)
        try:
            request_log_create(
                api_key_id=api_key.pk if api_key else None,
                endpoint=request.path,
                method=request.method,
                status_code=response.status_code,
                response_time_ms=elapsed_ms,
                client_ip=request.META.get("REMOTE_ADDR") or None,
                request_id=response.get("X-Request-ID", ""),
                images=getattr(request, "api_units", 0),
                model_name=getattr(request, "api_model_name", ""),
                model_version=getattr(request, "api_model_version", ""),
            )
        except DatabaseError:
            logger.exception("could not write the request log for %s %s", request.method, request.path)
        return response


def _endpoint(request) -> str:
    """The matched route (bounded label values), or "unmatched" for unknown paths (the catch-all regex)."""
    match = getattr(request, "resolver_match", None)
    route = getattr(match, "route", "") if match else ""
    return f"/{route}" if route and not route.startswith("^") else "unmatched"


def _record_metrics(request, status_code: int, seconds: float) -> None:
    endpoint, status = _endpoint(request), str(status_code)
    metrics.REQUESTS.labels(endpoint, request.method if request.method in _METHODS else "other", status).inc()
    metrics.REQUEST_LATENCY.labels(endpoint, status).observe(seconds)


_METHODS = frozenset({"GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"})


class BodyLimitMiddleware:
    """Answer 413 for bodies over API_MAX_BODY_BYTES before anything reads them."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        if self._too_large(request):
            return error_response(
                PayloadTooLarge(f"The request body is over the limit of {settings.API_MAX_BODY_BYTES} bytes.")
            )
        return self.get_response(request)

    @staticmethod
    def _too_large(request) -> bool:
        if getattr(request, "scope", {}).get(BODY_TOO_LARGE_SCOPE_KEY):
            return True
        try:
            return int(request.META.get("CONTENT_LENGTH") or 0) > settings.API_MAX_BODY_BYTES
        except ValueError:
            return False


REQUEST_ID_PREFIX = "/api/v2/"
REQUEST_ID_HEADER = "X-Request-ID"
_CALLER_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{1,64}$")


class RequestIdMiddleware:
    """Give every v2 request an id: the caller's ``X-Request-ID`` when it is sane, else a new one.

    The id is ``request.request_id`` for the view and the response's ``X-Request-ID`` for the
    caller and the request log (which sits outside this middleware).
    """

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        if not request.path.startswith(REQUEST_ID_PREFIX):
            return self.get_response(request)
        sent = request.META.get("HTTP_X_REQUEST_ID", "").strip()
        request.request_id = sent if _CALLER_REQUEST_ID.match(sent) else uuid.uuid4().hex
        response = self.get_response(request)
        response[REQUEST_ID_HEADER] = request.request_id
        return response
