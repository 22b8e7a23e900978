"""ASGI entry point: Django (aiserver.handlers.ASGIHandler) behind a guard that stops reading oversized bodies.

Django's ASGI handler reads the whole body before any middleware runs, so a huge upload
would be spooled to disk first. This guard hands Django an empty body instead when the
declared length is over the limit, and cuts a streamed (chunked) body at the limit; in
both cases Django's BodyLimitMiddleware answers 413 and the request is logged as usual.
"""
import os

import django

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "aiserver.settings")
django.setup(set_prefix=False)  # what django.core.asgi.get_asgi_application does, with our handler below

from django.conf import settings  # noqa: E402 - after Django is set up

from aiserver.handlers import ASGIHandler  # noqa: E402
from classifier.middleware import BODY_TOO_LARGE_SCOPE_KEY  # noqa: E402

django_application = ASGIHandler()


def _declared_length(scope) -> int | None:
    for name, value in scope.get("headers", []):
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None
    return None


class BodySizeGuard:
    def __init__(self, app, max_bytes: int):
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        declared = _declared_length(scope)
        received = 0
        cut = False

        async def guarded_receive():
            nonlocal received, cut
            while cut:  # the body was cut: drop its rest, pass on the disconnect
                message = await receive()
                if message["type"] != "http.request":
                    return message
            if declared is not None and declared > self.max_bytes:
                message = {"type": "http.request", "body": b"", "more_body": True}
            else:
                message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes or (declared is not None and declared > self.max_bytes):
                    cut = True
                    scope[BODY_TOO_LARGE_SCOPE_KEY] = True
                    return {"type": "http.request", "body": b"", "more_body": False}
            return message

        return await self.app(scope, guarded_receive, send)


application = BodySizeGuard(django_application, settings.API_MAX_BODY_BYTES)
