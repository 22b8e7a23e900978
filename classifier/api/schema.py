"""The OpenAPI contract's declarations: one request body per content type, every error answer, the quota headers.

The views validate with ``serializers.ClassifyInput`` / ``ClassifyBatchInput``, which take either
content type; the serializers here only describe, so a generated client sends exactly what the
server accepts. Their fields are built when the schema is generated (``get_fields``), so the bounds
and the model names are the configured ones. tests/reliability/test_fuzz.py checks that a request
matching them is accepted.

Adding an error answer to an operation is one entry in its ``errors(...)`` call; a new kind of
error is one entry in ``ERRORS``.
"""

import re

from django.conf import settings
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiExample, OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import serializers

from ..models import NAME_PATTERN as VERSION_PATTERN
from ..serving import process_runtime
from . import serializers as s
from .serializers import Base64ImageField, ErrorOutput

# A real 1x1 PNG, so the documented examples can be sent as they are ("Try it out", the fuzz tests).
EXAMPLE_PNG = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAIAAACQd1PeAAAADElEQVR42mM4oaEBAALUARk7rVwIAAAAAElFTkSuQmCC"


# --- request bodies (components ClassifyJsonRequest, ClassifyMultipartRequest, ...) ---------------------


def _filename_field() -> serializers.CharField:
    return serializers.CharField(required=False, max_length=255, allow_blank=True, help_text="Echoed in the answer.")


def _top_k_field() -> serializers.IntegerField:
    return serializers.IntegerField(
        required=False,
        min_value=1,
        max_value=settings.CLASSIFIER_MAX_TOP_K,
        help_text=f"Predictions per image; default {settings.CLASSIFIER_TOP_K}.",
    )


def _model_field() -> serializers.RegexField:
    """A configured name, or ``name@version`` (the version served: see /api/v2/models)."""
    names = "|".join(re.escape(name) for name in process_runtime().names())
    return serializers.RegexField(
        rf"^(?:{names})(?:@{VERSION_PATTERN.lstrip('^').rstrip('$')})?$",
        required=False,
        help_text="A name from /api/v2/models, or name@version for the version it serves; default: the first.",
    )


class ClassifyJson(serializers.Serializer):
    """v1, application/json: one base64 image."""

    def get_fields(self):
        return {"image": Base64ImageField(), "filename": _filename_field()}


class ClassifyMultipart(serializers.Serializer):
    """v1, multipart/form-data: one image file."""

    def get_fields(self):
        return {"file": serializers.FileField(help_text="The image file."), "filename": _filename_field()}


class ImageItem(serializers.Serializer):
    """One inline image of a v2 JSON batch (an unreadable one is that image's own error, not a 400)."""

    def get_fields(self):
        return {"image": Base64ImageField(allow_blank=True), "filename": _filename_field()}


class ClassifyBatchJson(serializers.Serializer):
    """v2, application/json: the images inline (never URLs)."""

    def get_fields(self):
        return {
            "images": serializers.ListField(
                child=ImageItem(),
                min_length=1,
                max_length=settings.CLASSIFIER_MAX_BATCH_IMAGES,
                help_text="The images, in order.",
            ),
            "top_k": _top_k_field(),
            "model": _model_field(),
        }


class ClassifyBatchMultipart(serializers.Serializer):
    """v2, multipart/form-data: one ``files`` part per image."""

    def get_fields(self):
        return {
            "files": serializers.ListField(
                child=serializers.FileField(allow_empty_file=True),
                min_length=1,
                max_length=settings.CLASSIFIER_MAX_BATCH_IMAGES,
                help_text="One part per image, in order.",
            ),
            "top_k": _top_k_field(),
            "model": _model_field(),
        }


# --- error answers ----------------------------------------------------------------------------------------


def error(description: str, *examples: tuple[str, str]) -> OpenApiResponse:
    """An ErrorOutput answer with one example per (code, detail)."""
    return OpenApiResponse(
        ErrorOutput,
        description=description,
        examples=[
            OpenApiExample(code, value={"detail": detail, "code": code}, response_only=True)
            for code, detail in examples
        ],
    )


ERRORS = {
    400: error(
        "Invalid input: bad base64, not an image, a missing or extra field, malformed JSON.",
        ("invalid_base64", "image: Not valid base64."),
        ("missing_image", "Send exactly one image: JSON field 'image' (base64) or multipart field 'file'."),
    ),
    401: error(
        "Missing, unknown, revoked or expired API key.",
        ("invalid_api_key", "Invalid, revoked or expired API key."),
        ("not_authenticated", "Authentication credentials were not provided."),
    ),
    403: error(
        "The API key may not use the model asked for (code model_not_allowed): keys can be limited to some "
        "models. No quota is spent.",
        ("model_not_allowed", "This API key may not use model 'resnet18'; it may use flowers."),
    ),
    404: error(
        "No API endpoint at this path (every unknown path under /api/ answers this, whatever the method).",
        ("not_found", "No API endpoint at /api/v3/classify."),
    ),
    405: error(
        "The method is not allowed here; no quota is spent.", ("method_not_allowed", 'Method "PUT" not allowed.')
    ),
    413: error(
        "The body, or an image's pixels, over the configured limit (CLASSIFIER_MAX_UPLOAD_BYTES, CLASSIFIER_MAX_IMAGE_PIXELS).",
        ("payload_too_large", "The request body is larger than the server accepts."),
        ("image_too_large", "The image has more pixels than the server accepts."),
    ),
    408: error(
        "The body did not arrive in time (API_BODY_READ_TIMEOUT_SECONDS in all, API_BODY_IDLE_TIMEOUT_SECONDS between "
        "two chunks); answered by the request guard, before any key is read.",
        ("request_timeout", "The request body did not arrive within 60 seconds, or paused for more than 10."),
    ),
    415: error(
        "Unsupported content type: send application/json or multipart/form-data.",
        ("unsupported_media_type", 'Unsupported media type "text/plain" in request.'),
    ),
    431: error(
        "The request's headers are larger than API_MAX_HEADER_BYTES; answered before any key is read.",
        ("headers_too_large", "The request headers are over the limit of 32768 bytes."),
    ),
    429: error(
        "Rate limit exceeded (code throttled; Retry-After says when to try again, the RateLimit headers what is "
        "left), or the key's monthly allowance is spent (code quota_exceeded; Retry-After: seconds until next "
        "month starts, UTC; the X-Quota headers).",
        ("throttled", "Request was throttled. Expected available in 12 seconds."),
        (
            "quota_exceeded",
            "This API key has used its monthly allowance of 1000 images (plan 'free'); it resets at "
            "2026-12-01T00:00:00Z.",
        ),
    ),
    503: error(
        "The model is not loaded, or the server is at capacity; see Retry-After.",
        ("model_unavailable", "The model is not loaded."),
        ("overloaded", "The server is at capacity; retry shortly."),
        ("inference_timeout", "The model did not answer in time; retry shortly."),
    ),
}
V2_CLASSIFY_ERRORS = {
    400: error(
        "Bad envelope: no images, too many, bad top_k, unknown model, or a batch larger than the key's whole rate "
        "limit (code batch_exceeds_limit); each costs one rate-limit unit. Unreadable images are per-image errors, "
        "not 400.",
        ("no_images", "The batch has no images."),
        ("too_many_images", "The batch has 17 images; at most 16 are accepted per request."),
        (
            "batch_exceeds_limit",
            "The request costs more units than the API key's whole rate limit; it could never be admitted.",
        ),
    ),
    429: error(
        "The batch does not fit the rate limit's remaining units (code throttled; Retry-After says when all of its "
        "images will), or the key's monthly allowance (code quota_exceeded; Retry-After: until next month, UTC). "
        "A body over ACCOUNTS_PEEK_BEFORE_BODY_BYTES from a key with no room left is refused before it is parsed.",
        ("throttled", "Request was throttled. Expected available in 12 seconds."),
        (
            "quota_exceeded",
            "This API key has used its monthly allowance of 1000 images (plan 'free'); it resets at "
            "2026-12-01T00:00:00Z.",
        ),
    ),
}
USAGE_ERRORS = {
    400: error(
        "Bad range: a malformed date, days with since/until, since not before until (code invalid_range), or a "
        "range longer than ACCOUNTS_USAGE_MAX_RANGE_DAYS days (code range_too_long).",
        ("invalid_range", "since must be before until."),
        ("range_too_long", "The range is longer than 366 days."),
    ),
    429: error(
        "More usage requests (v1 and v2 together) than ACCOUNTS_USAGE_RATE_LIMIT per "
        "ACCOUNTS_USAGE_RATE_WINDOW_SECONDS; see Retry-After.",
        ("throttled", "Request was throttled. Expected available in 12 seconds."),
    ),
    503: error(
        "The database, or the rate limiter's store (then with Retry-After), is unreachable.",
        ("database_unavailable", "The database is unavailable; retry shortly."),
        ("rate_limiter_unavailable", "The rate limiter's store is unreachable; retry shortly."),
    ),
}
MODELS_BAD_QUERY = error("A bad query: all is not a boolean.", ("invalid", "all: Must be a valid boolean."))
DATABASE_UNAVAILABLE = error(
    "The database is unreachable; retry shortly.",
    ("database_unavailable", "The database is unavailable; retry shortly."),
)


# What the request guard answers for any operation, before a view runs (aiserver.guard).
GUARD_STATUSES = (408, 431)


def errors(*statuses: int, **overrides: OpenApiResponse) -> dict[int, OpenApiResponse]:
    """The error answers ``statuses`` of an operation (and the guard's, which any operation can answer), from
    ERRORS unless ``overrides`` (``s400=...``) says."""
    every = sorted(set(statuses) | set(GUARD_STATUSES))
    return {status: overrides.get(f"s{status}", ERRORS[status]) for status in every}


# --- response headers -------------------------------------------------------------------------------------

# Sent on every answer after the quota check (a 400 there spent quota too); not on 401/403/503, which come before.
QUOTA_STATUSES = [200, 400, 413, 429]
QUOTA_HEADERS = [
    OpenApiParameter(
        "X-RateLimit-Limit",
        OpenApiTypes.INT,
        OpenApiParameter.HEADER,
        response=QUOTA_STATUSES,
        description="Units (images) per window.",
    ),
    OpenApiParameter(
        "X-RateLimit-Remaining",
        OpenApiTypes.INT,
        OpenApiParameter.HEADER,
        response=QUOTA_STATUSES,
        description="Units left in the window now.",
    ),
    OpenApiParameter(
        "X-RateLimit-Reset",
        OpenApiTypes.INT,
        OpenApiParameter.HEADER,
        response=QUOTA_STATUSES,
        description="Seconds until the next unit frees.",
    ),
    OpenApiParameter(
        "RateLimit-Policy",
        OpenApiTypes.STR,
        OpenApiParameter.HEADER,
        response=QUOTA_STATUSES,
        description='IETF draft: "sliding";q=LIMIT;w=WINDOW_SECONDS.',
    ),
    OpenApiParameter(
        "RateLimit",
        OpenApiTypes.STR,
        OpenApiParameter.HEADER,
        response=QUOTA_STATUSES,
        description='IETF draft: "sliding";r=REMAINING;t=RESET_SECONDS.',
    ),
    # The monthly quota of a key on a plan (absent for a key without one).
    OpenApiParameter(
        "X-Quota-Limit",
        OpenApiTypes.STR,
        OpenApiParameter.HEADER,
        response=QUOTA_STATUSES,
        description='Images a month on the key\'s plan, or "unlimited"; only for a key on a plan.',
    ),
    OpenApiParameter(
        "X-Quota-Remaining",
        OpenApiTypes.STR,
        OpenApiParameter.HEADER,
        response=QUOTA_STATUSES,
        description='Images left this month (UTC), or "unlimited"; only for a key on a plan.',
    ),
    OpenApiParameter(
        "X-Quota-Reset",
        OpenApiTypes.INT,
        OpenApiParameter.HEADER,
        response=QUOTA_STATUSES,
        description="Seconds until the next month starts (UTC); only for a key on a plan.",
    ),
]


def retry_after(*statuses: int) -> OpenApiParameter:
    """The Retry-After header (whole seconds) on the answers ``statuses``."""
    return OpenApiParameter(
        "Retry-After",
        OpenApiTypes.INT,
        OpenApiParameter.HEADER,
        response=list(statuses),
        description="Seconds to wait before retrying.",
    )


# --- operations: each view method's declaration (``@schema.V1_CLASSIFY`` and so on) ------------------------

REQUEST_ID = OpenApiParameter(
    "X-Request-ID",
    OpenApiTypes.STR,
    OpenApiParameter.HEADER,
    required=False,
    description="Your id for this request (up to 64 of A-Z a-z 0-9 . _ : -); echoed back, else one is made.",
)

V1_CLASSIFY = extend_schema(
    operation_id="v1_classify",
    summary="Classify one image",
    parameters=[*QUOTA_HEADERS, retry_after(429, 503)],
    request={"application/json": ClassifyJson, "multipart/form-data": ClassifyMultipart},
    responses={200: s.ClassifyOutput, **errors(400, 401, 403, 404, 405, 413, 415, 429, 503)},
    examples=[
        OpenApiExample("JSON", request_only=True, value={"image": EXAMPLE_PNG, "filename": "cat.png"}),
        OpenApiExample(
            "Result",
            response_only=True,
            value={
                "model": "resnet18",
                "model_version": "settings",
                "predictions": [{"label": "tabby", "confidence": 0.8123}],
            },
        ),
    ],
)

V1_USAGE = extend_schema(
    operation_id="v1_usage",
    summary="This key's classification usage",
    parameters=[retry_after(429)],
    responses={
        200: s.UsageOutput,
        **errors(
            401,
            404,
            405,
            429,
            503,
            s429=USAGE_ERRORS[429],
            s503=DATABASE_UNAVAILABLE,
        ),
    },
)

V1_MODEL_INFO = extend_schema(
    operation_id="v1_model_info",
    summary="The model this server serves",
    responses={
        200: s.ModelInfoOutput,
        **errors(404, 405),
    },
)

V2_CLASSIFY = extend_schema(
    operation_id="v2_classify",
    summary="Classify a batch of images",
    description="Up to CLASSIFIER_MAX_BATCH_IMAGES (16) images inline, as JSON base64 or multipart `files`. "
    "Costs one rate-limit unit per image. Results come back in input order; an unreadable image gets "
    "its own `error` and the rest are still classified.",
    parameters=[REQUEST_ID, *QUOTA_HEADERS, retry_after(429, 503)],
    request={"application/json": ClassifyBatchJson, "multipart/form-data": ClassifyBatchMultipart},
    responses={
        200: s.ClassifyBatchOutput,
        **errors(
            400,
            401,
            403,
            404,
            405,
            413,
            415,
            429,
            503,
            s400=V2_CLASSIFY_ERRORS[400],
            s429=V2_CLASSIFY_ERRORS[429],
        ),
    },
    examples=[
        OpenApiExample(
            "JSON batch",
            request_only=True,
            value={
                "images": [
                    {"image": EXAMPLE_PNG, "filename": "cat.png"},
                    {"image": "bm90IGFuIGltYWdl", "filename": "notes.txt"},
                ],
                "top_k": 2,
                "model": "resnet18",
            },
        ),
        OpenApiExample(
            "Mixed result",
            response_only=True,
            value={
                "id": "3f2c9a7e5b8d4e0f9a1b2c3d4e5f6a7b",
                "model": "resnet18",
                "model_version": "settings",
                "created": "2026-11-22T21:45:04.123456Z",
                "processing_time_ms": 41.7,
                "results": [
                    {
                        "index": 0,
                        "filename": "cat.png",
                        "predictions": [
                            {"label": "tabby", "confidence": 0.8123},
                            {"label": "tiger cat", "confidence": 0.1011},
                        ],
                    },
                    {
                        "index": 1,
                        "filename": "notes.txt",
                        "error": {
                            "detail": "The data is not a readable image.",
                            "code": "invalid_image",
                            "message": "The data is not a readable image.",
                        },
                    },
                ],
            },
        ),
    ],
)

V2_MODELS = extend_schema(
    operation_id="v2_models",
    summary="The models this server has loaded, at their active versions (?all=true: every version)",
    description="Public. With an API key, only the models that key may use (its allowed models) are listed.",
    parameters=[
        OpenApiParameter(
            "all",
            OpenApiTypes.BOOL,
            description="Also list every registered version (of the models the key may use); needs an API key "
            "or a staff session (401 otherwise).",
        )
    ],
    responses={200: s.ModelsOutput, **errors(400, 401, 404, 405, s400=MODELS_BAD_QUERY)},
    examples=[
        OpenApiExample(
            "Two models",
            response_only=True,
            value={
                "max_batch_images": 16,
                "max_top_k": 20,
                "models": [
                    {
                        "name": "resnet18",
                        "version": "settings",
                        "default": True,
                        "status": "loaded",
                        "reason": "",
                        "weights": "default",
                        "pretrained": True,
                        "num_labels": 1000,
                        "input_size": 224,
                        "device": "cpu",
                        "artifact": "torchvision",
                        "engine": "onnxruntime",
                        "precision": "fp32",
                        "exact": True,
                    },
                    {
                        "name": "flowers",
                        "version": "2",
                        "default": False,
                        "status": "loaded",
                        "reason": "",
                        "weights": "version:2",
                        "pretrained": True,
                        "num_labels": 5,
                        "input_size": 224,
                        "device": "cpu",
                        "artifact": "state_dict",
                        "engine": "onnxruntime",
                        "precision": "fp32",
                        "exact": True,
                    },
                ],
            },
        )
    ],
)

V2_USAGE = extend_schema(
    operation_id="v2_usage",
    summary="This key's classification usage (v1 and v2) over a range, and its limit now",
    parameters=[
        REQUEST_ID,
        OpenApiParameter(
            "days",
            {"type": "integer", "minimum": 1, "maximum": settings.ACCOUNTS_USAGE_MAX_RANGE_DAYS},
            description="The last N days.",
        ),
        OpenApiParameter(
            "since",
            OpenApiTypes.DATETIME,
            description="ISO-8601 start (inclusive); default when "
            f"the key was made, at most {settings.ACCOUNTS_USAGE_MAX_RANGE_DAYS} days before until.",
        ),
        OpenApiParameter("until", OpenApiTypes.DATETIME, description="ISO-8601 end (exclusive); default now."),
        retry_after(429, 503),
    ],
    responses={
        200: s.UsageReportOutput,
        **errors(
            400,
            401,
            404,
            405,
            429,
            503,
            s400=USAGE_ERRORS[400],
            s429=USAGE_ERRORS[429],
            s503=USAGE_ERRORS[503],
        ),
    },
    examples=[
        OpenApiExample(
            "A day of use",
            response_only=True,
            value={
                "key": {
                    "name": "team-a",
                    "prefix": "ais_3f2c9a7e",
                    "rate_limit": 600,
                    "rate_window_seconds": 60,
                    "created_at": "2026-11-01T09:00:00Z",
                    "expires_at": None,
                },
                "since": "2026-11-21T21:45:04Z",
                "until": "2026-11-22T21:45:04Z",
                "requests": 9,
                "images": 100,
                "throttled": 1,
                "by_endpoint": [{"endpoint": "/api/v2/classify", "requests": 9, "images": 100}],
                "by_model": [
                    {"name": "flowers", "version": "", "requests": 2, "images": 20},
                    {"name": "resnet18", "version": "", "requests": 6, "images": 80},
                ],
                "by_status": {"200": 8, "429": 1},
                "latency_ms": {"p50": 310.5, "p95": 402.1, "p99": 402.1},
                "daily": [
                    {"date": "2026-11-21", "requests": 0, "images": 0},
                    {"date": "2026-11-22", "requests": 9, "images": 100},
                ],
                "limit": {"limit": 600, "window_seconds": 60, "remaining": 520, "reset_seconds": 12},
                "period": {
                    "plan": "pro",
                    "start": "2026-11-01T00:00:00Z",
                    "resets_at": "2026-12-01T00:00:00Z",
                    "allowance": 100000,
                    "used": 4210,
                    "remaining": 95790,
                    "overage": 0,
                },
            },
        )
    ],
)
