"""The serving process's models: the ``Runtime``, one ordered set of slots by name plus the name of the default.

Loading runs on a background thread so the server answers (``/healthz``, ``/readyz`` with "loading") while
models load; a failure leaves that model ``unavailable`` with a reason, never raised into the server, and the
other models still serve.

A model is served from its compiled artifact (``store.py``): found, it is loaded alone (no torch, no export, no
agreement check: those were done when it was compiled); missing, it is compiled first, once, in a sandboxed
child process (``sandbox.py``), and kept for every other worker and restart. Eager torch (CLASSIFIER_ENGINE=torch,
bf16, fp16, CUDA) has nothing to compile and is built in the process.

The runtime reads no Django setting: it is given a ``RuntimeConfig`` (or a function returning the current one).
"""

import contextlib
import ctypes
import logging
import re
import sys
import tempfile
import threading
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import ClassVar

import numpy as np
from PIL import Image

from .batching import MicroBatcher
from .config import CompileOptions, RuntimeConfig
from .engines import Engine, EnginePlan, OnnxRuntimeEngine, plan_engine
from .errors import ArtifactError, ExportFailed, ModelNotFound, ModelUnavailable, PretrainedUnavailable
from .kinds import EngineKind, ModelStatus, Precision, Provenance
from .preprocessing import Preprocessing
from .sandbox import SandboxLimits, run_in_sandbox
from .sources import ModelSource, model_sources
from .store import ArtifactStore, CompiledModel, artifact_key

logger = logging.getLogger(__name__)

LOADING, LOADED, UNAVAILABLE = ModelStatus.LOADING, ModelStatus.LOADED, ModelStatus.UNAVAILABLE
SETTINGS_VERSION = "settings"  # the version of a model configured in CLASSIFIER_MODELS
BatchHook = Callable[[str, int, float, int], None]  # (model name, batch size, seconds, queue depth)


@dataclass
class LoadedModel:
    """A model ready to serve: its labels, its preprocessing and the engine that runs it."""

    name: str
    kind: str  # the source's kind: torchvision, state_dict, torchscript, onnx
    pretrained: bool
    labels: list[str]
    preprocessing: Preprocessing
    engine: Engine = field(repr=False)
    fingerprint: str | None = None  # names these exact weights (for the result cache); None: random
    # Which version answers: a registered version's name, else "settings" (a CLASSIFIER_MODELS model).
    version: str = SETTINGS_VERSION
    provenance: Provenance = Provenance.IN_PROCESS  # compiled here, loaded compiled, or eager torch
    artifact_key: str = ""  # the compiled artifact's key ("" for eager torch)
    report: dict = field(default_factory=dict, repr=False)  # the compile report: agreement, compile time

    def run_batch(self, images: list[np.ndarray]) -> np.ndarray:
        """Forward a list of preprocessed HxWx3 uint8 arrays; return their probability rows."""
        return self.engine.run(np.stack(images))

    def served_as(self) -> dict:
        """What answers say of the engine: its name, precision, whether it is exact and, for a fast mode, the
        agreement with fp32 its compile gate measured (and on which images). An exact engine's agreement is None:
        it agrees with eager fp32 within engines.AGREEMENT_TOLERANCE."""
        fast = self.report.get("fast_mode")
        agreement = {**fast["agreement"], "measured_on": fast["images"]} if fast else None
        return {
            "name": str(self.engine.name),
            "precision": str(self.engine.precision),
            "exact": bool(self.engine.exact),
            "agreement": agreement,
        }


@dataclass(frozen=True)
class Loading:
    """Being loaded (or compiled): nothing to serve yet."""

    reason: str = "The model is loading."
    status: ClassVar[ModelStatus] = LOADING


@dataclass(frozen=True)
class Ready:
    """Serving: a ready slot always has its model and the batcher that runs it."""

    model: LoadedModel
    batcher: MicroBatcher
    reason: ClassVar[str] = ""
    status: ClassVar[ModelStatus] = LOADED


@dataclass(frozen=True)
class Unavailable:
    """Cannot serve, and why (public and path-free: API errors and pages show it)."""

    reason: str
    status: ClassVar[ModelStatus] = UNAVAILABLE


SlotState = Loading | Ready | Unavailable


@dataclass
class Slot:
    """One configured model: where it comes from and its state. Only a ``Ready`` state has a model; the state
    is replaced whole (one assignment), so a reader sees a ready model with its batcher or no model at all."""

    source: ModelSource
    state: SlotState = field(default_factory=Loading)

    @property
    def name(self) -> str:
        return self.source.name

    @property
    def status(self) -> ModelStatus:
        return self.state.status

    @property
    def reason(self) -> str:
        return self.state.reason

    @property
    def model(self) -> LoadedModel | None:
        """The model when ready, else None (for what describes a slot; serving matches on ``Ready``)."""
        return self.state.model if isinstance(self.state, Ready) else None

    @property
    def batcher(self) -> MicroBatcher | None:
        return self.state.batcher if isinstance(self.state, Ready) else None


def configure_libraries(config: RuntimeConfig) -> None:
    """Global library knobs, set in this one place.

    - Pillow: refuse (not just warn about) images over twice our pixel limit; ``decode`` enforces the limit
      itself from the header.
    - torch (only where eager torch serves, so only if it is imported): the intra-op pool size of this process.
    """
    Image.MAX_IMAGE_PIXELS = config.max_image_pixels
    torch = sys.modules.get("torch")
    if torch is not None:
        torch.set_num_threads(config.engine_threads())


def configured_sources(config: RuntimeConfig) -> list[ModelSource]:
    """Every configured model, v1's (the default) first."""
    return model_sources(config.models, default_model=config.default_model, default_weights=config.default_weights)


def plan_for(source: ModelSource, config: RuntimeConfig) -> EnginePlan:
    return plan_engine(
        source,
        engine=source.engine or config.engine,
        precision=source.precision or config.precision,
        device=config.device,
    )


def plan_artifact_key(source: ModelSource, plan: EnginePlan) -> str:
    """The name of ``source``'s compiled artifact under ``plan``. ``auto``'s artifact (whichever exact engine its
    race chose) is not an explicit ``onnxruntime`` choice's: each would otherwise load the other's."""
    engine = EngineKind.AUTO if plan.fallback else plan.engine
    return artifact_key(source, engine=engine, precision=plan.precision, device=plan.device)


def sandbox_limits(config: RuntimeConfig) -> SandboxLimits:
    return SandboxLimits(timeout_seconds=config.compile_timeout_seconds, memory_bytes=config.compile_memory_bytes)


def compile_request(source: ModelSource, plan: EnginePlan, config: RuntimeConfig) -> dict:
    """What the compiling child is asked (JSON): the source, the engine plan and the limits it works under."""
    fields = asdict(source)
    fields["folder"] = str(source.folder) if source.folder is not None else None
    return {
        "source": fields,
        "engine": str(plan.engine),
        "precision": str(plan.precision),
        "device": plan.device,
        "fallback": plan.fallback,  # ``auto``: the child races the exact engines (CompileOptions.race_engines)
        "threads": config.engine_threads(),
        "max_batch_size": config.max_batch_size,
        "options": asdict(compile_options(config)),
    }


def compile_options(config: RuntimeConfig) -> CompileOptions:
    return CompileOptions(
        min_top1_agreement=config.min_top1_agreement,
        max_calibration_images=config.max_calibration_images,
        max_image_pixels=config.max_image_pixels,
        race_engines=config.race_engines,
        callers=config.workers_for("cpu"),
    )


def compile_in_child(source: ModelSource, plan: EnginePlan, config: RuntimeConfig) -> tuple[dict[str, bytes], dict]:
    result = run_in_sandbox(compile_request(source, plan, config), limits=sandbox_limits(config))
    return result.files, result.manifest


def compile_here(source: ModelSource, plan: EnginePlan, config: RuntimeConfig) -> tuple[dict[str, bytes], dict]:
    from .compiler import compile_source

    files, manifest, _engine = compile_source(
        source,
        plan=plan,
        threads=config.engine_threads(),
        max_batch_size=config.max_batch_size,
        options=compile_options(config),
    )
    return files, manifest


def artifact_store(config: RuntimeConfig) -> ArtifactStore:
    root = config.artifact_dir or Path(tempfile.gettempdir()) / "aiserver-compiled"
    return ArtifactStore(root)


def compiled_artifact(source: ModelSource, plan: EnginePlan, config: RuntimeConfig) -> CompiledModel:
    """``source``'s compiled artifact for ``plan``: read from the store, or compiled once (one compiler per key on
    this machine; the others wait and read what it stored)."""
    store = artifact_store(config)
    key = plan_artifact_key(source, plan)
    found = store.read(key)
    if found is not None:
        return found
    compile_ = compile_in_child if config.compile_in_child else compile_here
    if not store.writable():  # compile for this process alone
        logger.warning("the artifact store is not writable; compiling %s for this process only", source.name)
        files, manifest = compile_(source, plan, config)
        return ArtifactStore(Path(tempfile.mkdtemp(prefix="aiserver-compiled-"))).write(key, files, manifest)
    with store.locked(key):
        found = store.read(key)
        if found is not None:
            return found
        files, manifest = compile_(source, plan, config)
        return store.write(key, files, manifest)


def validate_folder(folder: Path, config: RuntimeConfig, *, engine: str = "", precision: str = "") -> dict:
    """The validation gate: compile the model folder in the sandboxed child and run every check on it
    (validation.py). A passing model's compiled artifact is stored, so activating it later only loads it.
    Returns the report (JSON-ready); a refused model's says why."""
    source = ModelSource(name="candidate", architecture=None, folder=folder, engine=engine, precision=precision)
    try:
        plan = plan_for(source, config)
        request = compile_request(source, plan, config)
        request["gate"] = {"max_batch_size": config.max_batch_size, "max_image_pixels": config.max_image_pixels}
        result = run_in_sandbox(request, limits=sandbox_limits(config))
    except ArtifactError as exc:
        return {
            "passed": False,
            "checks": [{"check": "loads", "passed": False, "detail": str(exc)}],
            "summary": f"Refused: loads failed: {exc}.",
        }
    if result.report.get("passed") and plan.compiled:
        key = plan_artifact_key(source, plan)
        stored = artifact_store(config).write(key, result.files, result.manifest)
        result.report["artifact_key"] = stored.key
    return result.report


def build_model(source: ModelSource, config: RuntimeConfig) -> LoadedModel:
    """Load ``source`` on its planned engine, from its compiled artifact where it has one; raises ArtifactError
    (safe to show) when it cannot serve."""
    plan = plan_for(source, config)
    if plan.compiled:
        try:
            model = _from_compiled(source, plan, config)
        except ExportFailed as exc:
            if not plan.fallback:
                raise
            logger.warning("%s; serving %s with eager torch", exc, source.name)
            plan = EnginePlan(EngineKind.TORCH, Precision.FP32, plan.device)
        else:
            warm_up(model, config)
            return model
    model = _eager(source, plan, config)
    warm_up(model, config)
    return model


def _from_compiled(source: ModelSource, plan: EnginePlan, config: RuntimeConfig) -> LoadedModel:
    compiled = compiled_artifact(source, plan, config)
    manifest = compiled.manifest
    callers = config.workers_for("cpu")
    _warn_if_raced_otherwise(source, manifest.get("report", {}).get("engine_choice"), callers)
    engine = compiled_engine(compiled, plan=plan, threads=config.engine_threads(), streams=callers)
    return LoadedModel(
        name=source.name,
        kind=manifest["kind"],
        pretrained=manifest["pretrained"],
        labels=compiled.labels,
        preprocessing=compiled.preprocessing,
        engine=engine,
        fingerprint=manifest["fingerprint"],
        version=source.version or SETTINGS_VERSION,
        provenance=compiled.provenance,
        artifact_key=compiled.key,
        report=manifest.get("report", {}),
    )


def _warn_if_raced_otherwise(source: ModelSource, choice: dict | None, callers: int) -> None:
    """``auto``'s race measured the engines with the batch workers of the process that compiled; the artifact's key
    leaves that count out (a container compiled on a build machine must find its artifact wherever it runs), so a
    process serving with another count is told that the choice was measured for a different load."""
    if choice and choice.get("measured") and choice.get("callers") != callers:
        logger.warning(
            "%s: auto chose %s measuring %s concurrent callers, but this process serves with %s batch workers; "
            "remove its compiled artifact from CLASSIFIER_ENGINE_CACHE_DIR to measure again",
            source.name,
            choice.get("chosen"),
            choice.get("callers"),
            callers,
        )


def compiled_engine(compiled: CompiledModel, *, plan: EnginePlan, threads: int, streams: int = 1) -> Engine:
    """The engine the artifact was compiled for (the one ``auto`` measured fastest, where it measured), for
    ``streams`` concurrent callers (the batch workers) of ``threads`` threads each."""
    manifest = compiled.manifest
    if manifest["engine"] == EngineKind.OPENVINO:
        from .openvino_engine import OpenVinoEngine, OpenVinoError

        try:
            if manifest["precision"] == Precision.INT8:
                return OpenVinoEngine.load(compiled.folder, precision="int8", threads=threads, streams=streams)
            return OpenVinoEngine.from_onnx(
                compiled.graph.read_bytes(), precision=manifest["precision"], threads=threads, streams=streams
            )
        except OpenVinoError as exc:
            raise ArtifactError(str(exc)) from exc
    return OnnxRuntimeEngine(
        compiled.graph.read_bytes(),
        threads=threads,
        takes_pixels=manifest["takes_pixels"],
        preprocessing=compiled.preprocessing,
        device=plan.device,
    )


def _eager(source: ModelSource, plan: EnginePlan, config: RuntimeConfig) -> LoadedModel:
    from .compiler import eager_engine

    artifact, engine = eager_engine(source, plan=plan)
    configure_libraries(config)
    fingerprint = artifact.fingerprint
    if fingerprint is not None and not engine.exact:  # an inexact engine answers differently: its own cache entries
        fingerprint = f"{fingerprint}:{engine.name}-{engine.precision}"
    return LoadedModel(
        name=source.name,
        kind=artifact.kind,
        pretrained=artifact.pretrained,
        labels=artifact.labels,
        preprocessing=artifact.preprocessing,
        engine=engine,
        fingerprint=fingerprint,
        version=source.version or SETTINGS_VERSION,
    )


def warm_up(model: LoadedModel, config: RuntimeConfig) -> None:
    """Run every batch size the batcher will use once (so no request pays for first-call setup: allocator growth,
    oneDNN primitives, cuDNN's algorithm choice) and check the output size against the labels."""
    crop = model.preprocessing.crop_size
    sample = np.random.default_rng(0).integers(0, 256, size=(2, crop, crop, 3), dtype=np.uint8)
    for size in sorted({1, config.max_batch_size}):
        rows = model.run_batch([sample[index % 2] for index in range(size)])
    if rows.ndim != 2 or rows.shape[1] != len(model.labels):
        outputs = rows.shape[1] if rows.ndim == 2 else rows.shape
        raise ArtifactError(f"the model gives {outputs} outputs but there are {len(model.labels)} labels")


def release_freed_memory() -> None:
    """Hand the heap that loading freed back to the system, so a worker's resident memory starts at what it serves
    with (glibc only; elsewhere nothing)."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6").malloc_trim(0)


def load_slot(source: ModelSource, config: RuntimeConfig, *, on_batch: BatchHook | None = None) -> Slot:
    """Build and start a batcher for one model; a failure is recorded in the slot, never raised."""
    slot = Slot(source=source)
    try:
        model = build_model(source, config)
    except Exception as exc:  # noqa: BLE001 - any failure must leave the server up and say why
        slot.state = Unavailable(_explain(source, exc))
        # the reason is public and path-free; the log keeps where the model came from and the full detail, in one line
        logger.error(
            "model %s unavailable (from %s): %s [%s]",
            source.name,
            source.folder or source.weights,
            slot.reason,
            " ".join(str(exc).split())[:1000],
        )
        return slot

    def record(size: int, seconds: float) -> None:
        if on_batch is not None:
            on_batch(source.name, size, seconds, batcher.queue_depth)

    batcher = MicroBatcher(
        model.run_batch,
        max_batch_size=config.max_batch_size,
        max_delay_s=config.max_batch_delay_ms / 1000.0,
        queue_size=config.queue_size,
        on_start=lambda: configure_libraries(config),
        on_batch=record,
        name=f"batcher-{source.name}",
        workers=config.workers_for(model.engine.device),
    )
    slot.state = Ready(model, batcher)
    logger.info(
        "model %s loaded (%s, %s %s on %s, %s)",
        source.name,
        source.described,
        model.engine.name,
        model.engine.precision,
        model.engine.device,
        model.provenance,
    )
    return slot


def _explain(source: ModelSource, exc: Exception) -> str:
    """Why ``source`` cannot serve, as API users and the pages are told: the files' names, never their directories."""
    return _without_directories(_reason(source, exc))


# An absolute path: a "/" that starts a word (not one inside a URL or a relative path), up to a space or quote.
_ABSOLUTE_PATH = re.compile(r"(?<![\w:/.~-])/[^\s'\"<>()]*")


def _without_directories(text: str) -> str:
    """``text`` with each absolute path cut to its last part (a library's message may name any file)."""
    return _ABSOLUTE_PATH.sub(lambda match: match.group().rstrip("/").rpartition("/")[2] or "/", text)


def _reason(source: ModelSource, exc: Exception) -> str:
    pretrained = source.folder is None and source.weights == "default"
    if isinstance(exc, PretrainedUnavailable) or (pretrained and not isinstance(exc, ArtifactError)):
        detail = str(exc) if isinstance(exc, PretrainedUnavailable) else f"{type(exc).__name__}: {exc}"
        return (
            f"Could not load the pretrained weights of {source.name} ({detail}). "
            "Set CLASSIFIER_WEIGHTS to a state_dict file path, or to 'random' for an untrained demo model."
        )
    if isinstance(exc, ArtifactError):
        return f"Could not load model {source.name} ({source.described}): {exc}."
    return f"Could not load model {source.name} ({source.described}): {type(exc).__name__}."


class Runtime:
    """The serving process's models, by name, in configured order; the first is the default (v1's)."""

    def __init__(self, config: RuntimeConfig | Callable[[], RuntimeConfig], *, on_batch: BatchHook | None = None):
        self._config = config
        self.on_batch = on_batch
        self._slots: dict[str, Slot] = {}
        self._started = False
        self._lock = threading.Lock()
        self._loaded = threading.Event()
        self._then: Callable[[], None] | None = None

    @property
    def config(self) -> RuntimeConfig:
        """The configuration now (a function given at construction is asked each time)."""
        return self._config if isinstance(self._config, RuntimeConfig) else self._config()

    def load_slot(self, source: ModelSource) -> Slot:
        """A slot for ``source``, built with this runtime's configuration (not installed: see ``replace``)."""
        return load_slot(source, self.config, on_batch=self.on_batch)

    def sources(self) -> list[ModelSource]:
        """The configured models' sources, the default first."""
        return configured_sources(self.config)

    def close(self) -> None:
        """Stop every model's batcher (what is queued is answered first)."""
        for slot in list(self._slots.values()):
            if isinstance(slot.state, Ready):
                slot.state.batcher.close()

    def start(self, *, background: bool = True, then: Callable[[], None] | None = None) -> None:
        """Load the configured models once (idempotent), then call ``then`` (the version watcher's first
        sync, so that the process is ready only once it serves the active versions)."""
        with self._lock:
            if self._started:
                return
            self._started = True
            self._then = then
            self._slots = {source.name: Slot(source=source) for source in configured_sources(self.config)}
        if background:
            threading.Thread(target=self.load, name="model-loader", daemon=True).start()
        else:
            self.load()

    def load(self) -> None:
        config = self.config
        configure_libraries(config)
        try:
            for name, slot in list(self._slots.items()):
                self._slots[name] = load_slot(slot.source, config, on_batch=self.on_batch)
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
        return next(iter(self._slots), None) or self.config.default_model

    def slot(self, name: str | None = None) -> Slot:
        """The slot of model ``name`` (default: the default model), loaded or not; raises ModelNotFound."""
        name = name or self.default_name
        slot = self._slots.get(name)
        if slot is None and not self._started:  # before start(): the configured model, loading
            slot = next(
                (Slot(source=source) for source in configured_sources(self.config) if source.name == name), None
            )
        if slot is None:
            raise ModelNotFound(f"Unknown model {name!r}; this server has {', '.join(self.names())}.")
        return slot

    def peek(self, name: str) -> Slot | None:
        """The slot of model ``name`` as it is now, or None."""
        return self._slots.get(name)

    def get(self, name: str | None = None) -> Slot:
        """The loaded slot of model ``name``; raises ModelNotFound or ModelUnavailable (with the reason)."""
        slot = self.slot(name)
        if not isinstance(slot.state, Ready):
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
        return list(self._slots) or [source.name for source in configured_sources(self.config)]

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
        "compiled": _compiled_description(model) if model else None,
        "preprocessing": model.preprocessing.describe() if model else None,
    }


def _compiled_description(model: LoadedModel) -> dict:
    """How this process got the model's engine, and what the compile measured."""
    agreement = model.report.get("agreement", {})
    return {
        "provenance": str(model.provenance),
        "artifact_key": model.artifact_key or None,
        "agreement_max_difference": agreement.get("max_difference"),
        "compile_seconds": model.report.get("compile_seconds"),
        "fast_mode": model.report.get("fast_mode"),
    }
