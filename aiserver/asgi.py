"""ASGI entry point: Django (aiserver.handlers.ASGIHandler) behind the lean classify path (classifier.api.lean) and the
request guard (aiserver.guard).

uvicorn runs no system checks of its own, so this module runs them before it serves anything:
a server whose pages cannot work (static files not collected with DJANGO_DEBUG off, see
classifier.checks) fails at start-up with the checks' message instead of answering 500s.
"""

import os

import django

from classifier.serving import declare_serving  # noqa: E402 - imports nothing of Django's models

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "aiserver.settings")
declare_serving()  # this process serves: ClassifierConfig.ready() starts the runtime
django.setup(set_prefix=False)  # what django.core.asgi.get_asgi_application does, with our handler below

from django.conf import settings  # noqa: E402 - after Django is set up

from aiserver.guard import RequestGuard  # noqa: E402
from aiserver.handlers import ASGIHandler  # noqa: E402
from classifier.api.lean import LeanClassify  # noqa: E402
from classifier.checks import run_start_checks  # noqa: E402

run_start_checks()
django_application = ASGIHandler()
application = RequestGuard(
    LeanClassify(django_application, threads=settings.API_LEAN_THREADS),
    max_body_bytes=settings.API_MAX_BODY_BYTES,
    upload_path_prefix=settings.ADMIN_UPLOAD_PATH_PREFIX,
    max_upload_bytes=settings.ADMIN_UPLOAD_MAX_BYTES,
    max_header_bytes=settings.API_MAX_HEADER_BYTES,
    body_timeout_s=settings.API_BODY_READ_TIMEOUT_SECONDS,
    idle_timeout_s=settings.API_BODY_IDLE_TIMEOUT_SECONDS,
)
