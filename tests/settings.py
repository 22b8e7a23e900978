"""Test settings: the production settings with a throwaway secret (tests never read a real one)."""

import os

os.environ.setdefault("DJANGO_SECRET_KEY", "test-secret-key-not-for-production")
os.environ.setdefault("DJANGO_ALLOWED_HOSTS", "testserver,localhost,127.0.0.1")

from aiserver.settings import *  # noqa: E402,F403

# Tests render pages without running collectstatic first.
STORAGES = {**STORAGES, "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"}}  # noqa: F405
WHITENOISE_USE_FINDERS = True

# The suite compiles its many small models in its own process (fast); the sandboxed child, the default, is tested
# in tests/runtime/test_sandbox.py and by every live server (tests/live), which run with the production settings.
CLASSIFIER_COMPILE_IN_CHILD = False
