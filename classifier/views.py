"""The HTTP face of the classifier: thin views over services and selectors."""
import hmac

from django.conf import settings
from django.db import connection
from django.http import Http404, HttpResponse
from django.urls import reverse
from django.views.generic import TemplateView, View
from drf_spectacular.utils import OpenApiExample, extend_schema
from rest_framework.exceptions import MethodNotAllowed, NotFound
from rest_framework.parsers import MultiPartParser
from rest_framework.response import Response
from rest_framework.views import APIView

from accounts.selectors import usage_summary

from . import metrics, schema
from . import serializers as s
from .authentication import ApiKeyAuthentication
from .parsers import SafeJSONParser
from .exceptions import DatabaseUnavailable
from .permissions import HasApiKey, ModelIsAllowed, ModelIsReady
from .runtime.registry import LOADED, registry
from .services import classify_image
from .throttling import SlidingWindowThrottle, UsageThrottle, rate_limit_headers

# Base of the API views: 405 before any quota is spent; quota headers on every answer. (A comment, not a
# docstring: drf-spectacular would show an inherited docstring as every operation's description.)
class ApiView(APIView):

    def initial(self, request, *args, **kwargs):
        if not hasattr(self, request.method.lower()) and request.method != "OPTIONS":
            raise MethodNotAllowed(request.method)
        super().initial(request, *args, **kwargs)

    def finalize_response(self, request, response, *args, **kwargs):
        response = super().finalize_response(request, response, *args, **kwargs)
        state = getattr(request, "rate_limit_state", None)
        if state is not None:
            for header, value in rate_limit_headers(state).items():
                response[header] = value
        return response


class KeyRequiredView(ApiView):
    authentication_classes = [ApiKeyAuthentication]
    permission_classes = [HasApiKey]


def note_model(request, *, name: str, version: str) -> None:
    """Tell the request log which model (and version) answered this classification."""
    request._request.api_model_name = name
    request._request.api_model_version = version


class ClassifyView(KeyRequiredView):
    permission_classes = [HasApiKey, ModelIsAllowed, ModelIsReady]
    throttle_classes = [SlidingWindowThrottle]
    parser_classes = [SafeJSONParser, MultiPartParser]

    @extend_schema(
        operation_id="v1_classify",
        summary="Classify one image",
        parameters=[*schema.QUOTA_HEADERS, schema.retry_after(429, 503)],
        request={"application/json": schema.ClassifyJson, "multipart/form-data": schema.ClassifyMultipart},
        responses={200: s.ClassifyOutput, **schema.errors(400, 401, 403, 404, 405, 413, 415, 429, 503)},
        examples=[
            OpenApiExample("JSON", request_only=True, value={"image": schema.EXAMPLE_PNG, "filename": "cat.png"}),
            OpenApiExample(
                "Result",
                response_only=True,
                value={"model": "resnet18", "model_version": "settings",
                       "predictions": [{"label": "tabby", "confidence": 0.8123}]},
            ),
        ],
    )
    def post(self, request):
        payload = s.ClassifyInput(data=request.data)
        payload.is_valid(raise_exception=True)
        result = classify_image(payload.image_bytes(), top_k=settings.CLASSIFIER_TOP_K)
        note_model(request, name=result.model, version=result.model_version)
        return Response(s.ClassifyOutput(result).data)


class UsageView(KeyRequiredView):
    throttle_classes = [UsageThrottle]

    @extend_schema(operation_id="v1_usage", summary="This key's classification usage", parameters=[schema.retry_after(429)],
                   responses={200: s.UsageOutput, **schema.errors(
                       401, 404, 405, 429, 503, s429=schema.USAGE_ERRORS[429], s503=schema.DATABASE_UNAVAILABLE,
                   )})
    def get(self, request):
        summary = usage_summary(api_key=request.auth, endpoints=[reverse("v1-classify")])
        return Response(s.UsageOutput({"key": request.auth, **summary.__dict__}).data)


class ModelInfoView(ApiView):
    @extend_schema(operation_id="v1_model_info", summary="The model this server serves", responses={
        200: s.ModelInfoOutput, **schema.errors(404, 405),
    })
    def get(self, request):
        return Response(s.ModelInfoOutput({**registry.describe()[0], "top_k": settings.CLASSIFIER_TOP_K}).data)


class HealthView(APIView):
    @extend_schema(exclude=True)
    def get(self, request):
        return Response({"status": "alive"})


class ReadyView(APIView):
    @extend_schema(exclude=True)
    def get(self, request):
        registry.get(request.query_params.get("model"))  # the default model, or ?model=NAME; 503 with the reason
        try:
            connection.ensure_connection()
            with connection.cursor() as cursor:
                cursor.execute("SELECT 1")
        except Exception as exc:  # noqa: BLE001 - any database failure means not ready
            raise DatabaseUnavailable(f"The database is unavailable ({type(exc).__name__}).") from exc
        return Response({"status": "ready"})


class ApiNotFoundView(ApiView):
    """Every unknown path under /api/ answers JSON 404, whatever the method."""

    def initial(self, request, *args, **kwargs):  # before the method check: unknown paths are 404
        raise NotFound(f"No API endpoint at {request.path}.")


class LandingView(TemplateView):
    """What this server is, its models and whether it is ready, links, and a curl example."""

    template_name = "index.html"

    def get_context_data(self, **kwargs):
        return {**super().get_context_data(**kwargs), "models": registry.describe(), "ready": registry.slot().status == LOADED}


class TryView(TemplateView):
    """Classify images from the browser through the public API v2 (the page's script does the calling)."""

    template_name = "try.html"

    def get_context_data(self, **kwargs):
        return {
            **super().get_context_data(**kwargs),
            "models": registry.describe(),
            "max_top_k": settings.CLASSIFIER_MAX_TOP_K,
            "default_top_k": settings.CLASSIFIER_TOP_K,
            # for the page's text and, as JSON, for its script
            "try_config": {"classify_url": reverse("v2-classify"), "max_batch_images": settings.CLASSIFIER_MAX_BATCH_IMAGES},
        }


class MetricsView(View):
    """Prometheus metrics for scrapers sending ``Authorization: Bearer <METRICS_TOKEN>`` and for staff sessions
    allowed to read the request logs (METRICS_PERMISSION); 404 for anyone else."""

    def get(self, request):
        user = request.user
        if not (self._has_token(request) or (user.is_staff and user.has_perm(settings.METRICS_PERMISSION))):
            raise Http404()
        body, content_type = metrics.exposition()
        return HttpResponse(body, content_type=content_type)

    @staticmethod
    def _has_token(request) -> bool:
        token = settings.METRICS_TOKEN
        scheme, _, sent = request.headers.get("Authorization", "").partition(" ")
        return bool(token) and scheme.lower() == "bearer" and hmac.compare_digest(sent.encode(), token.encode())
