import hmac

from django.conf import settings
from rest_framework.permissions import BasePermission

from ..serving import process_runtime
from .exceptions import ModelNotAllowed

VERSION_SEPARATOR = "@"  # "name@version": access is judged by the name


class HasApiKey(BasePermission):
    """The request authenticated with an active API key (else DRF answers 401)."""

    def has_permission(self, request, view) -> bool:
        return request.auth is not None


def _requested_model(view) -> str | None:
    """The view's ``requested_model``: the model the request asks for, None for the default."""
    return getattr(view, "requested_model", None)


class ModelIsAllowed(BasePermission):
    """Answer 403 model_not_allowed before the request spends any quota when its key may not use the model
    it asks for (``name`` or ``name@version``, judged by ``name``), else the default model (v1's).

    A view whose request is malformed says so in its ``malformed`` attribute: such a request names no model
    yet, and goes on to be charged and answered 400 as any malformed request is.
    """

    def has_permission(self, request, view) -> bool:
        api_key = request.auth
        if api_key is None or not api_key.allowed_models:
            return True
        if getattr(view, "malformed", None) is not None:
            return True
        name = (_requested_model(view) or process_runtime().default_name).partition(VERSION_SEPARATOR)[0]
        if not api_key.may_use_model(name):
            raise ModelNotAllowed(
                f"This API key may not use model {name!r}; it may use {', '.join(api_key.allowed_models)}."
            )
        return True


class ModelIsReady(BasePermission):
    """Answer 503 with the reason before the request spends any quota on a model that is not loaded: the
    model the request asks for (the view's ``requested_model``), else the default one."""

    def has_permission(self, request, view) -> bool:
        process_runtime().get(_requested_model(view))  # raises ModelUnavailable (503) with the reason
        return True


class CanReadMetrics(BasePermission):
    """A scraper sending ``Authorization: Bearer <METRICS_TOKEN>`` (when that is set; compared in constant time),
    or a staff session with METRICS_PERMISSION."""

    def has_permission(self, request, view) -> bool:
        user = request.user
        if user is not None and user.is_staff and user.has_perm(settings.METRICS_PERMISSION):
            return True
        token = settings.METRICS_TOKEN
        scheme, _, sent = request.headers.get("Authorization", "").partition(" ")
        return bool(token) and scheme.lower() == "bearer" and hmac.compare_digest(sent.encode(), token.encode())
