"""The validation gate's checks of one model folder, run in the sandboxed compiling child (``sandbox.py``) so that
a model that crashes, hangs, eats memory or runs code cannot hurt the server.

``gate`` compiles the folder and answers its compiled artifact with a report (JSON-ready): whether it passed
and, per check, what was seen:

- ``loads``: the files load and compile to the engine's artifact, which agrees with eager torch;
- ``labels``: the model's output count equals the number of labels;
- ``forward``: generated sample images go through decode, preprocessing and the engine, giving
  finite probabilities that sum to 1 (and, for an exact engine other than eager torch, agree with it);
- ``latency``: the median time of a forward pass at batch size 1 and at CLASSIFIER_MAX_BATCH_SIZE.
"""

import io
import statistics
import time

import numpy as np
from PIL import Image

from . import preprocessing as pipeline
from .compiler import compile_source
from .config import CompileOptions
from .engines import Engine, EnginePlan
from .errors import ArtifactError, first_line
from .sources import ModelSource

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


def gate(
    source: ModelSource, *, plan: EnginePlan, threads: int, settings: dict, options: CompileOptions | None = None
) -> tuple[dict, dict, dict]:
    """Compile ``source`` and run every check on it: (the artifact's files, its manifest, the report). A refused
    model has no files; the report says what passed, what failed and why."""
    Image.MAX_IMAGE_PIXELS = settings["max_image_pixels"] * 2
    checks: list[dict] = []
    report: dict = {"passed": False, "checks": checks}
    try:
        if plan.compiled:
            files, manifest, engine = compile_source(
                source,
                plan=plan,
                threads=threads,
                max_batch_size=settings["max_batch_size"],
                check_labels=False,
                options=options,
            )
        else:  # eager torch has nothing to compile: check the model as it will serve
            files, manifest, engine = _eager(source, plan)
    except Exception as exc:  # noqa: BLE001 - whatever fails, the report says so
        checks.append(_failed("loads", _reason(exc)))
        return {}, {}, _summarised(report)
    labels, spec = manifest["labels"], pipeline.Preprocessing.from_dict(manifest["preprocessing"])
    report.update(
        kind=manifest["kind"],
        engine=str(engine.name),
        precision=str(engine.precision),
        device=engine.device,
        num_labels=len(labels),
        input_size=spec.crop_size,
        preprocessing=spec.describe(),
        agreement=manifest["report"]["agreement"],
        **{key: manifest["report"][key] for key in ("fast_mode", "engine_choice") if key in manifest["report"]},
    )
    checks.append(
        _passed(
            "loads",
            f"{manifest['kind']} compiled for {engine.name} {engine.precision} ({engine.device})"
            + _fast_mode_line(manifest["report"].get("fast_mode")),
        )
    )
    for check in (_check_labels, _check_forward, _check_latency):
        try:
            result = check(engine, labels, spec, settings, report)
        except Exception as exc:  # noqa: BLE001
            result = _failed(check.__name__.removeprefix("_check_"), _reason(exc))
        checks.append(result)
        if not result["passed"]:
            break
    report["passed"] = len(checks) == 4 and all(check["passed"] for check in checks)
    if not report["passed"]:
        return {}, {}, _summarised(report)
    return files, {**manifest, "report": {**manifest["report"], "gate": _summarised(report)["summary"]}}, report


def _fast_mode_line(fast: dict | None) -> str:
    """A fast mode's measurement as the operator reads it in the admin: agreement with fp32 and the speed-up."""
    if not fast:
        return ""
    agreement, precision = fast["agreement"], fast["precision"]
    return (
        f"; {precision} agrees with fp32 on {agreement['top1']:.1%} of top-1 answers and {agreement['top5_overlap']:.1%}"
        f" of the top 5 (largest confidence difference {agreement['max_confidence_difference']:.3g}) on "
        f"{fast['images']}; {fast[f'{precision}_images_per_s']} images/s against fp32's {fast['fp32_images_per_s']}"
    )


def _eager(source: ModelSource, plan: EnginePlan) -> tuple[dict, dict, Engine]:
    from .compiler import eager_engine

    artifact, engine = eager_engine(source, plan=plan)
    manifest: dict = {
        "kind": artifact.kind,
        "labels": artifact.labels,
        "preprocessing": artifact.preprocessing.to_dict(),
        "report": {"agreement": {"reference": "eager torch is the reference", "max_difference": 0.0}},
    }
    return {}, manifest, engine


def _check_labels(engine: Engine, labels: list[str], spec, settings: dict, report: dict) -> dict:
    crop = spec.crop_size
    rows = engine.run(np.zeros((1, crop, crop, 3), dtype=np.uint8))
    outputs = rows.shape[1] if rows.ndim == 2 else None
    report["outputs"] = outputs
    if outputs != len(labels):
        return _failed(
            "labels",
            f"the model gives {outputs if outputs is not None else rows.shape} outputs but "
            f"labels.json has {len(labels)} labels",
        )
    return _passed("labels", f"{outputs} outputs, {len(labels)} labels")


def _check_forward(engine: Engine, labels: list[str], spec, settings: dict, report: dict) -> dict:
    pixels = [
        pipeline.preprocess(pipeline.decode(data, max_pixels=settings["max_image_pixels"]), spec)
        for data in sample_images()
    ]
    rows = engine.run(np.stack(pixels))
    if not np.all(np.isfinite(rows)):
        return _failed("forward", "the model's answers to the sample images are not all finite numbers")
    sums = rows.sum(axis=1)
    if np.abs(sums - 1.0).max() > PROBABILITY_TOLERANCE or rows.min() < 0:
        return _failed("forward", f"the answers are not probabilities (row sums {sums.min():.4g}..{sums.max():.4g})")
    top = [labels[int(index)] for index in rows.argmax(axis=1)]
    report["sample_top_labels"] = top
    return _passed("forward", f"{len(pixels)} sample images classified (top labels: {', '.join(top)})")


def _check_latency(engine: Engine, labels: list[str], spec, settings: dict, report: dict) -> dict:
    crop = spec.crop_size
    image = np.full((crop, crop, 3), 128, dtype=np.uint8)
    latency = {}
    for size in sorted({1, settings["max_batch_size"]}):
        batch = np.stack([image] * size)
        times = []
        for _ in range(LATENCY_RUNS):
            started = time.perf_counter()
            engine.run(batch)
            times.append((time.perf_counter() - started) * 1000.0)
        latency[f"batch_{size}"] = round(statistics.median(times), 2)
    report["latency_ms"] = latency
    return _passed("latency", ", ".join(f"{key.replace('_', ' ')}: {value} ms" for key, value in latency.items()))


def _passed(name: str, detail: str) -> dict:
    return {"check": name, "passed": True, "detail": detail}


def _failed(name: str, detail: str) -> dict:
    return {"check": name, "passed": False, "detail": detail}


def _reason(exc: Exception) -> str:
    return str(exc) if isinstance(exc, ArtifactError) else first_line(exc)


def _summarised(report: dict) -> dict:
    """Add the one-line ``summary`` an operator reads first."""
    failed = next((check for check in report["checks"] if not check["passed"]), None)
    report["summary"] = (
        f"Refused: {failed['check']} failed: {failed['detail']}."
        if failed
        else "Passed: " + "; ".join(f"{c['check']}: {c['detail']}" for c in report["checks"]) + "."
    )
    return report
