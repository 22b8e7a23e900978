from rest_framework.permissions import BasePermission

from .runtime.registry import registry


class HasApiKey(BasePermission):
    """The request authenticated with an active API key (else DRF answers 401)."""

    def has_permission(self, request, view) -> bool:
        return request.auth is not None


class ModelIsReady(BasePermission):
    """Answer 503 with the reason before the request spends any quota on a model that is not loaded: the
    model the request asks for (the view's ``requested_model``), else the default one."""

    def has_permission(self, request, view) -> bool:
        requested_model = getattr(view, "requested_model", lambda request: None)
        registry.get(requested_model(request))  # raises ModelUnavailable (503) with the reason
        return True
