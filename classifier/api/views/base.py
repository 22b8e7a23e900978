"""What every API endpoint shares: the method check before any quota is spent, and the quota headers."""

from rest_framework.exceptions import MethodNotAllowed
from rest_framework.views import APIView

from ..authentication import ApiKeyAuthentication
from ..permissions import HasApiKey
from ..throttling import rate_limit_headers


# Base of the API views: 405 before any quota is spent; quota headers on every answer. (A comment, not a
# docstring: drf-spectacular would show an inherited docstring as every operation's description.)
class Endpoint(APIView):
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


# An endpoint only an active API key may call (401 otherwise).
class KeyedEndpoint(Endpoint):
    authentication_classes = [ApiKeyAuthentication]
    permission_classes = [HasApiKey]


def note_model(request, *, name: str, version: str) -> None:
    """Tell the request log which model (and version) answered this classification."""
    request._request.api_model_name = name
    request._request.api_model_version = version
