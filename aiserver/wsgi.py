"""WSGI entry point, and runserver's: ``manage.py runserver`` imports it (WSGI_APPLICATION) in its serving process
only (the autoreloader's child), so that is where the model loads."""

import os

from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "aiserver.settings")
application = get_wsgi_application()

from classifier.serving import start_serving  # noqa: E402 - after Django is set up

start_serving()
