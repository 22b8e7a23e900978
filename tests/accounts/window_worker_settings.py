"""Settings for tests.accounts.window_worker: the test settings without the model app.

The window store needs only ``accounts`` (and the apps it points at); leaving ``classifier`` out
keeps torch out of the worker processes, whose start-up it would otherwise take seconds of.
"""

from tests.settings import *  # noqa: F403

INSTALLED_APPS = [app for app in INSTALLED_APPS if app not in ("classifier", "django.contrib.admin")]  # noqa: F405
