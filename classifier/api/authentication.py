"""API key authentication: ``Authorization: Bearer <key>`` or ``X-API-Key: <key>``, never the query string."""

from drf_spectacular.extensions import OpenApiAuthenticationExtension
from rest_framework.authentication import BaseAuthentication, get_authorization_header
from rest_framework.exceptions import AuthenticationFailed

from accounts.services import api_key_authenticate

from .call import call_record

API_KEY_HEADER = "X-API-Key"


BEARER = "Bearer"


class ApiKeyAuthentication(BaseAuthentication):
    keyword = BEARER
    realm = "api"

    def authenticate(self, request):
        raw_key = self.raw_key(request)
        if raw_key is None:
            return None
        api_key = api_key_authenticate(raw_key=raw_key)
        if api_key is None:
            raise AuthenticationFailed("Invalid, revoked or expired API key.", code="invalid_api_key")
        call_record(request).api_key = api_key
        return (api_key.owner, api_key)

    def raw_key(self, request) -> str | None:
        """The key the client sent, or None when it sent none."""
        return sent_key(get_authorization_header(request), request.META.get("HTTP_X_API_KEY"))

    def authenticate_header(self, request) -> str:
        return f'{self.keyword} realm="{self.realm}"'


def sent_key(authorization: bytes, x_api_key: str | None) -> str | None:
    """The key in ``Authorization: Bearer <key>`` or else ``X-API-Key: <key>``, or None when neither carries one;
    raises AuthenticationFailed for a malformed Bearer header. (The lean path, classifier.api.lean, asks too.)"""
    parts = authorization.split()
    if parts and parts[0].lower() == BEARER.lower().encode():
        if len(parts) != 2:
            raise AuthenticationFailed("Malformed Authorization header; use 'Bearer <key>'.", code="invalid_api_key")
        return parts[1].decode("latin-1")
    return x_api_key.strip() if x_api_key else None


class ApiKeyAuthenticationScheme(OpenApiAuthenticationExtension):
    target_class = ApiKeyAuthentication
    name = ["BearerAuth", "ApiKeyAuth"]

    def get_security_requirement(self, auto_schema):
        """Either header will do: two alternatives (OR), not one requirement naming both (AND)."""
        return [{name: []} for name in self.name]

    def get_security_definition(self, auto_schema):
        return [
            {"type": "http", "scheme": "bearer", "description": "Authorization: Bearer <key>"},
            {"type": "apiKey", "in": "header", "name": API_KEY_HEADER, "description": "X-API-Key: <key>"},
        ]
