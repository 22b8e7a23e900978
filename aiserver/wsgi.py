"""WSGI entry point, and runserver's: ``manage.py runserver`` imports it (WSGI_APPLICATION) in its serving process
only (the autoreloader's child), so that is where the model loads."""

import os

from django.core.wsgi import get_wsgi_application

from classifier.serving import declare_serving

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "aiserver.settings")
declare_serving()  # this process serves: ClassifierConfig.ready() starts the runtime (at once, under runserver)
application = get_wsgi_application()
