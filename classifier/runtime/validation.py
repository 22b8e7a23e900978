"""The validation gate's checks of one model folder, run in a separate process (``manage.py
validate_model_folder``) so that a model that crashes, hangs or eats memory cannot hurt the caller.

``validate_folder`` answers a report (JSON-ready): whether it passed and, per check, what was seen:

- ``loads``: the files load and the engine builds;
- ``labels``: the model's output count equals the number of labels;
- ``forward``: generated sample images go through decode, preprocessing and the engine, giving
  finite probabilities that sum to 1 (and, for an exact engine other than eager torch, agree with it);
- ``latency``: the median time of a forward pass at batch size 1 and at CLASSIFIER_MAX_BATCH_SIZE.
"""

import io
import statistics
import time
from pathlib import Path

import numpy as np
import torch
from django.conf import settings
from PIL import Image

from . import preprocessing as pipeline
from .artifacts import ArtifactError, ModelSource, load_artifact
from .engines import build_engine, resolve_device
from .registry import LoadedModel, check_model, configure_libraries, torch_threads

SAMPLE_COLOURS = [(220, 40, 30), (40, 180, 60), (30, 60, 210), (245, 245, 240), (10, 10, 10)]
SAMPLE_SIZES = [(400, 300), (224, 224), (120, 500), (1000, 800), (64, 64)]
LATENCY_RUNS = 5  # forward passes timed per batch size (the median is reported)
PROBABILITY_TOLERANCE = 1e-3  # how far a row's sum may be from 1


def sample_images() -> list[bytes]:
    """Generated JPEG and PNG pictures of several sizes and colours (no data set needed)."""
    images = []
    for index, (colour, size) in enumerate(zip(SAMPLE_COLOURS, SAMPLE_SIZES)):
        buffer = io.BytesIO()
        gradient = np.linspace(0, 60, size[0], dtype=np.float32)[None, :, None]
        pixels = np.clip(np.array(colour, dtype=np.float32)[None, None, :] + gradient, 0, 255).astype(np.uint8)
        Image.fromarray(np.broadcast_to(pixels, (size[1], size[0], 3)).copy()).save(
            buffer, format="PNG" if index % 2 else "JPEG"
        )
        images.append(buffer.getvalue())
    return images


def validate_folder(folder: Path, *, engine: str = "", precision: str = "") -> dict:
    """Run every check on the model folder; the report says what passed, what failed and why."""
    configure_libraries()
    source = ModelSource(name="candidate", architecture=None, folder=folder, engine=engine, precision=precision)
    checks: list[dict] = []
    report = {"passed": False, "checks": checks}
    device = resolve_device(settings.CLASSIFIER_DEVICE)
    try:
        artifact = load_artifact(source)
        built = build_engine(
            artifact,
            device=device,
            engine=engine or settings.CLASSIFIER_ENGINE,
            precision=precision or settings.CLASSIFIER_PRECISION,
            threads=torch_threads(),
            cache_dir=settings.CLASSIFIER_ENGINE_CACHE_DIR,
        )
    except Exception as exc:  # noqa: BLE001 - whatever fails, the report says so
        checks.append(_failed("loads", _reason(exc)))
        return _summarised(report)
    model = LoadedModel(
        name=source.name,
        kind=artifact.kind,
        pretrained=True,
        labels=artifact.labels,
        preprocessing=artifact.preprocessing,
        engine=built,
        fingerprint=artifact.fingerprint,
    )
    report.update(
        kind=artifact.kind,
        engine=built.name,
        precision=built.precision,
        device=built.device,
        num_labels=len(artifact.labels),
        input_size=artifact.preprocessing.crop_size,
    )
    checks.append(_passed("loads", f"{artifact.kind} on {built.name} {built.precision} ({built.device})"))
    for check in (_check_labels, _check_forward, _check_latency):
        try:
            result = check(model, artifact, device, report)
        except Exception as exc:  # noqa: BLE001
            result = _failed(check.__name__.removeprefix("_check_"), _reason(exc))
        checks.append(result)
        if not result["passed"]:
            break
    report["passed"] = len(checks) == 4 and all(check["passed"] for check in checks)
    return _summarised(report)


def _check_labels(model: LoadedModel, artifact, device, report: dict) -> dict:
    crop = model.preprocessing.crop_size
    rows = model.run_batch([np.zeros((crop, crop, 3), dtype=np.uint8)])
    outputs = rows.shape[1] if rows.ndim == 2 else None
    report["outputs"] = outputs
    if outputs != len(model.labels):
        return _failed(
            "labels",
            f"the model gives {outputs if outputs is not None else rows.shape} outputs but "
            f"labels.json has {len(model.labels)} labels",
        )
    return _passed("labels", f"{outputs} outputs, {len(model.labels)} labels")


def _check_forward(model: LoadedModel, artifact, device, report: dict) -> dict:
    spec = model.preprocessing
    pixels = [
        pipeline.preprocess(pipeline.decode(data, max_pixels=settings.CLASSIFIER_MAX_IMAGE_PIXELS), spec)
        for data in sample_images()
    ]
    rows = model.run_batch(pixels)
    if not np.all(np.isfinite(rows)):
        return _failed("forward", "the model's answers to the sample images are not all finite numbers")
    sums = rows.sum(axis=1)
    if np.abs(sums - 1.0).max() > PROBABILITY_TOLERANCE or rows.min() < 0:
        return _failed("forward", f"the answers are not probabilities (row sums {sums.min():.4g}..{sums.max():.4g})")
    check_model(model, artifact, device)  # every batch size once, and the agreement of an exact engine
    top = [model.labels[int(index)] for index in rows.argmax(axis=1)]
    report["sample_top_labels"] = top
    return _passed("forward", f"{len(pixels)} sample images classified (top labels: {', '.join(top)})")


def _check_latency(model: LoadedModel, artifact, device, report: dict) -> dict:
    crop = model.preprocessing.crop_size
    image = np.full((crop, crop, 3), 128, dtype=np.uint8)
    latency = {}
    for size in sorted({1, settings.CLASSIFIER_MAX_BATCH_SIZE}):
        batch = [image] * size
        times = []
        for _ in range(LATENCY_RUNS):
            started = time.perf_counter()
            model.run_batch(batch)
            times.append((time.perf_counter() - started) * 1000.0)
        latency[f"batch_{size}"] = round(statistics.median(times), 2)
    report["latency_ms"] = latency
    return _passed("latency", ", ".join(f"{key.replace('_', ' ')}: {value} ms" for key, value in latency.items()))


def _passed(name: str, detail: str) -> dict:
    return {"check": name, "passed": True, "detail": detail}


def _failed(name: str, detail: str) -> dict:
    return {"check": name, "passed": False, "detail": detail}


def _reason(exc: Exception) -> str:
    if isinstance(exc, ArtifactError):
        return str(exc)
    lines = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {lines[0][:300]}" if lines else type(exc).__name__


def _summarised(report: dict) -> dict:
    """Add the one-line ``summary`` an operator reads first."""
    failed = next((check for check in report["checks"] if not check["passed"]), None)
    report["summary"] = (
        f"Refused: {failed['check']} failed: {failed['detail']}."
        if failed
        else "Passed: " + "; ".join(f"{c['check']}: {c['detail']}" for c in report["checks"]) + "."
    )
    report["torch"] = torch.__version__
    return report
