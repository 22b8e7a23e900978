"""API v2: batches with top-k and model choice, cost-weighted limits, the models list, richer usage."""

from django.conf import settings
from django.core.exceptions import RequestDataTooBig, TooManyFieldsSent, TooManyFilesSent
from django.urls import reverse
from rest_framework.authentication import SessionAuthentication
from rest_framework.exceptions import APIException, NotAuthenticated, ParseError
from rest_framework.parsers import MultiPartParser
from rest_framework.response import Response

from accounts.selectors import rate_limit_state, usage_report

from ...selectors import model_versions_list
from ...services import classify_batch
from ...serving import process_runtime
from .. import schema
from .. import serializers as s
from ..authentication import ApiKeyAuthentication
from ..call import call_record
from ..parsers import SafeJSONParser
from ..permissions import HasApiKey, ModelIsAllowed, ModelIsReady
from ..throttling import SlidingWindowThrottle, UsageThrottle
from .base import Endpoint, KeyedEndpoint

# How a request body can be malformed: it does not parse (ParseError, UnsupportedMediaType, Django's own
# parsing limits) or its envelope is invalid (ValidationError).
MALFORMED = (APIException, RequestDataTooBig, TooManyFieldsSent, TooManyFilesSent)


class ClassifyBatchView(KeyedEndpoint):
    """authenticate → permission → validate → throttle, in that order (DRF's own order, with the validation
    step between): a request without an active key is 401 before its body is read; the model permissions
    judge the model the validated payload names; the throttle charges its number of images. A malformed
    request is charged one unit before its error is answered, so a key cannot send malformed requests
    without limit."""

    permission_classes = [HasApiKey]  # before the body is read
    model_permission_classes = [ModelIsAllowed, ModelIsReady]  # after: they read requested_model, malformed
    throttle_classes = [SlidingWindowThrottle]
    parser_classes = [SafeJSONParser, MultiPartParser]

    payload: s.ClassifyBatchInput | None = None  # the validated envelope
    malformed: Exception | None = None  # or why it is not one (answered after the throttle)

    def check_permissions(self, request):
        super().check_permissions(request)
        self.refuse_before_large_body(request)
        self.validate(request)
        for permission in (permission_class() for permission_class in self.model_permission_classes):
            if not permission.has_permission(request, self):
                self.permission_denied(request)

    def refuse_before_large_body(self, request) -> None:
        """A body over ACCOUNTS_PEEK_BEFORE_BODY_BYTES is parsed only if one more image fits the key's window
        and monthly quota now (asked without charging): else 429 now, at the cost of one store read instead of
        parsing megabytes."""
        try:
            declared = int(request.META.get("CONTENT_LENGTH") or 0)
        except ValueError:
            return
        if declared <= settings.ACCOUNTS_PEEK_BEFORE_BODY_BYTES:
            return
        for throttle in self.get_throttles():
            if isinstance(throttle, SlidingWindowThrottle) and not throttle.allow_one_more(request):
                self.throttled(request, throttle.wait())

    def validate(self, request) -> None:
        """Parse and validate the envelope once: ``payload``, or ``malformed`` with the 400 (413, 415) to answer."""
        try:
            payload = s.ClassifyBatchInput(data=request.data, context={"api_key": request.auth})
            payload.is_valid(raise_exception=True)
        except MALFORMED as exc:
            self.malformed = exc
            return
        self.payload = payload
        self.requested_model = payload.model_choice()[0]

    def throttle_cost(self, request) -> int:
        """One unit per image; one for a malformed request."""
        return 1 if self.payload is None else len(self.payload.filenames())

    @schema.V2_CLASSIFY
    def post(self, request):
        payload = self.payload
        if payload is None:
            raise self.malformed or ParseError()
        data = payload.validated_data
        name, version = payload.model_choice()
        result = classify_batch(payload.image_data(), top_k=data["top_k"], model_name=name, model_version=version)
        call = call_record(request)
        call.answered_by(model=result.model, version=result.model_version)
        return Response(
            s.batch_classification_body(request_id=call.request_id, result=result, filenames=payload.filenames())
        )


# Who may list every registered version (?all=true) without a key: staff allowed to see the versions.
VERSIONS_PERMISSION = "classifier.view_modelversion"


class ModelsView(Endpoint):
    # Optional: a key sees only the models it may use. ?all=true needs a key, or a staff session.
    authentication_classes = [ApiKeyAuthentication, SessionAuthentication]

    @schema.V2_MODELS
    def get(self, request):
        query = s.ModelsQueryInput(data=request.query_params)
        query.is_valid(raise_exception=True)
        if query.validated_data["all"] and request.auth is None and not _sees_every_version(request.user):
            raise NotAuthenticated("Listing every version (?all=true) needs an API key.")
        answer = {
            "max_batch_images": settings.CLASSIFIER_MAX_BATCH_IMAGES,
            "max_top_k": settings.CLASSIFIER_MAX_TOP_K,
            "models": [model for model in process_runtime().describe() if _may_use(request.auth, model["name"])],
        }
        if query.validated_data["all"]:
            answer["versions"] = [version_row(v) for v in model_versions_list() if _may_use(request.auth, v.name)]
        return Response(s.ModelsOutput(answer).data)


def version_row(model_version) -> dict:
    """A registered version as VersionOutput shows it."""
    return {
        "name": model_version.name,
        "version": model_version.version,
        "status": model_version.status,
        "validated": model_version.passed,
        "sha256": model_version.sha256,
        "created_at": model_version.created_at,
        "activated_at": model_version.activated_at,
    }


def _sees_every_version(user) -> bool:
    return bool(user and user.is_staff and user.has_perm(VERSIONS_PERMISSION))


def _may_use(api_key, name: str) -> bool:
    """Whether the caller may use model ``name``: anyone without a key sees every model."""
    return api_key is None or api_key.may_use_model(name)


class UsageReportView(KeyedEndpoint):
    throttle_classes = [UsageThrottle]

    @schema.V2_USAGE
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
        answer = {"key": request.auth, **report.__dict__, "limit": limit, "period": _period(request.auth, limit.quota)}
        return Response(s.UsageReportOutput(answer).data)


def _period(api_key, quota) -> dict | None:
    """The key's monthly quota as PeriodOutput shows it; None without a plan."""
    if quota is None:
        return None
    return {
        "plan": api_key.plan.name,
        "period_start": quota.period_start,
        "resets_at": quota.resets_at,
        "allowance": quota.allowance,
        "used": quota.used,
        "remaining": quota.remaining,
        "overage": quota.overage,
    }
