"""The serving process's models: one ordered set of slots by name, plus the name of the default.

Loading runs on a background thread so the server answers (``/healthz``, ``/readyz`` with
"loading") while weights load; a failure leaves that model ``unavailable`` with a reason, never
raised into the server, and the other models still serve.
"""

import contextlib
import ctypes
import logging
import os
import re
import threading
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import torch
from django.conf import settings
from PIL import Image

from .. import metrics
from .artifacts import Artifact, ArtifactError, ModelSource, load_artifact, model_sources
from .batching import MicroBatcher
from .engines import Engine, TorchEngine, build_engine, resolve_device
from .errors import ModelNotFound, ModelUnavailable
from .preprocessing import Preprocessing

logger = logging.getLogger(__name__)

LOADING, LOADED, UNAVAILABLE = "loading", "loaded", "unavailable"
AGREEMENT_TOLERANCE = 1e-4  # an exact engine's largest probability difference from eager fp32
SETTINGS_VERSION = "settings"  # the version of a model configured in CLASSIFIER_MODELS


@dataclass
class LoadedModel:
    """A model ready to serve: its labels, its preprocessing and the engine that runs it."""

    name: str
    kind: str  # the artifact's kind: torchvision, state_dict, torchscript, onnx
    pretrained: bool
    labels: list[str]
    preprocessing: Preprocessing
    engine: Engine = field(repr=False)
    fingerprint: str | None = None  # names these exact weights (for the result cache); None: random
    # Which version answers: a registered version's name, else "settings" (a CLASSIFIER_MODELS model).
    version: str = SETTINGS_VERSION

    def run_batch(self, images: list[np.ndarray]) -> np.ndarray:
        """Forward a list of preprocessed HxWx3 uint8 arrays; return their probability rows."""
        return self.engine.run(np.stack(images))


@dataclass
class Slot:
    """One configured model: where it comes from, its status and, once loaded, the model and its batcher."""

    source: ModelSource
    status: str = LOADING
    reason: str = "The model is loading."
    model: LoadedModel | None = None
    batcher: MicroBatcher | None = None

    @property
    def name(self) -> str:
        return self.source.name


def configure_libraries() -> None:
    """Global library knobs, set in this one place.

    - Pillow: refuse (not just warn about) images over twice our pixel limit; ``decode``
      enforces the limit itself from the header.
    - torch: the intra-op pool size of this process; only the batcher threads run models, so
      request threads never add torch threads. (ONNX Runtime sessions get their own count.)
    """
    Image.MAX_IMAGE_PIXELS = settings.CLASSIFIER_MAX_IMAGE_PIXELS
    torch.set_num_threads(torch_threads())


def process_cores() -> int:
    """This process's share of the cores among WEB_CONCURRENCY (uvicorn's worker count) processes."""
    return max(1, (os.cpu_count() or 1) // settings.WEB_CONCURRENCY)


def batch_workers(device: torch.device) -> int:
    """CLASSIFIER_BATCH_WORKERS, or by default one per core of this process on a CPU and one on a GPU."""
    if settings.CLASSIFIER_BATCH_WORKERS > 0:
        return settings.CLASSIFIER_BATCH_WORKERS
    return 1 if device.type == "cuda" else process_cores()


def torch_threads() -> int:
    """CLASSIFIER_TORCH_THREADS, or this process's cores shared among its CPU batch workers."""
    if settings.CLASSIFIER_TORCH_THREADS > 0:
        return settings.CLASSIFIER_TORCH_THREADS
    return max(1, process_cores() // batch_workers(torch.device("cpu")))


def configured_sources() -> list[ModelSource]:
    """Every configured model, v1's (the default) first."""
    return model_sources(
        settings.CLASSIFIER_MODELS,
        default_model=settings.CLASSIFIER_MODEL,
        default_weights=settings.CLASSIFIER_WEIGHTS,
    )


def build_model(source: ModelSource, device: torch.device) -> LoadedModel:
    """Load ``source`` and put it on the configured engine; raises ArtifactError (safe to show) when it
    cannot serve, and the network errors of a "default" download as they are."""
    artifact = load_artifact(source)
    engine = build_engine(
        artifact,
        device=device,
        engine=source.engine or settings.CLASSIFIER_ENGINE,
        precision=source.precision or settings.CLASSIFIER_PRECISION,
        threads=torch_threads(),
        cache_dir=settings.CLASSIFIER_ENGINE_CACHE_DIR,
    )
    model = LoadedModel(
        name=source.name,
        kind=artifact.kind,
        pretrained=artifact.pretrained,
        labels=artifact.labels,
        preprocessing=artifact.preprocessing,
        engine=engine,
        fingerprint=_fingerprint(artifact, engine),
        version=source.version or SETTINGS_VERSION,
    )
    check_model(model, artifact, device)
    return model


def _fingerprint(artifact: Artifact, engine: Engine) -> str | None:
    """The result cache's name for these weights on this engine (an inexact engine answers differently)."""
    if artifact.fingerprint is None:
        return None
    return artifact.fingerprint if engine.exact else f"{artifact.fingerprint}:{engine.name}-{engine.precision}"


def check_model(model: LoadedModel, artifact: Artifact, device: torch.device) -> None:
    """Run every batch size the batcher will use once (so no request pays for first-call setup: allocator
    growth, oneDNN primitives, cuDNN's algorithm choice), check the output size against the labels and,
    for an exact engine other than eager torch, its agreement with eager fp32 on this machine."""
    crop = model.preprocessing.crop_size
    rng = np.random.default_rng(0)
    sample = rng.integers(0, 256, size=(2, crop, crop, 3), dtype=np.uint8)
    for size in sorted({1, settings.CLASSIFIER_MAX_BATCH_SIZE}):
        rows = model.run_batch([sample[index % 2] for index in range(size)])
    if rows.ndim != 2 or rows.shape[1] != len(model.labels):
        outputs = rows.shape[1] if rows.ndim == 2 else rows.shape
        raise ArtifactError(f"the model gives {outputs} outputs but there are {len(model.labels)} labels")
    if model.engine.exact and not isinstance(model.engine, TorchEngine) and artifact.module is not None:
        reference = TorchEngine(artifact.module, artifact.preprocessing, device=device, precision="fp32")
        difference = float(np.abs(reference.run(sample) - model.engine.run(sample)).max())
        if difference > AGREEMENT_TOLERANCE:
            raise ArtifactError(
                f"the {model.engine.name} engine differs from torch by {difference:.2g} on this model; "
                "set CLASSIFIER_ENGINE=torch"
            )


def release_freed_memory() -> None:
    """Hand the heap that loading freed (the eager model of the agreement check, an ONNX export) back to the
    system, so a worker's resident memory starts at what it serves with (glibc only; elsewhere nothing)."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6").malloc_trim(0)


def load_slot(source: ModelSource) -> Slot:
    """Build, check and start a batcher for one model; a failure is recorded in the slot, never raised."""
    slot = Slot(source=source)
    try:
        model = build_model(source, resolve_device(settings.CLASSIFIER_DEVICE))
    except Exception as exc:  # noqa: BLE001 - any failure must leave the server up and say why
        slot.reason = _explain(source, exc)
        slot.status = UNAVAILABLE
        # the reason is public and path-free; the log keeps where the model came from and the whole error
        logger.error(
            "model %s unavailable (from %s): %s",
            source.name,
            source.folder or source.weights,
            slot.reason,
            exc_info=exc,
        )
        return slot
    slot.model = model
    slot.batcher = MicroBatcher(
        model.run_batch,
        max_batch_size=settings.CLASSIFIER_MAX_BATCH_SIZE,
        max_delay_s=settings.CLASSIFIER_MAX_BATCH_DELAY_MS / 1000.0,
        queue_size=settings.CLASSIFIER_QUEUE_SIZE,
        on_start=configure_libraries,
        on_batch=lambda size, seconds: _record_batch(slot, size, seconds),
        name=f"batcher-{source.name}",
        workers=batch_workers(torch.device(model.engine.device)),
    )
    slot.status, slot.reason = LOADED, ""
    logger.info(
        "model %s loaded (%s, %s %s on %s)",
        source.name,
        source.described,
        model.engine.name,
        model.engine.precision,
        model.engine.device,
    )
    return slot


def _record_batch(slot: Slot, size: int, seconds: float) -> None:
    metrics.BATCH_SIZE.labels(slot.name).observe(size)
    metrics.INFERENCE_SECONDS.labels(slot.name).observe(seconds)
    metrics.QUEUE_DEPTH.labels(slot.name).set(slot.batcher.queue_depth)


def _explain(source: ModelSource, exc: Exception) -> str:
    """Why ``source`` cannot serve, as API users and the pages are told: the files' names, never their directories."""
    return _without_directories(_reason(source, exc))


# An absolute path: a "/" that starts a word (not one inside a URL or a relative path), up to a space or quote.
_ABSOLUTE_PATH = re.compile(r"(?<![\w:/.~-])/[^\s'\"<>()]*")


def _without_directories(text: str) -> str:
    """``text`` with each absolute path cut to its last part (a library's message may name any file)."""
    return _ABSOLUTE_PATH.sub(lambda match: match.group().rstrip("/").rpartition("/")[2] or "/", text)


def _reason(source: ModelSource, exc: Exception) -> str:
    if isinstance(exc, ArtifactError):
        return f"Could not load model {source.name} ({source.described}): {exc}."
    if source.folder is None and source.weights == "default":
        return (
            f"Could not load the pretrained weights of {source.name} ({type(exc).__name__}: {exc}). "
            "Set CLASSIFIER_WEIGHTS to a state_dict file path, or to 'random' for an untrained demo model."
        )
    return f"Could not load model {source.name} ({source.described}): {type(exc).__name__}."


class ModelRegistry:
    """The serving process's models, by name, in configured order; the first is the default (v1's)."""

    def __init__(self):
        self._slots: dict[str, Slot] = {}
        self._started = False
        self._lock = threading.Lock()
        self._loaded = threading.Event()
        self._then: Callable[[], None] | None = None

    def start(self, *, background: bool = True, then: Callable[[], None] | None = None) -> None:
        """Load the configured models once (idempotent), then call ``then`` (the version watcher's first
        sync, so that the process is ready only once it serves the active versions)."""
        with self._lock:
            if self._started:
                return
            self._started = True
            self._then = then
            self._slots = {source.name: Slot(source=source) for source in configured_sources()}
        if background:
            threading.Thread(target=self.load, name="model-loader", daemon=True).start()
        else:
            self.load()

    def load(self) -> None:
        configure_libraries()
        try:
            for name, slot in list(self._slots.items()):
                self._slots[name] = load_slot(slot.source)
            if self._then is not None:
                self._then()
        finally:
            release_freed_memory()
            self._loaded.set()

    def wait(self, timeout: float | None = None) -> bool:
        """Block until loading has finished (either way); return whether it finished."""
        return self._loaded.wait(timeout)

    @property
    def default_name(self) -> str:
        return next(iter(self._slots), None) or settings.CLASSIFIER_MODEL

    def slot(self, name: str | None = None) -> Slot:
        """The slot of model ``name`` (default: the default model), loaded or not; raises ModelNotFound."""
        name = name or self.default_name
        slot = self._slots.get(name)
        if slot is None and not self._started:  # before start(): the configured model, loading
            slot = next((Slot(source=source) for source in configured_sources() if source.name == name), None)
        if slot is None:
            raise ModelNotFound(f"Unknown model {name!r}; this server has {', '.join(self.names())}.")
        return slot

    def peek(self, name: str) -> Slot | None:
        """The slot of model ``name`` as it is now, or None."""
        return self._slots.get(name)

    def get(self, name: str | None = None) -> Slot:
        """The loaded slot of model ``name``; raises ModelNotFound or ModelUnavailable (with the reason)."""
        slot = self.slot(name)
        if slot.status != LOADED:
            raise ModelUnavailable(f"Model {slot.name}: {slot.reason}")
        return slot

    def replace(self, slot: Slot) -> Slot | None:
        """Put ``slot`` in place of the model of its name (a new name goes last); return the slot it replaced.

        One dict assignment: a request sees the old slot or the new, never neither.
        """
        previous = self._slots.get(slot.name)
        self._slots[slot.name] = slot
        return previous

    def remove(self, name: str) -> Slot | None:
        """Take model ``name`` out (never the default); return its slot."""
        if name == self.default_name:
            raise ValueError("the default model cannot be removed")
        return self._slots.pop(name, None)

    def names(self) -> list[str]:
        """The configured models' names, the default first."""
        return list(self._slots) or [source.name for source in configured_sources()]

    def describe(self) -> list[dict]:
        """Every configured model as /api/v2/models, /readyz and the pages show it, the default first."""
        return [describe_slot(self.slot(name), default=index == 0) for index, name in enumerate(self.names())]


def describe_slot(slot: Slot, *, default: bool) -> dict:
    model = slot.model
    return {
        "name": slot.name,
        "default": default,
        "status": slot.status,
        "reason": slot.reason,
        "weights": slot.source.described,
        "version": model.version if model else (slot.source.version or SETTINGS_VERSION),
        "pretrained": model.pretrained if model else None,
        "num_labels": len(model.labels) if model else None,
        "input_size": model.preprocessing.crop_size if model else None,
        "device": model.engine.device if model else None,
        "artifact": model.kind if model else None,
        "engine": model.engine.name if model else None,
        "precision": model.engine.precision if model else None,
        "exact": model.engine.exact if model else None,
    }


registry = ModelRegistry()
