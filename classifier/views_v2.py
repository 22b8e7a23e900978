"""API v2: batches with top-k and model choice, cost-weighted limits, the models list, richer usage."""
from django.conf import settings
from django.core.exceptions import RequestDataTooBig, TooManyFieldsSent, TooManyFilesSent
from django.urls import reverse
from django.utils import timezone
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiExample, OpenApiParameter, extend_schema
from rest_framework.exceptions import APIException
from rest_framework.parsers import MultiPartParser
from rest_framework.response import Response

from accounts.selectors import rate_limit_state, usage_report

from . import serializers as s
from .parsers import SafeJSONParser
from .authentication import ApiKeyAuthentication
from .permissions import HasApiKey, ModelIsAllowed, ModelIsReady
from .runtime.registry import registry
from .selectors import model_versions_list
from .services import classify_batch
from .throttling import SlidingWindowThrottle, UsageThrottle
from . import schema
from .views import ApiView, KeyRequiredView, note_model

REQUEST_ID = OpenApiParameter(
    "X-Request-ID", OpenApiTypes.STR, OpenApiParameter.HEADER, required=False,
    description="Your id for this request (up to 64 of A-Z a-z 0-9 . _ : -); echoed back, else one is made.",
)
# How a request body can be malformed: it does not parse (ParseError, UnsupportedMediaType, Django's own
# parsing limits) or its envelope is invalid (ValidationError).
MALFORMED = (APIException, RequestDataTooBig, TooManyFieldsSent, TooManyFilesSent)

class ClassifyBatchView(KeyRequiredView):
    permission_classes = [HasApiKey, ModelIsAllowed, ModelIsReady]
    throttle_classes = [SlidingWindowThrottle]
    parser_classes = [SafeJSONParser, MultiPartParser]

    def validated_input(self, request) -> s.ClassifyBatchInput:
        """The validated envelope, parsed and validated once per request.

        Raises the request's 400 (or 413/415) every time it is asked for a malformed request.
        """
        if not hasattr(self, "_input"):
            try:
                payload = s.ClassifyBatchInput(data=request.data)
                payload.is_valid(raise_exception=True)
                self._input = payload
            except MALFORMED as exc:
                self._input = exc
        if isinstance(self._input, Exception):
            raise self._input
        return self._input

    def requested_model(self, request) -> str | None:
        """The model this request asks for (ModelIsReady answers 503 before any quota when it is not loaded);
        for a malformed request the default model, as its error is answered after the throttle."""
        try:
            return self.validated_input(request).model_choice()[0]
        except MALFORMED:
            return None

    def request_is_malformed(self, request) -> bool:
        """Whether the envelope is malformed: it names no model yet (ModelIsAllowed lets it on to be charged)."""
        try:
            self.validated_input(request)
        except MALFORMED:
            return True
        return False

    def throttle_cost(self, request) -> int:
        """A batch costs one unit per image; a malformed request one unit, charged before its error is
        answered (in ``post``), so a key cannot send malformed requests without limit."""
        try:
            return len(self.validated_input(request).filenames())
        except MALFORMED:
            return 1

    @extend_schema(
        operation_id="v2_classify",
        summary="Classify a batch of images",
        description="Up to CLASSIFIER_MAX_BATCH_IMAGES (16) images inline, as JSON base64 or multipart `files`. "
        "Costs one rate-limit unit per image. Results come back in input order; an unreadable image gets "
        "its own `error` and the rest are still classified.",
        parameters=[REQUEST_ID, *schema.QUOTA_HEADERS, schema.retry_after(429, 503)],
        request={"application/json": schema.ClassifyBatchJson, "multipart/form-data": schema.ClassifyBatchMultipart},
        responses={200: s.ClassifyBatchOutput, **schema.errors(
            400, 401, 403, 404, 405, 413, 415, 429, 503,
            s400=schema.V2_CLASSIFY_ERRORS[400], s429=schema.V2_CLASSIFY_ERRORS[429],
        )},
        examples=[
            OpenApiExample(
                "JSON batch",
                request_only=True,
                value={
                    "images": [{"image": schema.EXAMPLE_PNG, "filename": "cat.png"}, {"image": "bm90IGFuIGltYWdl", "filename": "notes.txt"}],
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
                        {"index": 0, "filename": "cat.png", "predictions": [
                            {"label": "tabby", "confidence": 0.8123}, {"label": "tiger cat", "confidence": 0.1011}]},
                        {"index": 1, "filename": "notes.txt", "error": {
                            "code": "invalid_image", "message": "The data is not a readable image."}},
                    ],
                },
            ),
        ],
    )
    def post(self, request):
        payload = self.validated_input(request)
        data = payload.validated_data
        name, version = payload.model_choice()
        result = classify_batch(payload.image_data(), top_k=data["top_k"], model_name=name, model_version=version)
        note_model(request, name=result.model, version=result.model_version)
        return Response(s.ClassifyBatchOutput({
            "id": request.request_id,
            "model": result.model,
            "model_version": result.model_version,
            "created": timezone.now(),
            "processing_time_ms": result.processing_time_ms,
            "results": s.image_results(payload.filenames(), result.results),
        }).data)


class ModelsView(ApiView):
    authentication_classes = [ApiKeyAuthentication]  # optional: a key sees only the models it may use

    @extend_schema(
        operation_id="v2_models",
        summary="The models this server has loaded, at their active versions (?all=true: every version)",
        description="Public. With an API key, only the models that key may use (its allowed models) are listed.",
        parameters=[OpenApiParameter("all", OpenApiTypes.BOOL, description="Also list every registered version.")],
        responses={200: s.ModelsOutput, **schema.errors(400, 401, 404, 405, s400=schema.MODELS_BAD_QUERY)},
        examples=[OpenApiExample("Two models", response_only=True, value={
            "max_batch_images": 16,
            "max_top_k": 20,
            "models": [{
                "name": "resnet18", "version": "settings", "default": True, "status": "loaded", "reason": "",
                "weights": "default",
                "pretrained": True, "num_labels": 1000, "input_size": 224, "device": "cpu",
                "artifact": "torchvision", "engine": "onnxruntime", "precision": "fp32", "exact": True,
            }, {
                "name": "flowers", "version": "2", "default": False, "status": "loaded", "reason": "",
                "weights": "version:2",
                "pretrained": True, "num_labels": 5, "input_size": 224, "device": "cpu",
                "artifact": "state_dict", "engine": "onnxruntime", "precision": "fp32", "exact": True,
            }],
        })],
    )
    def get(self, request):
        query = s.ModelsQueryInput(data=request.query_params)
        query.is_valid(raise_exception=True)
        answer = {
            "max_batch_images": settings.CLASSIFIER_MAX_BATCH_IMAGES,
            "max_top_k": settings.CLASSIFIER_MAX_TOP_K,
            "models": [model for model in registry.describe() if _may_use(request.auth, model["name"])],
        }
        if query.validated_data["all"]:
            answer["versions"] = [version_row(v) for v in model_versions_list() if _may_use(request.auth, v.name)]
        return Response(s.ModelsOutput(answer).data)


def version_row(model_version) -> dict:
    """A registered version as VersionOutput shows it."""
    return {"name": model_version.name, "version": model_version.version, "status": model_version.status,
            "validated": model_version.passed, "sha256": model_version.sha256, "created_at": model_version.created_at,
            "activated_at": model_version.activated_at}


def _may_use(api_key, name: str) -> bool:
    """Whether the caller may use model ``name``: anyone without a key sees every model."""
    return api_key is None or api_key.may_use_model(name)


class UsageReportView(KeyRequiredView):
    throttle_classes = [UsageThrottle]

    @extend_schema(
        operation_id="v2_usage",
        summary="This key's classification usage (v1 and v2) over a range, and its limit now",
        parameters=[
            REQUEST_ID,
            OpenApiParameter("days", {"type": "integer", "minimum": 1, "maximum": settings.ACCOUNTS_USAGE_MAX_RANGE_DAYS},
                             description="The last N days."),
            OpenApiParameter("since", OpenApiTypes.DATETIME, description="ISO-8601 start (inclusive); default when "
                             f"the key was made, at most {settings.ACCOUNTS_USAGE_MAX_RANGE_DAYS} days before until."),
            OpenApiParameter("until", OpenApiTypes.DATETIME, description="ISO-8601 end (exclusive); default now."),
            schema.retry_after(429, 503),
        ],
        responses={200: s.UsageReportOutput, **schema.errors(
            400, 401, 404, 405, 429, 503,
            s400=schema.USAGE_ERRORS[400], s429=schema.USAGE_ERRORS[429], s503=schema.USAGE_ERRORS[503],
        )},
        examples=[OpenApiExample("A day of use", response_only=True, value={
            "key": {"name": "team-a", "prefix": "ais_3f2c9a7e", "rate_limit": 600, "rate_window_seconds": 60,
                    "created_at": "2026-11-01T09:00:00Z", "expires_at": None},
            "since": "2026-11-21T21:45:04Z", "until": "2026-11-22T21:45:04Z",
            "requests": 9, "images": 100, "throttled": 1,
            "by_endpoint": [{"endpoint": "/api/v2/classify", "requests": 9, "images": 100}],
            "by_model": [{"name": "flowers", "version": "", "requests": 2, "images": 20},
                         {"name": "resnet18", "version": "", "requests": 6, "images": 80}],
            "by_status": {"200": 8, "429": 1},
            "latency_ms": {"p50": 310.5, "p95": 402.1, "p99": 402.1},
            "daily": [{"date": "2026-11-21", "requests": 0, "images": 0},
                      {"date": "2026-11-22", "requests": 9, "images": 100}],
            "limit": {"limit": 600, "window_seconds": 60, "remaining": 520, "reset_seconds": 12},
        })],
    )
    def get(self, request):
        query = s.UsageQueryInput(data=request.query_params, context={"api_key": request.auth})
        query.is_valid(raise_exception=True)
        report = usage_report(
            api_key=request.auth,
            endpoints=[reverse("v1-classify"), reverse("v2-classify")],
            **query.validated_data,
        )
        limit = rate_limit_state(
            api_key=request.auth, store=SlidingWindowThrottle.store, now=SlidingWindowThrottle.clock()
        )
        return Response(s.UsageReportOutput({"key": request.auth, **report.__dict__, "limit": limit}).data)
