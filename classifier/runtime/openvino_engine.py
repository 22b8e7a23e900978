"""OpenVINO: the runtime's ONNX graph on Intel's CPU runtime, in fp32 (exact), bf16 or int8.

The graph is the one the compile step exports (``engines.ServingGraph``: uint8 NHWC pixels in, probabilities
out, the normalisation and the softmax inside), or an OpenVINO IR (``model.xml`` + ``model.bin``) made from
it. Serving imports only ``openvino`` and numpy, never torch; ``compile_int8`` (compile time only) imports
``nncf``.

- ``fp32`` is exact: INFERENCE_PRECISION_HINT is pinned to f32. Unpinned, OpenVINO's CPU plugin silently
  runs bf16 on CPUs that have it (AVX-512 BF16, AMX); pinned, it agrees with eager torch fp32 within 1e-4.
- ``bf16``: INFERENCE_PRECISION_HINT bf16, only on a CPU that runs bf16 natively (BF16 among the plugin's
  OPTIMIZATION_CAPABILITIES); elsewhere it is refused, not emulated.
- ``int8``: an IR quantized by NNCF's post-training quantization on calibration images (``compile_int8``).
  The layers NNCF leaves in floating point (the normalisation, the softmax) run in f32.

bf16 and int8 are inexact: what they promise is what ``classifier.runtime.measure.measure_agreement`` finds
against fp32 on the operator's own images (the compile gate's figures).
"""

import logging
import queue
import tempfile
import threading
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    import openvino

logger = logging.getLogger(__name__)

NAME = "openvino"
PRECISIONS = ("fp32", "bf16", "int8")
IR_XML, IR_BIN = "model.xml", "model.bin"  # an IR's two files, as the compiled artifact's folder holds them
# The precision OpenVINO computes in; int8's quantized layers run in int8 whatever this says.
INFERENCE_PRECISION = {"fp32": "f32", "bf16": "bf16", "int8": "f32"}
QUANTIZE_OP = "FakeQuantize"  # what NNCF inserts into an IR it quantizes


class OpenVinoError(Exception):
    """The OpenVINO engine cannot serve this graph or precision here; the message is safe to show."""


def available() -> bool:
    """Whether the ``openvino`` package is installed."""
    try:
        import openvino  # noqa: F401
    except ImportError:
        return False
    return True


def cpu_capabilities() -> frozenset[str]:
    """The CPU plugin's OPTIMIZATION_CAPABILITIES on this machine (e.g. FP32, INT8, BF16)."""
    return frozenset(_core().get_property("CPU", "OPTIMIZATION_CAPABILITIES"))


def bf16_native() -> bool:
    """Whether this CPU runs bf16 natively (AVX-512 BF16 or AMX), as OpenVINO reports it."""
    return "BF16" in cpu_capabilities()


class OpenVinoEngine:
    """One compiled OpenVINO model on the CPU, for ``streams`` concurrent callers of ``run`` with ``threads``
    threads each (as the ONNX Runtime engine's intra-op threads: the process's cores over its batch workers).

    Build it with ``from_onnx`` (fp32, bf16), ``from_ir`` or ``load`` (any precision; int8 needs a quantized IR).
    ``run`` may be called from any number of threads at once: ``streams`` of them run together, each on an
    infer request of its own, and the others wait for one.
    """

    name = NAME
    kind = NAME
    device = "cpu"

    def __init__(self, model: "openvino.Model", *, precision: str, threads: int, streams: int = 1):
        if precision not in PRECISIONS:
            raise OpenVinoError(f"OpenVINO serves {', '.join(PRECISIONS)}, not {precision}")
        if threads < 1 or streams < 1:
            raise OpenVinoError(f"threads and streams must be at least 1 (got {threads} and {streams})")
        quantized = is_quantized(model)
        if precision == "int8" and not quantized:
            raise OpenVinoError("int8 runs a quantized IR (compile_int8, with calibration images); this one is not")
        if precision != "int8" and quantized:
            raise OpenVinoError(f"this IR is quantized (int8); it cannot be served as {precision}")
        if precision == "bf16" and not bf16_native():
            raise OpenVinoError("this CPU has no native bf16 (AVX-512 BF16 or AMX); use fp32 or int8")
        self._batch_limit = _check_signature(model)
        self.precision = precision
        self.exact = precision == "fp32"
        self.threads, self.streams = threads, streams
        config = {
            "INFERENCE_PRECISION_HINT": INFERENCE_PRECISION[precision],
            "NUM_STREAMS": streams,
            "INFERENCE_NUM_THREADS": threads * streams,
            # The cores are shared with the request threads and other workers: no pinning, as ONNX Runtime's
            # pool (which does not spin either).
            "ENABLE_CPU_PINNING": False,
        }
        try:
            self._compiled = _core().compile_model(model, "CPU", config)
        except RuntimeError as exc:
            raise OpenVinoError(f"OpenVINO cannot compile this graph ({_first_line(exc)})") from exc
        # One infer request per stream, lent to one caller at a time: a caller waits for a free one, so any
        # number of threads may call ``run`` and no more than ``streams`` requests' buffers are ever made.
        self._requests: queue.SimpleQueue = queue.SimpleQueue()
        for _ in range(streams):
            self._requests.put(self._compiled.create_infer_request())

    @classmethod
    def from_onnx(cls, graph: bytes, *, precision: str = "fp32", threads: int, streams: int = 1) -> "OpenVinoEngine":
        """The engine for an exported ONNX graph (ServingGraph) in fp32 or bf16."""
        return cls(read_onnx(graph), precision=precision, threads=threads, streams=streams)

    @classmethod
    def from_ir(cls, xml: bytes, weights: bytes, *, precision: str, threads: int, streams: int = 1) -> "OpenVinoEngine":
        """The engine for an IR given as its two files' bytes (``ir_bytes``, ``compile_int8``)."""
        return cls(read_ir(xml, weights), precision=precision, threads=threads, streams=streams)

    @classmethod
    def load(cls, folder: Path, *, precision: str, threads: int, streams: int = 1) -> "OpenVinoEngine":
        """The engine for the IR that ``save_ir`` wrote into ``folder``."""
        try:
            xml, weights = (folder / IR_XML).read_bytes(), (folder / IR_BIN).read_bytes()
        except OSError as exc:
            raise OpenVinoError(f"the OpenVINO IR is missing from the compiled artifact ({exc.strerror})") from exc
        return cls.from_ir(xml, weights, precision=precision, threads=threads, streams=streams)

    def run(self, batch: np.ndarray) -> np.ndarray:
        """NxHxWx3 uint8 pixels in, Nxclasses float32 probabilities out."""
        if self._batch_limit is not None and len(batch) > self._batch_limit:
            limit = self._batch_limit
            return np.concatenate([self.run(batch[start : start + limit]) for start in range(0, len(batch), limit)])
        request = self._requests.get()
        try:
            request.infer({0: np.ascontiguousarray(batch)}, share_inputs=True)
            return np.array(request.get_output_tensor(0).data, dtype=np.float32, copy=True)
        finally:
            self._requests.put(request)


def read_onnx(graph: bytes) -> "openvino.Model":
    """An ONNX graph (bytes) as an OpenVINO model; OpenVinoError when OpenVINO cannot read it."""
    try:
        return _core().read_model(graph)
    except RuntimeError as exc:
        raise OpenVinoError(f"OpenVINO cannot read the ONNX graph ({_first_line(exc)})") from exc


def read_ir(xml: bytes, weights: bytes) -> "openvino.Model":
    """An IR (its .xml and .bin files' bytes) as an OpenVINO model; OpenVinoError when it does not read."""
    import openvino

    try:
        return _core().read_model(model=xml, weights=openvino.Tensor(np.frombuffer(weights, dtype=np.uint8)))
    except RuntimeError as exc:
        raise OpenVinoError(f"OpenVINO cannot read the IR ({_first_line(exc)})") from exc


def ir_bytes(model: "openvino.Model") -> tuple[bytes, bytes]:
    """``model`` as an IR: (the .xml, the .bin) bytes, weights kept in fp32 (OpenVINO's default would halve
    them to fp16, and fp32 would no longer be exact)."""
    import openvino

    with tempfile.TemporaryDirectory(prefix="aiserver-ir-") as tmp:
        xml_path = Path(tmp) / IR_XML
        openvino.save_model(model, str(xml_path), compress_to_fp16=False)
        return xml_path.read_bytes(), (Path(tmp) / IR_BIN).read_bytes()


def compile_ir(graph: bytes) -> tuple[bytes, bytes]:
    """An exported ONNX graph converted once to an IR (fp32 and bf16 serve it; it loads faster than ONNX)."""
    return ir_bytes(read_onnx(graph))


def save_ir(folder: Path, xml: bytes, weights: bytes) -> Path:
    """Write an IR's two files into ``folder`` (a compiled artifact's), as ``load`` reads them; returns it."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / IR_XML).write_bytes(xml)
    (folder / IR_BIN).write_bytes(weights)
    return folder


def ir_files(xml: bytes, weights: bytes) -> dict[str, bytes]:
    """The IR as {file name: bytes}, for a compiled artifact's folder."""
    return {IR_XML: xml, IR_BIN: weights}


def compile_int8(graph: bytes, calibration: Iterable[np.ndarray]) -> tuple[bytes, bytes]:
    """Quantize an exported ONNX graph to int8 with NNCF's post-training quantization, calibrated on
    ``calibration`` (uint8 NxHxWx3 batches of the operator's images, preprocessed as served); returns the
    IR's (.xml, .bin) bytes. Compile time only: it imports nncf (and nncf imports torch where it is installed).
    Raises OpenVinoError without images or when quantization fails."""
    images = [image for batch in calibration for image in _pixels(batch)]
    if not images:
        raise OpenVinoError("int8 needs calibration images; none were given")
    import nncf

    nncf.set_log_level(logging.ERROR)
    dataset = nncf.Dataset([image[np.newaxis] for image in images])
    try:
        quantized = nncf.quantize(read_onnx(graph), dataset, subset_size=len(images))
    except (RuntimeError, ValueError, nncf.InternalError) as exc:
        raise OpenVinoError(f"int8 quantization failed ({_first_line(exc)})") from exc
    return ir_bytes(quantized)


def is_quantized(model: "openvino.Model") -> bool:
    """Whether ``model`` holds quantization (NNCF's FakeQuantize operations)."""
    return any(op.get_type_name() == QUANTIZE_OP for op in model.get_ops())


def _check_signature(model: "openvino.Model") -> int | None:
    """Check the graph is pixels in (one uint8 NxHxWx3 input), probabilities out (one Nxclasses output);
    return the input's fixed batch size, or None when the batch is dynamic."""
    if len(model.inputs) != 1 or len(model.outputs) != 1:
        raise OpenVinoError(f"the graph must have one input and one output ({len(model.inputs)}, {len(model.outputs)})")
    pixels, shape = model.inputs[0], model.inputs[0].get_partial_shape()
    if pixels.get_element_type().get_type_name() != "u8" or shape.rank.get_length() != 4:
        raise OpenVinoError("the graph must take uint8 NxHxWx3 pixels (the runtime's exported ServingGraph)")
    if shape[3].is_static and shape[3].get_length() != 3:
        raise OpenVinoError(f"the graph's pixels must have 3 channels last (it has {shape[3].get_length()})")
    if model.outputs[0].get_partial_shape().rank.get_length() != 2:
        raise OpenVinoError("the graph must give one row of probabilities per image")
    return shape[0].get_length() if shape[0].is_static else None


def _pixels(batch: np.ndarray) -> np.ndarray:
    if batch.dtype != np.uint8 or batch.ndim != 4 or batch.shape[3] != 3:
        raise OpenVinoError(f"calibration batches must be uint8 NxHxWx3 pixels (got {batch.dtype} {batch.shape})")
    return batch


_CORE: "openvino.Core | None" = None
_CORE_LOCK = threading.Lock()


def _core() -> "openvino.Core":
    """The process's one OpenVINO Core (it holds the plugins), made on first use: importing this module
    loads nothing."""
    global _CORE
    with _CORE_LOCK:
        if _CORE is None:
            try:
                import openvino
            except ImportError as exc:
                raise OpenVinoError("the openvino package is not installed (pip install -r requirements.txt)") from exc
            _CORE = openvino.Core()
        return _CORE


def _first_line(exc: Exception) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0][:300]}" if text else type(exc).__name__
