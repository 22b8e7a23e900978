"""Engines run a model's network on a batch: NxHxWx3 uint8 pixels in, Nxclasses probabilities out.

Every engine follows one small protocol (``Engine``), so another (TensorRT, OpenVINO) is one more
class here. ``build_engine`` picks one from CLASSIFIER_ENGINE / CLASSIFIER_PRECISION:

- ``torch``: eager PyTorch in fp32, bf16 (autocast, on CPUs with bf16 support or on CUDA) or fp16
  (CUDA, channels-last);
- ``onnxruntime``: ONNX Runtime fp32. A torch network is exported to ONNX once, with the
  normalisation and the softmax inside the graph, and the export is cached on disk under the
  weights' fingerprint; an operator's own ``model.onnx`` runs as given.

``auto`` picks the fastest exact engine: on a CPU ONNX Runtime fp32 (about twice eager torch's
rate on the 2-core machines of docs/benchmarks.md), on CUDA torch fp16 channels-last.
"""

import hashlib
import io
import logging
import os
import tempfile
import warnings
from pathlib import Path
from typing import Protocol

import numpy as np
import torch

from .artifacts import Artifact, ArtifactError
from .preprocessing import Preprocessing

logger = logging.getLogger(__name__)

ENGINES = ("auto", "torch", "onnxruntime")
PRECISIONS = ("auto", "fp32", "bf16", "fp16")
EXPORT_FORMAT = "aiserver-onnx-1"  # bump when ServingGraph or the export options change
ONNX_OPSET = 17
# bf16 (autocast) is inexact: its largest probability difference from eager fp32 stays under this on the
# reference pictures (tests/runtime/test_engines.py); the benchmark reports top-1 agreement and the measured gap.
BF16_TOLERANCE = 0.05


class Engine(Protocol):
    name: str  # "torch", "onnxruntime"
    precision: str  # "fp32", "bf16", "fp16"
    exact: bool  # agrees with eager fp32 within 1e-4
    device: str

    def run(self, batch: np.ndarray) -> np.ndarray:
        """NxHxWx3 uint8 pixels in, Nxclasses float32 probabilities out."""


class ServingGraph(torch.nn.Module):
    """The network between uint8 NHWC pixels and probabilities: normalise as the weights' transform
    does (``(x / 255 - mean) / std``, in that order, so fp32 answers equal torchvision's), run the
    network, softmax in fp32."""

    def __init__(self, network: torch.nn.Module, preprocessing: Preprocessing):
        super().__init__()
        self.network = network
        self.register_buffer("mean", torch.tensor(preprocessing.mean).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor(preprocessing.std).view(1, 3, 1, 1))

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        batch = pixels.permute(0, 3, 1, 2).to(self.mean.dtype).div(255.0).sub(self.mean).div(self.std)
        if batch.is_cuda:
            batch = batch.contiguous(memory_format=torch.channels_last)
        return torch.softmax(self.network(batch).float(), dim=1)


class TorchEngine:
    name = "torch"

    def __init__(self, network: torch.nn.Module, preprocessing: Preprocessing, *, device: torch.device, precision: str):
        self.precision = precision
        self.exact = precision == "fp32"
        self._device = device
        graph = ServingGraph(network, preprocessing).eval()
        graph = graph.to(device=device, dtype=torch.float16 if precision == "fp16" else torch.float32)
        if device.type == "cuda":
            graph = graph.to(memory_format=torch.channels_last)
        self._graph = graph
        self.device = str(device)

    @torch.inference_mode()
    def run(self, batch: np.ndarray) -> np.ndarray:
        pixels = torch.from_numpy(batch).to(self._device, non_blocking=True)
        if self.precision == "bf16":
            with torch.autocast(self._device.type, dtype=torch.bfloat16):
                return self._graph(pixels).float().cpu().numpy()
        return self._graph(pixels).cpu().numpy()


class OnnxRuntimeEngine:
    """ONNX Runtime fp32. ``takes_pixels``: the graph is our export (uint8 pixels in, probabilities
    out); otherwise it is an operator's model (normalised NCHW float in, logits out)."""

    name = "onnxruntime"
    precision = "fp32"
    exact = True

    def __init__(
        self, graph: bytes, *, threads: int, takes_pixels: bool, preprocessing: Preprocessing, device: torch.device
    ):
        import onnxruntime

        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        options.execution_mode = onnxruntime.ExecutionMode.ORT_SEQUENTIAL
        options.graph_optimization_level = onnxruntime.GraphOptimizationLevel.ORT_ENABLE_ALL
        # Idle pool threads sleep instead of spinning, leaving the cores to request threads (as OMP_WAIT_POLICY).
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        options.log_severity_level = 3
        providers = ["CPUExecutionProvider"]
        if device.type == "cuda" and "CUDAExecutionProvider" in onnxruntime.get_available_providers():
            providers.insert(0, "CUDAExecutionProvider")
        try:
            self._session = onnxruntime.InferenceSession(graph, options, providers=providers)
        except Exception as exc:  # noqa: BLE001 - onnxruntime raises its own types for a bad graph
            raise ArtifactError(f"the ONNX graph does not load in onnxruntime ({_first_line(exc)})") from exc
        self.device = "cuda" if providers[0].startswith("CUDA") else "cpu"
        self._takes_pixels = takes_pixels
        self._input = self._check_input(preprocessing.crop_size)
        self._mean = np.asarray(preprocessing.mean, dtype=np.float32).reshape(1, 3, 1, 1)
        self._std = np.asarray(preprocessing.std, dtype=np.float32).reshape(1, 3, 1, 1)

    def _check_input(self, crop: int) -> str:
        inputs = self._session.get_inputs()
        if len(inputs) != 1:
            raise ArtifactError(f"the ONNX graph must take one input, not {len(inputs)}")
        shape = inputs[0].shape
        if len(shape) != 4:
            raise ArtifactError(f"the ONNX graph's input must be a 4-d NCHW batch (it has {len(shape)} dims)")
        if not self._takes_pixels:
            if inputs[0].type != "tensor(float)":
                raise ArtifactError(f"the ONNX graph's input must be float32 ({inputs[0].type})")
            if isinstance(shape[1], int) and shape[1] != 3:
                raise ArtifactError(f"the ONNX graph's input must have 3 channels in NCHW order (it has {shape[1]})")
            fixed = [size for size in shape[2:] if isinstance(size, int)]
            if any(size != crop for size in fixed):
                raise ArtifactError(
                    f"the ONNX graph takes {shape[2]}x{shape[3]} images but the preprocessing "
                    f"crops {crop}x{crop} (set crop in config.json)"
                )
        self._batch_limit = shape[0] if isinstance(shape[0], int) else None
        return inputs[0].name

    def run(self, batch: np.ndarray) -> np.ndarray:
        if self._batch_limit is not None and len(batch) > self._batch_limit:
            limit = self._batch_limit
            return np.concatenate([self.run(batch[start : start + limit]) for start in range(0, len(batch), limit)])
        if self._takes_pixels:
            return self._session.run(None, {self._input: batch})[0]
        normalised = (batch.transpose(0, 3, 1, 2).astype(np.float32) / np.float32(255.0) - self._mean) / self._std
        logits = self._session.run(None, {self._input: np.ascontiguousarray(normalised)})[0].astype(np.float32)
        shifted = np.exp(logits - logits.max(axis=1, keepdims=True))
        return shifted / shifted.sum(axis=1, keepdims=True)


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def bf16_supported(device: torch.device) -> bool:
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())


def onnxruntime_available() -> bool:
    try:
        import onnxruntime  # noqa: F401
    except ImportError:
        return False
    return True


def build_engine(
    artifact: Artifact,
    *,
    device: torch.device,
    engine: str,
    precision: str,
    threads: int,
    cache_dir: Path | None,
) -> Engine:
    """The engine for ``artifact`` under the CLASSIFIER_ENGINE/PRECISION choice; ArtifactError when the
    choice cannot serve it (the message says why)."""
    if artifact.kind == "onnx":
        if engine == "torch":
            raise ArtifactError("an ONNX model runs on onnxruntime; CLASSIFIER_ENGINE=torch cannot serve it")
        if precision not in ("auto", "fp32"):
            raise ArtifactError(f"an ONNX model is served in fp32; CLASSIFIER_PRECISION={precision} cannot serve it")
        return OnnxRuntimeEngine(
            artifact.onnx, threads=threads, takes_pixels=False, preprocessing=artifact.preprocessing, device=device
        )
    if precision == "auto":
        precision = "fp16" if device.type == "cuda" else "fp32"
    if precision == "fp16" and device.type != "cuda":
        raise ArtifactError("fp16 needs a CUDA device; on a CPU use fp32 or bf16")
    if precision == "bf16" and not bf16_supported(device):
        raise ArtifactError("this machine has no bf16 support; use fp32")
    if engine == "onnxruntime" and precision != "fp32":
        raise ArtifactError(
            f"onnxruntime serves fp32 here; CLASSIFIER_PRECISION={precision} needs CLASSIFIER_ENGINE=torch"
        )
    wants_onnxruntime = engine == "onnxruntime" or (
        engine == "auto" and device.type == "cpu" and precision == "fp32" and onnxruntime_available()
    )
    if not wants_onnxruntime:
        return TorchEngine(artifact.module, artifact.preprocessing, device=device, precision=precision)
    try:
        graph = export_onnx(artifact, cache_dir=cache_dir)
        return OnnxRuntimeEngine(
            graph,
            threads=threads,
            takes_pixels=_exports_pixels(artifact),
            preprocessing=artifact.preprocessing,
            device=device,
        )
    except Exception as exc:  # noqa: BLE001 - auto falls back to the engine that always works
        if engine == "onnxruntime":
            raise ArtifactError(f"the model could not be exported to ONNX ({_first_line(exc)})") from exc
        logger.warning("ONNX export failed (%s); serving with torch", _first_line(exc))
        return TorchEngine(artifact.module, artifact.preprocessing, device=device, precision=precision)


def export_onnx(artifact: Artifact, *, cache_dir: Path | None) -> bytes:
    """The artifact's ServingGraph as ONNX (dynamic batch), from the cache when this export was made before."""
    cache_path = _cache_path(artifact, cache_dir)
    if cache_path is not None and cache_path.is_file():
        logger.info("ONNX export reused from the cache (%s)", cache_path.name)
        return cache_path.read_bytes()
    crop = artifact.preprocessing.crop_size
    if _exports_pixels(artifact):
        graph, example = (
            ServingGraph(artifact.module, artifact.preprocessing).eval(),
            torch.zeros(1, crop, crop, 3, dtype=torch.uint8),
        )
    else:
        graph, example = artifact.module, torch.zeros(1, 3, crop, crop)
    buffer = io.BytesIO()
    with warnings.catch_warnings(), torch.inference_mode(False), torch.no_grad():
        warnings.simplefilter("ignore")  # the TorchScript-based exporter's deprecation notice
        torch.onnx.export(
            graph,
            (example,),
            buffer,
            dynamo=False,
            input_names=["input"],
            output_names=["output"],
            opset_version=ONNX_OPSET,
            dynamic_axes={"input": {0: "batch"}, "output": {0: "batch"}},
        )
    data = buffer.getvalue()
    if cache_path is not None:
        _write_atomically(cache_path, data)
    return data


def _exports_pixels(artifact: Artifact) -> bool:
    """Whether the export holds the whole ServingGraph (pixels in, probabilities out). A TorchScript module
    cannot be traced inside another module, so it is exported alone (normalised NCHW in, logits out)."""
    return artifact.kind != "torchscript"


def _cache_path(artifact: Artifact, cache_dir: Path | None) -> Path | None:
    """Where this export is cached: a name from the weights' fingerprint, the preprocessing, the export
    format and torch's version. None for random weights (each process draws its own) or no cache."""
    if cache_dir is None or artifact.fingerprint is None:
        return None
    key = "|".join([EXPORT_FORMAT, torch.__version__, artifact.fingerprint, repr(artifact.preprocessing)])
    return cache_dir / f"{hashlib.sha256(key.encode()).hexdigest()[:32]}.onnx"


def _write_atomically(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` so that no reader (another worker starting) sees half a file."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=path.parent, suffix=".tmp", delete=False) as handle:
            handle.write(data)
        os.replace(handle.name, path)
    except OSError as exc:
        logger.warning("could not cache the ONNX export (%s); the next start exports again", exc)


def _first_line(exc: Exception) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0][:300]}" if text else type(exc).__name__
