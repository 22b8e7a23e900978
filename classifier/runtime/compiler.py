"""Compile a model source once into its compiled artifact: load it with its library (torch, torchvision),
export it to ONNX with the normalisation and the softmax inside, check the compiled engine against eager torch
and write down what serving needs. torch is imported here and only here, in the compiling (sandboxed) process.
"""

import time

import numpy as np

from .artifacts import Artifact, load_artifact
from .engines import AGREEMENT_TOLERANCE, EnginePlan, OnnxRuntimeEngine
from .errors import ArtifactError, ExportFailed, first_line
from .sources import ModelSource
from .store import library_versions
from .torch_engines import TorchEngine, export_onnx, exports_pixels

GRAPH_FILE = "model.onnx"


def compile_source(
    source: ModelSource, *, plan: EnginePlan, threads: int, max_batch_size: int, check_labels: bool = True
) -> tuple[dict[str, bytes], dict, OnnxRuntimeEngine]:
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
    manifest = {
        "kind": artifact.kind,
        "labels": artifact.labels,
        "preprocessing": artifact.preprocessing.to_dict(),
        "pretrained": artifact.pretrained,
        "fingerprint": artifact.fingerprint,
        "engine": str(engine.name),
        "precision": str(engine.precision),
        "exact": True,
        "takes_pixels": takes_pixels,
        "graph": GRAPH_FILE,
        "source": source.described,
        "report": {**report, "compile_seconds": round(time.perf_counter() - started, 2)},
        "versions": library_versions(),
    }
    return {GRAPH_FILE: graph}, manifest, engine


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
            "reference": "eager torch fp32",
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
