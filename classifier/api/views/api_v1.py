"""API v1: one image per request, the key's usage, the model's description."""

from django.conf import settings
from django.urls import reverse
from rest_framework.parsers import MultiPartParser
from rest_framework.response import Response

from accounts.selectors import usage_summary

from ...services import classify_image
from ...serving import process_runtime
from .. import schema
from .. import serializers as s
from ..call import call_record
from ..parsers import SafeJSONParser
from ..permissions import HasApiKey, ModelIsAllowed, ModelIsReady
from ..throttling import SlidingWindowThrottle, UsageThrottle
from .base import Endpoint, KeyedEndpoint


class ClassifyView(KeyedEndpoint):
    permission_classes = [HasApiKey, ModelIsAllowed, ModelIsReady]
    throttle_classes = [SlidingWindowThrottle]
    parser_classes = [SafeJSONParser, MultiPartParser]

    @schema.V1_CLASSIFY
    def post(self, request):
        payload = s.ClassifyInput(data=request.data)
        payload.is_valid(raise_exception=True)
        result = classify_image(payload.image_bytes(), top_k=settings.CLASSIFIER_TOP_K)
        call_record(request).answered_by(model=result.model, version=result.model_version)
        return Response(s.ClassifyOutput(result).data)


class UsageView(KeyedEndpoint):
    throttle_classes = [UsageThrottle]

    @schema.V1_USAGE
    def get(self, request):
        summary = usage_summary(api_key=request.auth, endpoints=[reverse("v1-classify")])
        return Response(s.UsageOutput({"key": request.auth, **summary.__dict__}).data)


class ModelInfoView(Endpoint):
    @schema.V1_MODEL_INFO
    def get(self, request):
        return Response(s.ModelInfoOutput({**process_runtime().describe()[0], "top_k": settings.CLASSIFIER_TOP_K}).data)
