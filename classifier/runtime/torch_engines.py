"""Eager torch: the reference every compiled engine is checked against, the engine for reduced precisions and
GPUs, and the export to ONNX. Imported only to compile, or when eager torch serves (never by a process that
serves compiled artifacts)."""

import io
import warnings

import numpy as np
import torch

from .artifacts import Artifact
from .kinds import EngineKind, Precision
from .preprocessing import RESCALE_255, Preprocessing

ONNX_OPSET = 17


class ServingGraph(torch.nn.Module):
    """The network between uint8 NHWC pixels and probabilities: normalise as the weights' transform
    does (``(x / 255 - mean) / std``, in that order, so fp32 answers equal torchvision's; ``x * rescale``
    for another rescale factor), run the network, softmax in fp32."""

    mean: torch.Tensor
    std: torch.Tensor

    def __init__(self, network: torch.nn.Module, preprocessing: Preprocessing):
        super().__init__()
        self.network = network
        self.register_buffer("mean", torch.tensor(preprocessing.mean).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor(preprocessing.std).view(1, 3, 1, 1))
        self.divisor = 255.0 if preprocessing.rescale == RESCALE_255 else 1.0 / preprocessing.rescale

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        batch = pixels.permute(0, 3, 1, 2).to(self.mean.dtype).div(self.divisor).sub(self.mean).div(self.std)
        if batch.is_cuda:
            batch = batch.contiguous(memory_format=torch.channels_last)
        return torch.softmax(self.network(batch).float(), dim=1)


class TorchEngine:
    name = EngineKind.TORCH

    def __init__(self, network: torch.nn.Module, preprocessing: Preprocessing, *, device: str, precision: str):
        self.precision = Precision(precision)
        self.exact = self.precision == Precision.FP32
        self._device = torch.device(device)
        graph = ServingGraph(network, preprocessing).eval()
        graph = graph.to(device=self._device, dtype=torch.float16 if precision == Precision.FP16 else torch.float32)
        if self._device.type == "cuda":
            graph = graph.to(memory_format=torch.channels_last)
        self._graph = graph
        self.device = str(self._device)

    @torch.inference_mode()
    def run(self, batch: np.ndarray) -> np.ndarray:
        pixels = torch.from_numpy(batch).to(self._device, non_blocking=True)
        if self.precision == Precision.BF16:
            with torch.autocast(self._device.type, dtype=torch.bfloat16):
                return self._graph(pixels).float().cpu().numpy()
        return self._graph(pixels).cpu().numpy()


def bf16_supported(device: "str | torch.device") -> bool:
    if str(device).startswith("cuda"):
        return torch.cuda.is_bf16_supported()
    return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())


def exports_pixels(artifact: Artifact) -> bool:
    """Whether the export holds the whole ServingGraph (pixels in, probabilities out). A TorchScript module
    cannot be traced inside another module, so it is exported alone (normalised NCHW in, logits out)."""
    return artifact.kind != "torchscript"


def export_onnx(artifact: Artifact) -> bytes:
    """The artifact's ServingGraph as ONNX (dynamic batch)."""
    crop = artifact.preprocessing.crop_size
    assert artifact.module is not None, "only a torch network is exported"
    graph: torch.nn.Module
    if exports_pixels(artifact):
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
            buffer,  # type: ignore[arg-type]  # a file object is accepted, as documented
            dynamo=False,
            input_names=["input"],
            output_names=["output"],
            opset_version=ONNX_OPSET,
            dynamic_axes={"input": {0: "batch"}, "output": {0: "batch"}},
        )
    return buffer.getvalue()


def resolve_device(name: str) -> torch.device:
    """CLASSIFIER_DEVICE as a torch device (``auto``: CUDA when torch sees it)."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)
