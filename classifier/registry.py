"""Loads the configured model once per serving process and hands it to requests.

Loading runs on a background thread so the server answers (``/healthz``, ``/readyz`` with
"loading") while weights load; a failure is reported, never raised into the server.
"""
import hashlib
import logging
import os
import threading
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torchvision
from django.conf import settings
from PIL import Image
from torchvision.transforms.functional import pil_modes_mapping

from . import metrics, pipeline
from .batching import MicroBatcher
from .exceptions import ModelUnavailable

logger = logging.getLogger(__name__)

LOADING, LOADED, UNAVAILABLE = "loading", "loaded", "unavailable"


@dataclass
class LoadedModel:
    name: str
    weights: str  # "default", "random" or the state_dict path
    pretrained: bool
    labels: list[str]
    preprocessing: pipeline.Preprocessing
    device: torch.device
    dtype: torch.dtype
    module: torch.nn.Module = field(repr=False)
    mean: torch.Tensor = field(repr=False)
    std: torch.Tensor = field(repr=False)
    fingerprint: str | None = None  # names these exact weights (for the result cache); None: random

    def run_batch(self, images: list[np.ndarray]) -> np.ndarray:
        """Forward a list of preprocessed HxWx3 uint8 arrays; return their probability rows."""
        pixels = torch.from_numpy(np.stack(images)).to(self.device, non_blocking=True)
        return pipeline.infer(self.module, pixels, mean=self.mean, std=self.std)


def configure_libraries() -> None:
    """Global library knobs, set in this one place.

    - Pillow: refuse (not just warn about) images over twice our pixel limit; ``decode``
      enforces the limit itself from the header.
    - torch: the intra-op pool size of this process; only the batcher threads run torch, so
      request threads (one per request under Django's ASGI handler) never add torch threads.
    """
    Image.MAX_IMAGE_PIXELS = settings.CLASSIFIER_MAX_IMAGE_PIXELS
    torch.set_num_threads(torch_threads())


def process_cores(environ=os.environ) -> int:
    """This process's share of the cores among WEB_CONCURRENCY (uvicorn's worker count) processes."""
    try:
        processes = max(1, int(environ.get("WEB_CONCURRENCY", "1")))
    except ValueError:
        processes = 1
    return max(1, (os.cpu_count() or 1) // processes)


def batch_workers(device: torch.device, environ=os.environ) -> int:
    """CLASSIFIER_BATCH_WORKERS, or by default one per core of this process on a CPU and one on a GPU."""
    if settings.CLASSIFIER_BATCH_WORKERS > 0:
        return settings.CLASSIFIER_BATCH_WORKERS
    return 1 if device.type == "cuda" else process_cores(environ)


def torch_threads(environ=os.environ) -> int:
    """CLASSIFIER_TORCH_THREADS, or this process's cores shared among its CPU batch workers."""
    if settings.CLASSIFIER_TORCH_THREADS > 0:
        return settings.CLASSIFIER_TORCH_THREADS
    return max(1, process_cores(environ) // batch_workers(torch.device("cpu"), environ))


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def build_model(name: str, weights: str, device: torch.device) -> LoadedModel:
    """Build a torchvision classifier with ``weights`` ("default", "random", "trivial" or a state_dict path).

    Raises ValueError for an unknown model or a weights file that does not fit it; network
    errors of the "default" download propagate.
    """
    try:
        reference_weights = torchvision.models.get_model_weights(name).DEFAULT
    except (ValueError, KeyError) as exc:
        raise ValueError(f"unknown torchvision model {name!r}") from exc
    if weights == "default":
        module = torchvision.models.get_model(name, weights=reference_weights)
        fingerprint = f"{name}:{reference_weights.name}"
    elif weights == "random":
        module = torchvision.models.get_model(name, weights=None)
        fingerprint = None
    elif weights == "trivial":
        module = TrivialClassifier(len(reference_weights.meta["categories"]))
        fingerprint = None
    else:
        path = Path(weights)
        if not path.is_file():
            raise ValueError(f"weights file {weights} does not exist")
        module = torchvision.models.get_model(name, weights=None)
        state_dict = torch.load(path, map_location="cpu", weights_only=True)
        module.load_state_dict(state_dict)
        fingerprint = f"{name}:file:{_file_digest(path)}"
    transform = reference_weights.transforms()
    preprocessing = pipeline.Preprocessing(
        resize_size=int(transform.resize_size[0]),
        crop_size=int(transform.crop_size[0]),
        mean=tuple(transform.mean),
        std=tuple(transform.std),
        resample=pil_modes_mapping[transform.interpolation],
    )
    dtype = torch.float16 if device.type == "cuda" else torch.float32
    module = module.eval().to(device=device, dtype=dtype)
    if device.type == "cuda":
        module = module.to(memory_format=torch.channels_last)
    shape = (1, 3, 1, 1)
    return LoadedModel(
        name=name,
        weights=weights,
        pretrained=weights != "random",
        labels=list(reference_weights.meta["categories"]),
        preprocessing=preprocessing,
        device=device,
        dtype=dtype,
        module=module,
        mean=torch.tensor(preprocessing.mean, device=device, dtype=dtype).view(shape),
        std=torch.tensor(preprocessing.std, device=device, dtype=dtype).view(shape),
        fingerprint=fingerprint,
    )


class TrivialClassifier(torch.nn.Module):
    """Benchmark mode (CLASSIFIER_WEIGHTS=trivial): near-free logits in place of the network, so that a
    benchmark measures the service's own cost per request (auth, limits, logging, parsing, decoding)."""

    def __init__(self, num_classes: int):
        super().__init__()
        self.classes = torch.nn.Linear(3, num_classes)

    def forward(self, batch: torch.Tensor) -> torch.Tensor:
        return self.classes(batch.mean(dim=(2, 3)))


def _file_digest(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as weights_file:
        for chunk in iter(lambda: weights_file.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()[:16]


@dataclass
class ModelSlot:
    """One configured model: its status and, once loaded, the model and its batcher."""

    name: str
    weights: str
    status: str = LOADING
    reason: str = "The model is loading."
    model: LoadedModel | None = None
    batcher: MicroBatcher | None = None


def model_specs() -> list[tuple[str, str]]:
    """(name, weights) of every configured model, v1's model (CLASSIFIER_MODEL) first, no name twice."""
    specs = {settings.CLASSIFIER_MODEL: settings.CLASSIFIER_WEIGHTS}
    for entry in settings.CLASSIFIER_MODELS:
        name, _, weights = (part.strip() for part in entry.partition("="))
        if name == settings.CLASSIFIER_MODEL:
            specs[name] = weights or specs[name]
        else:
            specs.setdefault(name, weights or settings.CLASSIFIER_WEIGHTS)
    return list(specs.items())


def load_slot(name: str, weights: str) -> ModelSlot:
    """Build, warm up and start a batcher for one model; a failure is recorded in the slot, never raised."""
    slot = ModelSlot(name=name, weights=weights)
    try:
        model = build_model(name, weights, resolve_device(settings.CLASSIFIER_DEVICE))
        _warm_up(model)
    except Exception as exc:  # noqa: BLE001 - any failure must leave the server up and say why
        slot.reason = _explain(name, weights, exc)
        slot.status = UNAVAILABLE
        logger.error("model unavailable: %s", slot.reason)
        return slot
    slot.model = model
    slot.batcher = MicroBatcher(
        model.run_batch,
        max_batch_size=settings.CLASSIFIER_MAX_BATCH_SIZE,
        max_delay_s=settings.CLASSIFIER_MAX_BATCH_DELAY_MS / 1000.0,
        queue_size=settings.CLASSIFIER_QUEUE_SIZE,
        on_start=configure_libraries,
        on_batch=lambda size, seconds: _record_batch(slot, size, seconds),
        name=f"batcher-{name}",
        workers=batch_workers(model.device),
    )
    slot.status, slot.reason = LOADED, ""
    logger.info("model %s loaded (weights=%s, device=%s)", name, weights, model.device)
    return slot


def _record_batch(slot: ModelSlot, size: int, seconds: float) -> None:
    metrics.BATCH_SIZE.labels(slot.name).observe(size)
    metrics.INFERENCE_SECONDS.labels(slot.name).observe(seconds)
    metrics.QUEUE_DEPTH.labels(slot.name).set(slot.batcher.queue_depth)


def _warm_up(model: LoadedModel) -> None:
    """Run the smallest and largest batch once, so that no request pays for first-call setup
    (allocator growth, oneDNN primitive creation, cuDNN algorithm choice on GPU)."""
    crop = model.preprocessing.crop_size
    for size in sorted({1, settings.CLASSIFIER_MAX_BATCH_SIZE}):
        model.run_batch([np.zeros((crop, crop, 3), dtype=np.uint8)] * size)


def _explain(name: str, weights: str, exc: Exception) -> str:
    if weights == "default":
        return (
            f"Could not load the pretrained weights of {name} ({type(exc).__name__}: {exc}). "
            "Set CLASSIFIER_WEIGHTS to a state_dict file path, or to 'random' for an untrained demo model."
        )
    return f"Could not load model {name} with weights {weights!r}: {exc}"


class ModelRegistry:
    """The serving process's models.

    ``status``, ``reason``, ``model`` and ``batcher`` describe the first (v1) model, as they
    always have; ``others`` holds the further models of CLASSIFIER_MODELS by name.
    """

    def __init__(self):
        self.status = LOADING
        self.reason = "The model is loading."
        self.model: LoadedModel | None = None
        self.batcher: MicroBatcher | None = None
        self.others: dict[str, ModelSlot] = {}
        self._started = False
        self._lock = threading.Lock()
        self._loaded = threading.Event()

    def start(self, *, background: bool = True) -> None:
        """Load the configured models once (idempotent)."""
        with self._lock:
            if self._started:
                return
            self._started = True
        if background:
            threading.Thread(target=self.load, name="model-loader", daemon=True).start()
        else:
            self.load()

    def load(self) -> None:
        configure_libraries()
        try:
            (name, weights), *others = model_specs()
            first = load_slot(name, weights)
            self.model, self.batcher = first.model, first.batcher
            self.status, self.reason = first.status, first.reason
            for other_name, other_weights in others:
                self.others[other_name] = ModelSlot(name=other_name, weights=other_weights)
            for other_name, other_weights in others:
                self.others[other_name] = load_slot(other_name, other_weights)
        finally:
            self._loaded.set()

    def wait(self, timeout: float | None = None) -> bool:
        """Block until loading has finished (either way); return whether it finished."""
        return self._loaded.wait(timeout)

    def get(self, name: str | None = None) -> tuple[LoadedModel, MicroBatcher]:
        """Return model ``name`` (default: the first) and its batcher; raises ModelUnavailable otherwise."""
        slot = self.slot(name)
        if slot.status != LOADED:
            raise ModelUnavailable(slot.reason if name is None else f"Model {slot.name}: {slot.reason}")
        return slot.model, slot.batcher

    def slot(self, name: str | None = None) -> ModelSlot:
        """The slot of model ``name`` (default: the first); raises KeyError for a name not configured."""
        first_name = self.model.name if self.model else settings.CLASSIFIER_MODEL
        if name is None or name == first_name:
            return ModelSlot(
                name=first_name, weights=model_specs()[0][1], status=self.status, reason=self.reason,
                model=self.model, batcher=self.batcher,
            )
        return self.others[name]

    def names(self) -> list[str]:
        """The configured models' names, the first (v1) model first."""
        return [self.slot().name, *self.others]


registry = ModelRegistry()


def _describe_loaded(model: "LoadedModel | None") -> dict:
    """The facts only a loaded model has (None each while it is not loaded)."""
    return {
        "pretrained": model.pretrained if model else None,
        "num_labels": len(model.labels) if model else None,
        "input_size": model.preprocessing.crop_size if model else None,
        "device": str(model.device) if model else None,
    }


def model_info() -> dict:
    """What ``/api/v1/model/info`` reports about the configured model, loaded or not."""
    model = registry.model
    return {
        "name": model.name if model else settings.CLASSIFIER_MODEL,
        "status": registry.status,
        "reason": registry.reason,
        "weights": _describe_weights(settings.CLASSIFIER_WEIGHTS),
        **_describe_loaded(model),
        "top_k": settings.CLASSIFIER_TOP_K,
    }


def models_info() -> list[dict]:
    """What ``/api/v2/models`` reports: every configured model, the default (v1) one first."""
    infos = []
    for name in registry.names():
        slot = registry.slot(name)
        model = slot.model
        infos.append({
            "name": slot.name,
            "default": not infos,
            "status": slot.status,
            "reason": slot.reason,
            "weights": _describe_weights(slot.weights),
            **_describe_loaded(model),
        })
    return infos


def _describe_weights(weights: str) -> str:
    """The weights setting as shown to API users: a file's name, never the server's path."""
    return weights if weights in ("default", "random") else f"file:{Path(weights).name}"
