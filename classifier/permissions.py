from rest_framework.permissions import BasePermission

from .registry import LOADED, registry
from .exceptions import ModelUnavailable


class HasApiKey(BasePermission):
    """The request authenticated with an active API key (else DRF answers 401)."""

    def has_permission(self, request, view) -> bool:
        return request.auth is not None


class ModelIsReady(BasePermission):
    """Answer 503 with the reason before the request spends any quota on an absent model."""

    def has_permission(self, request, view) -> bool:
        if registry.status != LOADED:
            raise ModelUnavailable(registry.reason)
        return True
