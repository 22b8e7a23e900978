"""Engines run a model's network on a batch: NxHxWx3 uint8 pixels in, Nxclasses probabilities out.

Every engine follows one small protocol (``Engine``), so another (TensorRT, OpenVINO) is one more class.
This module is torch-free: a serving process runs compiled artifacts on ONNX Runtime without importing torch.
Eager torch (``torch_engines.TorchEngine``) is imported only when CLASSIFIER_ENGINE=torch, a reduced
precision or a GPU asks for it. ``plan_engine`` decides which, from the choice and the machine, without
loading anything:

- ``onnxruntime``: ONNX Runtime fp32. A torch network is compiled once to ONNX (``compiler.py``), with the
  normalisation and the softmax inside the graph; an operator's own ``model.onnx`` runs as given.
- ``torch``: eager PyTorch in fp32, bf16 (autocast, on CPUs with bf16 support or on CUDA) or fp16 (CUDA).

``auto`` picks the fastest exact engine: on a CPU ONNX Runtime or OpenVINO fp32, whichever the compile measured
faster with the batch workers' concurrent callers (both about twice eager torch's rate on the 2-core machines of
docs/benchmarks.md), on CUDA torch fp16 channels-last.
"""

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np

from .errors import ArtifactError, first_line
from .kinds import EngineKind, Precision
from .preprocessing import RESCALE_255, Preprocessing
from .sources import ModelSource

logger = logging.getLogger(__name__)

# bf16 (autocast) is inexact: its largest probability difference from eager fp32 stays under this on the
# reference pictures (tests/runtime/test_engines.py); the benchmark reports top-1 agreement and the measured gap.
BF16_TOLERANCE = 0.05
AGREEMENT_TOLERANCE = 1e-4  # an exact engine's largest probability difference from eager fp32


class Engine(Protocol):
    @property
    def name(self) -> str: ...  # an EngineKind

    @property
    def precision(self) -> str: ...  # a Precision

    @property
    def exact(self) -> bool: ...  # agrees with eager fp32 within AGREEMENT_TOLERANCE

    @property
    def device(self) -> str: ...

    def run(self, batch: np.ndarray) -> np.ndarray:
        """NxHxWx3 uint8 pixels in, Nxclasses float32 probabilities out."""


class OnnxRuntimeEngine:
    """ONNX Runtime fp32. ``takes_pixels``: the graph is our export (uint8 pixels in, probabilities
    out); otherwise it is an operator's model (normalised NCHW float in, logits out)."""

    name = EngineKind.ONNXRUNTIME
    precision = Precision.FP32
    exact = True

    def __init__(
        self, graph: bytes, *, threads: int, takes_pixels: bool, preprocessing: Preprocessing, device: str = "cpu"
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
        if device.startswith("cuda") and "CUDAExecutionProvider" in onnxruntime.get_available_providers():
            providers.insert(0, "CUDAExecutionProvider")
        try:
            self._session = onnxruntime.InferenceSession(graph, options, providers=providers)
        except Exception as exc:  # noqa: BLE001 - onnxruntime raises its own types for a bad graph
            raise ArtifactError(f"the ONNX graph does not load in onnxruntime ({first_line(exc)})") from exc
        self.device = "cuda" if providers[0].startswith("CUDA") else "cpu"
        self._takes_pixels = takes_pixels
        self._input = self._check_input(preprocessing.crop_size)
        self._mean = np.asarray(preprocessing.mean, dtype=np.float32).reshape(1, 3, 1, 1)
        self._std = np.asarray(preprocessing.std, dtype=np.float32).reshape(1, 3, 1, 1)
        self._divisor = np.float32(255.0 if preprocessing.rescale == RESCALE_255 else 1.0 / preprocessing.rescale)

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
        normalised = (batch.transpose(0, 3, 1, 2).astype(np.float32) / self._divisor - self._mean) / self._std
        logits = self._session.run(None, {self._input: np.ascontiguousarray(normalised)})[0].astype(np.float32)
        shifted = np.exp(logits - logits.max(axis=1, keepdims=True))
        return shifted / shifted.sum(axis=1, keepdims=True)


def onnxruntime_available() -> bool:
    try:
        import onnxruntime  # noqa: F401
    except ImportError:
        return False
    return True


def cuda_present() -> bool:
    """Whether this machine has an NVIDIA driver loaded (checked without importing torch)."""
    return Path("/proc/driver/nvidia/version").exists()


def resolve_device_name(name: str) -> str:
    """CLASSIFIER_DEVICE as a device name: ``auto`` is ``cuda`` when a GPU is present and torch sees it."""
    if name != "auto":
        return name
    if cuda_present():
        import torch

        return "cuda" if torch.cuda.is_available() else "cpu"
    return "cpu"


@dataclass(frozen=True)
class EnginePlan:
    """What serves a source: a compiled ONNX Runtime artifact, or eager torch built in the process."""

    engine: EngineKind
    precision: Precision
    device: str
    fallback: bool = False  # ``auto``'s choice: eager torch may serve if compiling fails

    @property
    def compiled(self) -> bool:
        return self.engine in (EngineKind.ONNXRUNTIME, EngineKind.OPENVINO)


def source_is_onnx(source: ModelSource) -> bool:
    return source.folder is not None and (source.folder / "model.onnx").is_file()


def plan_engine(source: ModelSource, *, engine: str, precision: str, device: str) -> EnginePlan:
    """The engine for ``source`` under the CLASSIFIER_ENGINE/PRECISION choice on ``device``; ArtifactError when
    the choice cannot serve it (the message says why). Loads nothing."""
    device = resolve_device_name(device)
    on_cuda = device.startswith("cuda")
    if source_is_onnx(source):
        if engine == EngineKind.TORCH:
            raise ArtifactError("an ONNX model runs on onnxruntime; CLASSIFIER_ENGINE=torch cannot serve it")
        if precision not in (Precision.AUTO, Precision.FP32):
            raise ArtifactError(f"an ONNX model is served in fp32; CLASSIFIER_PRECISION={precision} cannot serve it")
        return EnginePlan(EngineKind.ONNXRUNTIME, Precision.FP32, device)
    if engine == EngineKind.OPENVINO or precision == Precision.INT8:
        return _openvino_plan(precision)
    if precision == Precision.AUTO:
        precision = Precision.FP16 if on_cuda else Precision.FP32
    if precision == Precision.FP16 and not on_cuda:
        raise ArtifactError("fp16 needs a CUDA device; on a CPU use fp32 or bf16")
    if engine == EngineKind.ONNXRUNTIME and precision != Precision.FP32:
        raise ArtifactError(
            f"onnxruntime serves fp32 here; CLASSIFIER_PRECISION={precision} needs CLASSIFIER_ENGINE=torch"
        )
    if engine == EngineKind.ONNXRUNTIME or (
        engine == EngineKind.AUTO and not on_cuda and precision == Precision.FP32 and onnxruntime_available()
    ):
        return EnginePlan(EngineKind.ONNXRUNTIME, Precision.FP32, device, fallback=engine == EngineKind.AUTO)
    return EnginePlan(EngineKind.TORCH, Precision(precision), device)


def _openvino_plan(precision: str) -> EnginePlan:
    from . import openvino_engine

    if not openvino_engine.available():
        raise ArtifactError("OpenVINO is not installed here (pip install openvino); use onnxruntime or torch")
    precision = Precision.FP32 if precision == Precision.AUTO else Precision(precision)
    if precision == Precision.FP16:
        raise ArtifactError("OpenVINO serves fp32, bf16 or int8 on a CPU; fp16 needs CUDA and torch")
    return EnginePlan(EngineKind.OPENVINO, precision, "cpu")
