"""Start serving: load the configured models and watch for newly activated versions.

Called by the serving entry points only: ``aiserver.asgi`` and ``aiserver.wsgi``, which ``runserver`` imports in its
serving process (the autoreloader's child) when it builds its handler. So other commands (migrate, create_api_key, ...) and the test
runner load no model, and nothing has to guess from ``sys.argv`` which kind of process this is.
"""

import threading

_lock = threading.Lock()
_started = False


def start_serving() -> bool:
    """Start the model registry (loading in the background) and the version watcher, once per process.

    Returns whether this call started them (False when they had been started already).
    """
    global _started
    from .runtime.registry import registry
    from .watcher import VersionWatcher

    with _lock:
        if _started:
            return False
        _started = True
    watcher = VersionWatcher(registry)
    registry.start(then=watcher.sync_safely)
    watcher.start()
    return True
