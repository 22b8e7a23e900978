import os
import sys

from django.apps import AppConfig

# manage.py commands that serve requests; every other command (migrate, create_api_key, ...) loads no model.
SERVING_COMMANDS = {"runserver"}


def is_serving_process(argv: list[str], environ=os.environ) -> bool:
    """Whether this process will serve requests (and so should load the model).

    Under manage.py only ``runserver`` serves, and with its autoreloader only the child
    process (RUN_MAIN=true) does. Test runners load the model themselves. Anything else
    (uvicorn, gunicorn, a WSGI server) serves.
    """
    program = os.path.basename(argv[0]) if argv else ""
    if program == "__main__.py":  # python -m PACKAGE
        program = os.path.basename(os.path.dirname(argv[0]))
    if program in ("manage.py", "django-admin", "django"):
        command = argv[1] if len(argv) > 1 else ""
        if command not in SERVING_COMMANDS:
            return False
        return environ.get("RUN_MAIN") == "true" or "--noreload" in argv
    return not ("pytest" in program or "py.test" in program)


class ClassifierConfig(AppConfig):
    default_auto_field = "django.db.models.BigAutoField"
    name = "classifier"

    def ready(self) -> None:
        from . import checks  # noqa: F401 - register the system checks
        from .api import authentication  # noqa: F401 - register the OpenAPI auth extension
        from .runtime.registry import registry
        from .watcher import VersionWatcher

        if is_serving_process(sys.argv):
            watcher = VersionWatcher(registry)
            registry.start(then=watcher.sync_safely)
            watcher.start()
