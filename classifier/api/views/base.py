"""What every API endpoint shares: the method check before any quota is spent, and the quota headers."""

from rest_framework.exceptions import MethodNotAllowed
from rest_framework.views import APIView

from ..authentication import ApiKeyAuthentication
from ..call import call_record
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
        state = call_record(request).window
        if state is not None:
            for header, value in rate_limit_headers(state).items():
                response[header] = value
        return response


# An endpoint only an active API key may call (401 otherwise). ``requested_model`` is the model the request
# asks for (None: the default one) and ``malformed`` why its body is invalid, for the model permissions.
class KeyedEndpoint(Endpoint):
    authentication_classes = [ApiKeyAuthentication]
    permission_classes = [HasApiKey]
    requested_model: str | None = None
    malformed: Exception | None = None
