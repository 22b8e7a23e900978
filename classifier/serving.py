"""The process's one ``Runtime``, and the one way an entry point declares that its process serves.

``aiserver.asgi`` and ``aiserver.wsgi`` (which ``runserver`` imports in its serving process, the autoreloader's
child) call ``declare_serving()`` before Django is set up; ``ClassifierConfig.ready()`` then builds the runtime,
starts loading its models in the background and starts the version watcher, once. (An entry point imported after
set-up, as runserver's is, starts them at once.) Other processes (migrate, create_api_key, the test runner) never
declare, so they load nothing, and nothing guesses from ``sys.argv`` which kind of process this is.
"""

import threading

from .runtime.registry import Runtime

_lock = threading.Lock()
_declared = False
_started = False
_runtime: Runtime | None = None


def process_runtime() -> Runtime:
    """This process's runtime, built once from the settings (nothing is loaded until it is started)."""
    global _runtime
    if _runtime is None:
        with _lock:
            if _runtime is None:
                from .metrics import record_batch
                from .runtime_settings import runtime_config

                _runtime = Runtime(runtime_config, on_batch=record_batch)
    return _runtime


def declare_serving() -> None:
    """Say that this process serves: its models load when the apps are ready (now, if they are already)."""
    global _declared
    _declared = True
    from django.apps import apps

    if apps.ready:
        start_serving()


def serving_declared() -> bool:
    return _declared


def start_serving() -> bool:
    """Start the runtime (loading in the background) and the version watcher, once per process.

    Returns whether this call started them (False when they had been started already).
    """
    global _started
    from .watcher import VersionWatcher

    with _lock:
        if _started:
            return False
        _started = True
    runtime = process_runtime()
    watcher = VersionWatcher(runtime)
    runtime.start(then=watcher.sync_safely)
    watcher.start()
    return True
