"""Zero-downtime version switches in a serving process: a daemon thread asks the database every
CLASSIFIER_MODEL_POLL_SECONDS which version of each name is active (one indexed query) and, on a change,
loads the new version beside the old, swaps it in (``registry.replace``), lets the old one answer what
was queued on it and frees it.

A version that fails to load leaves the process on the version it had: the failure is logged and kept in
this worker's ModelLoadStatus row (shown in the admin); the watcher tries it again only once another
version has been activated. A name whose active version is retired goes back to its CLASSIFIER_MODELS
model, or (a name only the database knew) stops being served.
"""

import gc
import logging
import os
import socket
import threading
import time

from django.conf import settings
from django.db import close_old_connections

from . import selectors, versions
from .models import ModelLoadStatus, ModelVersion
from .runtime.registry import Ready, Runtime, Slot, Unavailable, release_freed_memory
from .runtime.sources import ModelSource

logger = logging.getLogger(__name__)


def worker_name() -> str:
    """This serving process as the admin shows it: host:pid."""
    return f"{socket.gethostname()}:{os.getpid()}"


class VersionWatcher:
    def __init__(self, registry: Runtime):
        self.registry = registry
        self.worker = worker_name()
        self.serving: dict[str, int] = {}  # name -> id of the registered version this process serves
        self.tried: dict[str, int] = {}  # name -> id of the version last tried (loaded or failed)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.retiring: list[threading.Thread] = []  # the timers freeing replaced versions (tests join them)

    def start(self) -> None:
        """Poll in a daemon thread (once per process; idempotent) once the registry's first load is done."""
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="model-version-watcher", daemon=True)
            self._thread.start()

    def stop(self) -> None:
        self._stop.set()

    def _run(self) -> None:
        self.registry.wait()
        while not self._stop.wait(settings.CLASSIFIER_MODEL_POLL_SECONDS):
            self.sync_safely()

    def sync_safely(self) -> None:
        """``sync``, logging (never raising) a failure such as an unreachable database; the next poll retries."""
        try:
            self.sync()
        except Exception:  # noqa: BLE001 - the watcher must outlive a database outage
            logger.exception("model version check failed; serving what this process has")
            close_old_connections()

    def sync(self) -> list[str]:
        """Bring this process's models in line with the active versions; return the names switched."""
        active = selectors.active_version_ids()
        switched = []
        for name, version_id in active.items():
            if (
                self.serving.get(name) != version_id
                and self.tried.get(name) != version_id
                and self._switch(name, version_id)
            ):
                switched.append(name)
        for name in [name for name in self.serving if name not in active]:
            self._fall_back(name)
            switched.append(name)
        for name in [name for name in self.tried if name not in active]:
            del self.tried[name]
        return switched

    def _switch(self, name: str, version_id: int) -> bool:
        self.tried[name] = version_id
        model_version = selectors.model_version_by_id(version_id=version_id)
        if model_version is None or model_version.status != ModelVersion.Status.ACTIVE:
            return False
        started = time.monotonic()
        try:
            folder = versions.model_version_local_folder(model_version=model_version)
        except versions.ModelVersionError as exc:
            self._failed(model_version, str(exc))
            return False
        slot = self.registry.load_slot(
            ModelSource(
                name=name,
                architecture=None,
                folder=folder,
                version=model_version.version,
                engine=model_version.engine,
                precision=model_version.precision,
            )
        )
        if not isinstance(slot.state, Ready):
            self._failed(model_version, slot.reason)
            return False
        self._install(slot)
        self.serving[name] = version_id
        self._record(name, model_version.version, ModelLoadStatus.Outcome.LOADED)
        logger.info("now serving %s (fetched and loaded in %.1f s)", model_version, time.monotonic() - started)
        return True

    def _fall_back(self, name: str) -> None:
        """``name`` has no active version any more: its settings model, else (not the default) no model."""
        del self.serving[name]
        source = next((source for source in self.registry.sources() if source.name == name), None)
        if source is None and name != self.registry.default_name:
            self._retire(self.registry.remove(name))
            self._record(name, "", ModelLoadStatus.Outcome.LOADED, reason="no active version; not served")
            return
        slot = self.registry.load_slot(source) if source is not None else None
        if slot is None or not isinstance(slot.state, Ready):
            reason = slot.reason if slot else "no active version and no settings model"
            logger.error("model %s keeps its retired version: %s", name, reason)
            self._record(name, "", ModelLoadStatus.Outcome.FAILED, reason=reason)
            return
        self._install(slot)
        self._record(name, slot.state.model.version, ModelLoadStatus.Outcome.LOADED)

    def _install(self, slot: Slot) -> None:
        self._retire(self.registry.replace(slot))

    def _retire(self, previous: Slot | None) -> None:
        self.retiring = [timer for timer in self.retiring if timer.is_alive()]
        timer = _retire(previous)
        if timer is not None:
            self.retiring.append(timer)

    def _failed(self, model_version: ModelVersion, reason: str) -> None:
        logger.error("could not switch to %s, still serving the version before it: %s", model_version, reason)
        self._record(model_version.name, model_version.version, ModelLoadStatus.Outcome.FAILED, reason=reason)

    def _record(self, name: str, version: str, outcome: str, *, reason: str = "") -> None:
        slot = self.registry.peek(name)
        serving = slot.model.version if slot is not None and slot.model is not None else ""
        try:
            versions.model_load_status_record(
                worker=self.worker, name=name, version=version, outcome=outcome, serving=serving, reason=reason
            )
        except Exception:  # noqa: BLE001 - the status row is for the admin; serving goes on without it
            logger.exception("could not record the load status of %s", name)


def _retire(previous: Slot | None) -> threading.Timer | None:
    """Free a replaced slot once requests that took it just before the switch have queued on it: after
    CLASSIFIER_MODEL_DRAIN_SECONDS its batcher answers what is queued, stops, and the model is dropped."""
    if previous is None or not isinstance(previous.state, Ready):
        return None
    ready = previous.state

    def free() -> None:
        ready.batcher.close()
        previous.state = Unavailable("Replaced by a newer version.")
        gc.collect()
        release_freed_memory()  # else glibc keeps the freed version's heap, and RSS climbs with every switch

    timer = threading.Timer(settings.CLASSIFIER_MODEL_DRAIN_SECONDS, free)
    timer.name, timer.daemon = f"retire-{previous.name}", True
    timer.start()
    return timer
