"""The Content-Security-Policy header on every response, with a fresh nonce per request."""

import functools
import secrets

from django.conf import settings


class ContentSecurityPolicyMiddleware:
    """Send ``CONTENT_SECURITY_POLICY`` (its ``{nonce}`` filled in) unless the response set its own policy.

    The nonce is ``request.csp_nonce``: the few inline ``<style>`` elements the page templates carry
    (the ReDoc and Swagger UI pages) put it in their ``nonce`` attribute; nothing else inline may run.
    """

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        request.csp_nonce = secrets.token_urlsafe(16)
        response = self.get_response(request)
        policy = settings.CONTENT_SECURITY_POLICY
        if policy and "Content-Security-Policy" not in response:
            response["Content-Security-Policy"] = policy.format(nonce=request.csp_nonce)
        return response


def with_policy(view, *, setting: str):
    """``view`` answered under the policy in the setting named ``setting`` instead of CONTENT_SECURITY_POLICY."""

    @functools.wraps(view)
    def answer(request, *args, **kwargs):
        response = view(request, *args, **kwargs)
        policy = getattr(settings, setting)
        if policy:
            response["Content-Security-Policy"] = policy.format(nonce=request.csp_nonce)
        return response

    return answer
