"""The API's errors and the one handler that renders every error as {"detail", "code"}."""

import ast
import logging
from pathlib import Path

from django.core.exceptions import RequestDataTooBig, TooManyFieldsSent, TooManyFilesSent
from django.db import InterfaceError, OperationalError
from rest_framework import exceptions as drf_exceptions
from rest_framework import status
from rest_framework.exceptions import APIException, ValidationError
from rest_framework.response import Response
from rest_framework.views import exception_handler as drf_exception_handler

from accounts.windows import WindowStoreUnavailable

from ..runtime import errors as runtime_errors

logger = logging.getLogger(__name__)


class RetryLater(APIException):
    """A temporary 503: the client should retry after ``retry_after`` seconds."""

    status_code = status.HTTP_503_SERVICE_UNAVAILABLE

    def __init__(self, detail=None, code=None, retry_after: int = 1):
        super().__init__(detail, code)
        self.wait = retry_after  # rendered as Retry-After by DRF's handler


class QuotaExceeded(APIException):
    """429: the key's monthly allowance is spent (its plan blocks overage); Retry-After: the next month's start."""

    status_code = status.HTTP_429_TOO_MANY_REQUESTS
    default_detail = "The API key's monthly allowance is spent; it resets at the start of next month (UTC)."
    default_code = "quota_exceeded"

    def __init__(self, detail=None, code=None, retry_after: int = 1):
        super().__init__(detail, code)
        self.wait = retry_after  # rendered as Retry-After by DRF's handler


class InvalidImage(APIException):
    status_code = status.HTTP_400_BAD_REQUEST
    default_detail = "The data is not a readable image."
    default_code = "invalid_image"


class BatchExceedsLimit(APIException):
    status_code = status.HTTP_400_BAD_REQUEST
    default_detail = "The request costs more units than the API key's whole rate limit; it could never be admitted."
    default_code = "batch_exceeds_limit"


class PayloadTooLarge(APIException):
    status_code = status.HTTP_413_REQUEST_ENTITY_TOO_LARGE
    default_detail = "The request body is larger than the server accepts."
    default_code = "payload_too_large"


class RequestTimeout(APIException):
    status_code = status.HTTP_408_REQUEST_TIMEOUT
    default_detail = "The request body did not arrive in time."
    default_code = "request_timeout"


class HeadersTooLarge(APIException):
    status_code = status.HTTP_431_REQUEST_HEADER_FIELDS_TOO_LARGE
    default_detail = "The request headers are larger than the server accepts."
    default_code = "headers_too_large"


class ImageTooLarge(APIException):
    status_code = status.HTTP_413_REQUEST_ENTITY_TOO_LARGE
    default_detail = "The image has more pixels than the server accepts."
    default_code = "image_too_large"


class ModelUnavailable(APIException):
    status_code = status.HTTP_503_SERVICE_UNAVAILABLE
    default_detail = "The model is not loaded."
    default_code = "model_unavailable"


class BatcherClosed(ModelUnavailable):
    """The model's version was replaced while this request held it; classify_images retries on the new one."""

    default_detail = "The model is switching versions; retry shortly."


class ModelNotAllowed(APIException):
    status_code = status.HTTP_403_FORBIDDEN
    default_detail = "This API key may not use this model."
    default_code = "model_not_allowed"


class ModelNotFound(APIException):
    status_code = status.HTTP_404_NOT_FOUND
    default_detail = "This server has no such model."
    default_code = "model_not_found"


class Overloaded(RetryLater):
    default_detail = "The server is at capacity; retry shortly."
    default_code = "overloaded"


class InferenceTimeout(RetryLater):
    default_detail = "The model did not answer in time; retry shortly."
    default_code = "inference_timeout"


class InferenceFailed(APIException):
    status_code = status.HTTP_500_INTERNAL_SERVER_ERROR
    default_detail = "The model failed on this request's batch."
    default_code = "inference_failed"


class RateLimiterUnavailable(RetryLater):
    default_detail = "The rate limiter's store is unreachable; retry shortly."
    default_code = "rate_limiter_unavailable"


class DatabaseUnavailable(APIException):
    status_code = status.HTTP_503_SERVICE_UNAVAILABLE
    default_detail = "The database is unavailable; retry shortly."
    default_code = "database_unavailable"


class ServerError(APIException):
    status_code = status.HTTP_500_INTERNAL_SERVER_ERROR
    default_detail = "Internal server error."
    default_code = "server_error"


def first_error(detail, *, name_field: bool = True) -> tuple[str, str]:
    """(message, code) of the first error in a DRF error structure; the message starts with its field's name
    (``"top_k: ..."``) unless ``name_field`` is off or it is a non-field error."""
    if isinstance(detail, dict):
        field, value = next(iter(detail.items()))
        message, code = first_error(value, name_field=name_field)
        return (message if field == "non_field_errors" or not name_field else f"{field}: {message}"), code
    if isinstance(detail, list):
        return first_error(detail[0], name_field=name_field) if detail else ("Invalid input.", "invalid")
    return str(detail), getattr(detail, "code", "error") or "error"


def error_body(exc: APIException) -> dict:
    """The one error shape, everywhere: ``{"detail": message, "code": code}``, plus ``errors`` (every field's
    errors) for an invalid request body. v2's per-image errors are this shape too (with ``message``, see
    serializers.image_results)."""
    message, code = first_error(exc.detail)
    body = {"detail": message, "code": code}
    if isinstance(exc, ValidationError) and isinstance(exc.detail, dict):
        body["errors"] = exc.get_full_details()
    return body


# The runtime's errors (classifier.runtime.errors, plain exceptions) and the API error that answers each.
_RUNTIME_ERRORS: dict[type[runtime_errors.ServingError], type[APIException]] = {
    runtime_errors.InvalidImage: InvalidImage,
    runtime_errors.ImageTooLarge: ImageTooLarge,
    runtime_errors.ModelNotFound: ModelNotFound,
    runtime_errors.BatcherClosed: BatcherClosed,
    runtime_errors.ModelUnavailable: ModelUnavailable,
    runtime_errors.Overloaded: Overloaded,
    runtime_errors.InferenceFailed: InferenceFailed,
    runtime_errors.InferenceTimeout: InferenceTimeout,
}


def api_error(exc: runtime_errors.ServingError) -> APIException:
    """The API error that answers a runtime error: its code, status (and Retry-After), with the runtime's
    message when it gave one."""
    answer = next(_RUNTIME_ERRORS[cls] for cls in type(exc).__mro__ if cls in _RUNTIME_ERRORS)
    return answer(exc.detail)


def translate_error(exc: Exception) -> Exception:
    """Map the runtime's errors and Django's own request errors onto API errors with the right status."""
    if isinstance(exc, runtime_errors.ServingError):
        return api_error(exc)
    if isinstance(exc, RequestDataTooBig):
        return PayloadTooLarge()
    if isinstance(exc, (TooManyFieldsSent, TooManyFilesSent)):
        return ValidationError({"non_field_errors": [str(exc)]}, code="too_many_fields")
    if isinstance(exc, (OperationalError, InterfaceError)):
        logger.error("database unavailable: %s", exc)
        return DatabaseUnavailable()
    if isinstance(exc, WindowStoreUnavailable):  # e.g. the usage report reading the window while Redis is down
        return RateLimiterUnavailable()
    return exc


def api_exception_handler(exc: Exception, context) -> Response:
    """DRF's EXCEPTION_HANDLER: every error becomes JSON ``{"detail", "code"}`` (+ ``errors``)."""
    exc = translate_error(exc)
    response = drf_exception_handler(exc, context)
    if response is None:
        logger.exception("unhandled error in %s", context.get("view").__class__.__name__, exc_info=exc)
        return Response(error_body(ServerError()), status=ServerError.status_code)
    if not isinstance(exc, APIException):  # Django's Http404 or PermissionDenied, which DRF answered itself
        detail = response.data["detail"]
        exc = APIException(detail, code=detail.code)
    response.data = error_body(exc)
    return response


def error_response(exc: APIException):
    """A JSON error response for code outside DRF views (middleware, URL fallbacks)."""
    from django.http import JsonResponse

    response = JsonResponse(error_body(exc), status=exc.status_code)
    if getattr(exc, "wait", None):
        response["Retry-After"] = str(int(exc.wait))
    return response


# --- the code list (docs/error-codes.md, written by `make schema`, checked by tests/contract) ------------------

# The codes DRF's own exceptions give, which the handler passes on in the same shape.
DRF_CODES = {
    "invalid": (400, "The request is invalid; `errors` has each field's errors (field codes such as `required`)."),
    "parse_error": (400, "The body is not valid JSON or multipart."),
    "not_authenticated": (401, "No API key was sent."),
    "authentication_failed": (401, "The credentials were not accepted."),
    "permission_denied": (403, "The caller may not do this."),
    "not_found": (404, "No such endpoint or object."),
    "method_not_allowed": (405, "The endpoint does not take this HTTP method."),
    "unsupported_media_type": (415, "The body's content type is not JSON or multipart."),
    "throttled": (429, "The key's rate limit is spent; wait Retry-After seconds."),
    "too_many_fields": (400, "The form has more fields or files than the server accepts."),  # translate_error's
}


def raised_codes() -> dict[str, tuple[int, str]]:
    """{code: (status, meaning)} of the codes the API's own code raises with ``code="..."`` (400 validation errors,
    401 key errors, per-image errors), read from the source of classifier/api: the first such message wins."""
    codes: dict[str, tuple[int, str]] = {}
    for path in sorted(Path(__file__).parent.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if not isinstance(node, ast.Call):
                continue
            code = next(
                (str(k.value.value) for k in node.keywords if k.arg == "code" and isinstance(k.value, ast.Constant)),
                None,
            )
            message = "" if code is None or code in codes else _message_of(node)
            if code is None or not message:  # a code with no literal message here is described elsewhere
                continue
            called = node.func.attr if isinstance(node.func, ast.Attribute) else getattr(node.func, "id", "")
            raised = globals().get(called) or getattr(drf_exceptions, called, None)  # ours, or DRF's (ValidationError)
            codes[code] = (int(getattr(raised, "status_code", status.HTTP_400_BAD_REQUEST)), message)
    return codes


def _message_of(call) -> str:
    """The literal message of an exception call (f-string parts kept, values as ``…``)."""
    argument = call.args[0] if call.args else None
    while isinstance(argument, ast.Dict | ast.List):  # {"field": ["message"]}
        items = argument.values if isinstance(argument, ast.Dict) else argument.elts
        argument = items[0] if items else None
    if isinstance(argument, ast.Constant):
        return str(argument.value)
    if isinstance(argument, ast.JoinedStr):
        return "".join(str(part.value) if isinstance(part, ast.Constant) else "…" for part in argument.values)
    return ""


def error_codes() -> dict[str, tuple[int, str]]:
    """Every code an API error can carry: {code: (HTTP status, meaning)}, sorted by status then code."""
    codes: dict[str, tuple[int, str]] = {}
    # This module's exceptions in definition order: a base class before the subclasses that reuse its code.
    ours: list[type[APIException]] = [
        cls
        for cls in list(globals().values())
        if isinstance(cls, type) and issubclass(cls, APIException) and cls.__module__ == __name__
    ]
    for cls in ours:
        if cls.default_code != "error" and cls.default_code not in codes:
            codes[cls.default_code] = (cls.status_code, str(cls.default_detail))
    codes.update({code: entry for code, entry in raised_codes().items() if code not in codes})
    codes.update({code: entry for code, entry in DRF_CODES.items() if code not in codes})
    return dict(sorted(codes.items(), key=lambda item: (item[1][0], item[0])))


def error_codes_markdown() -> str:
    """docs/error-codes.md: the code list, generated from this module and the API's source."""
    rows = [
        f"| `{code}` | {status_code} | {_cell(meaning)} |" for code, (status_code, meaning) in error_codes().items()
    ]
    return "\n".join(
        [
            "# Error codes",
            "",
            "Generated from `classifier/api/exceptions.py` and the API's source by `make schema`; do not edit by hand.",
            'Every error answer is `{"detail": ..., "code": ...}`; v2\'s per-image errors have the same shape.',
            "`…` in a meaning stands for a value filled in at run time.",
            "",
            "| code | HTTP status | meaning |",
            "| --- | --- | --- |",
            *rows,
            "",
        ]
    )


def _cell(text: str) -> str:
    return text.replace("|", "\\|")
