"""Compile a model source once into its compiled artifact: load it with its library (torch, torchvision),
export it to ONNX with the normalisation and the softmax inside, check the compiled engine against eager torch
and write down what serving needs. torch is imported here and only here, in the compiling (sandboxed) process.
"""

import time
from pathlib import Path

import numpy as np

from . import preprocessing as pipeline
from .artifacts import Artifact, load_artifact
from .config import CompileOptions
from .engines import AGREEMENT_TOLERANCE, Engine, EnginePlan, OnnxRuntimeEngine
from .errors import ArtifactError, ExportFailed, first_line
from .kinds import ArtifactKind, EngineKind, Precision
from .measure import measure_agreement, measure_throughput
from .preprocessing import Preprocessing
from .sources import ModelSource
from .store import library_versions
from .torch_engines import TorchEngine, export_onnx, exports_pixels

GRAPH_FILE = "model.onnx"
CALIBRATION_FOLDER = "calibration"  # a model folder's own images, for int8 and for measuring any fast mode
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp", ".bmp", ".gif", ".tif", ".tiff")
RACE_SECONDS = 1.0  # how long each exact engine runs per turn when ``auto`` measures them
RACE_ROUNDS = 2  # turns each


def compile_source(
    source: ModelSource,
    *,
    plan: EnginePlan,
    threads: int,
    max_batch_size: int,
    check_labels: bool = True,
    options: CompileOptions | None = None,
) -> tuple[dict[str, bytes], dict, Engine]:
    """``source`` compiled for ``plan``: the artifact's files, its manifest, and the engine built from them (the
    gate checks it further, the labels included: ``check_labels=False`` leaves that to it). Raises
    ArtifactError, safe to show, when the model cannot serve."""
    started = time.perf_counter()
    artifact = load_artifact(source)
    if artifact.kind == "onnx":
        graph, takes_pixels = artifact.onnx, False
    else:
        try:
            graph, takes_pixels = export_onnx(artifact), exports_pixels(artifact)
        except Exception as exc:  # noqa: BLE001 - any exporter failure means "cannot compile"
            raise ExportFailed(f"the model could not be exported to ONNX ({first_line(exc)})") from exc
    assert graph is not None
    engine = OnnxRuntimeEngine(
        graph, threads=threads, takes_pixels=takes_pixels, preprocessing=artifact.preprocessing, device=plan.device
    )
    report = check_engine(engine, artifact, max_batch_size=max_batch_size, check_labels=check_labels)
    files: dict[str, bytes] = {GRAPH_FILE: graph}
    served: Engine = engine
    options = options or CompileOptions()
    if plan.engine == EngineKind.OPENVINO:
        served, files, fast = _openvino(graph, engine, source, artifact.preprocessing, plan, threads, options)
        report.update(fast)
    elif plan.fallback and options.race_engines and takes_pixels:
        served, choice = _fastest_exact(graph, engine, artifact, threads, options.callers)
        report["engine_choice"] = choice
    manifest = {
        "kind": artifact.kind,
        "labels": artifact.labels,
        "preprocessing": artifact.preprocessing.to_dict(),
        "pretrained": artifact.pretrained,
        "fingerprint": artifact.fingerprint,
        "engine": str(served.name),
        "precision": str(served.precision),
        "exact": bool(served.exact),
        "takes_pixels": takes_pixels,
        "graph": next(iter(files)),
        "source": source.described,
        "report": {**report, "compile_seconds": round(time.perf_counter() - started, 2)},
        "versions": library_versions(),
    }
    return files, manifest, served


def check_engine(
    engine: OnnxRuntimeEngine, artifact: Artifact, *, max_batch_size: int, check_labels: bool = True
) -> dict:
    """Run every batch size the batcher will use once, check the output size against the labels and the compiled
    engine's agreement with eager torch fp32; return the agreement report."""
    crop = artifact.preprocessing.crop_size
    sample = np.random.default_rng(0).integers(0, 256, size=(2, crop, crop, 3), dtype=np.uint8)
    for size in sorted({1, max_batch_size}):
        rows = engine.run(np.stack([sample[index % 2] for index in range(size)]))
    if check_labels and (rows.ndim != 2 or rows.shape[1] != len(artifact.labels)):
        outputs = rows.shape[1] if rows.ndim == 2 else rows.shape
        raise ArtifactError(f"the model gives {outputs} outputs but there are {len(artifact.labels)} labels")
    if artifact.module is None:  # an operator's ONNX graph: it is its own reference
        return {"agreement": {"reference": "the model's own ONNX graph", "max_difference": 0.0}}
    reference = TorchEngine(artifact.module, artifact.preprocessing, device="cpu", precision="fp32")
    difference = float(np.abs(reference.run(sample) - engine.run(sample)).max())
    if difference > AGREEMENT_TOLERANCE:
        raise ArtifactError(
            f"the {engine.name} engine differs from torch by {difference:.2g} on this model; set CLASSIFIER_ENGINE=torch"
        )
    return {
        "agreement": {
            "reference": f"eager torch fp32 ({artifact.kind}'s own model)"
            if artifact.kind in (ArtifactKind.TIMM, ArtifactKind.TRANSFORMERS)
            else "eager torch fp32",
            "max_difference": difference,
            "tolerance": AGREEMENT_TOLERANCE,
            "images": len(sample),
        }
    }


def eager_engine(source: ModelSource, *, plan: EnginePlan) -> tuple[Artifact, TorchEngine]:
    """``source`` on eager torch in this process (CLASSIFIER_ENGINE=torch, bf16, fp16, CUDA): nothing to compile."""
    from .torch_engines import bf16_supported

    if plan.precision == "bf16" and not bf16_supported(plan.device):
        raise ArtifactError("this machine has no bf16 support; use fp32")
    artifact = load_artifact(source)
    if artifact.module is None:
        raise ArtifactError("an ONNX model runs on onnxruntime; CLASSIFIER_ENGINE=torch cannot serve it")
    return artifact, TorchEngine(artifact.module, artifact.preprocessing, device=plan.device, precision=plan.precision)


def calibration_pixels(
    folder: Path | None, spec: Preprocessing, options: CompileOptions
) -> tuple[np.ndarray | None, str]:
    """The model folder's calibration images, decoded and preprocessed as serving does (NHWC uint8), and where
    they came from; (None, ...) when the folder has none."""
    images = sorted(
        path
        for path in (
            (folder / CALIBRATION_FOLDER).iterdir() if folder and (folder / CALIBRATION_FOLDER).is_dir() else []
        )
        if path.suffix.lower() in IMAGE_SUFFIXES and path.is_file()
    )[: options.max_calibration_images]
    pixels = []
    for path in images:
        try:
            pixels.append(
                pipeline.preprocess(pipeline.decode(path.read_bytes(), max_pixels=options.max_image_pixels), spec)
            )
        except Exception:  # noqa: BLE001 - an unreadable calibration image is skipped, not fatal
            continue
    if not pixels:
        return None, "none"
    return np.stack(pixels), f"{len(pixels)} images of the folder's calibration/"


def _generated_pixels(spec: Preprocessing) -> np.ndarray:
    from .validation import sample_images

    return np.stack([pipeline.preprocess(pipeline.decode(data, max_pixels=10**8), spec) for data in sample_images()])


def _batches(pixels: np.ndarray, size: int = 8) -> list[np.ndarray]:
    return [pixels[start : start + size] for start in range(0, len(pixels), size)]


def _openvino(
    graph: bytes,
    exact: OnnxRuntimeEngine,
    source: ModelSource,
    spec: Preprocessing,
    plan: EnginePlan,
    threads: int,
    options: CompileOptions,
) -> tuple[Engine, dict[str, bytes], dict]:
    """OpenVINO at ``plan.precision``: fp32 is exact (checked against eager torch like any exact engine); bf16 and
    int8 are fast modes, measured against the exact engine on the operator's own images and refused below
    ``min_top1_agreement``."""
    from .openvino_engine import OpenVinoEngine, OpenVinoError, compile_int8, ir_files

    precision, streams = str(plan.precision), options.callers
    try:
        if plan.precision == Precision.FP32:
            return (
                OpenVinoEngine.from_onnx(graph, precision="fp32", threads=threads, streams=streams),
                {GRAPH_FILE: graph},
                {},
            )
        pixels, origin = calibration_pixels(source.folder, spec, options)
        if plan.precision == Precision.INT8:
            if pixels is None:
                raise ArtifactError(
                    "int8 needs calibration images: put a few dozen to a few hundred of your own pictures in the "
                    "model folder's calibration/ folder"
                )
            xml, weights = compile_int8(graph, _batches(pixels))
            fast, files = (
                OpenVinoEngine.from_ir(xml, weights, precision="int8", threads=threads, streams=streams),
                ir_files(xml, weights),
            )
        else:
            if pixels is None:
                pixels, origin = _generated_pixels(spec), "the gate's generated pictures (no calibration/ folder)"
            fast = OpenVinoEngine.from_onnx(graph, precision=precision, threads=threads, streams=streams)
            files = {GRAPH_FILE: graph}
    except OpenVinoError as exc:
        raise ArtifactError(str(exc)) from exc
    measured = measure_agreement(fast, exact, _batches(pixels))
    batch = pixels[: min(len(pixels), 8)]
    speeds = {
        f"{name}_images_per_s": round(
            measure_throughput(engine, batch, seconds=RACE_SECONDS, concurrency=streams).images_per_s, 1
        )
        for name, engine in (("fp32", exact), (precision, fast))
    }
    fast_mode = {
        "precision": precision,
        "images": origin,
        "agreement": measured.as_dict(),
        "min_top1_agreement": options.min_top1_agreement,
        **speeds,
        "callers": streams,  # the speeds' concurrent callers (the batch workers), as the version serves
    }
    if measured.top1 < options.min_top1_agreement:
        raise ArtifactError(
            f"{precision} agrees with fp32 on {measured.top1:.1%} of top-1 answers ({origin}), below "
            f"CLASSIFIER_MIN_TOP1_AGREEMENT ({options.min_top1_agreement:.1%}); largest confidence difference "
            f"{measured.max_confidence_difference:.3g}"
        )
    return fast, files, {"fast_mode": fast_mode}


def _fastest_exact(
    graph: bytes, exact: OnnxRuntimeEngine, artifact: Artifact, threads: int, callers: int
) -> tuple[Engine, dict]:
    """``auto`` on a CPU: ONNX Runtime and OpenVINO fp32 (both exact) measured on this machine as they serve
    (``callers`` concurrent callers, OpenVINO with a stream each); the one with less CPU per image serves."""
    from . import openvino_engine

    if not openvino_engine.available():
        return exact, {"chosen": "onnxruntime", "measured": {}, "callers": callers}
    crop = artifact.preprocessing.crop_size
    batch = np.random.default_rng(1).integers(0, 256, size=(4, crop, crop, 3), dtype=np.uint8)
    candidate = openvino_engine.OpenVinoEngine.from_onnx(graph, precision="fp32", threads=threads, streams=callers)
    if float(np.abs(candidate.run(batch) - exact.run(batch)).max()) > AGREEMENT_TOLERANCE:
        return exact, {"chosen": "onnxruntime", "measured": {}, "callers": callers}
    measured = {str(engine.name): 0.0 for engine in (exact, candidate)}
    cpu = {str(engine.name): float("inf") for engine in (exact, candidate)}
    for _ in range(RACE_ROUNDS):  # in turns, the best of each: a shared machine's noise hits both alike
        for engine in (exact, candidate):
            run = measure_throughput(engine, batch, seconds=RACE_SECONDS, concurrency=callers)
            measured[str(engine.name)] = max(measured[str(engine.name)], round(run.images_per_s, 1))
            cpu[str(engine.name)] = min(cpu[str(engine.name)], round(run.cpu_ms_per_image, 2))
    # The one that costs less CPU per image: a served request's other work (decoding, the request path) needs
    # the cores too, and CPU time holds still where the rate moves with whatever else the machine runs.
    chosen = candidate if cpu["openvino"] < cpu["onnxruntime"] else exact
    return chosen, {"chosen": str(chosen.name), "measured": measured, "cpu_ms_per_image": cpu, "callers": callers}
