"""The runtime's vocabularies, each an enum defined once: the model fields' choices, the schema and the docs
derive from these, so adding an engine is one new member here and one engine class."""

from enum import StrEnum


class EngineKind(StrEnum):
    AUTO = "auto"  # a choice only: the fastest exact engine for this machine
    TORCH = "torch"
    ONNXRUNTIME = "onnxruntime"
    OPENVINO = "openvino"

    @classmethod
    def choices(cls) -> list[str]:
        return [member.value for member in cls]


class Precision(StrEnum):
    AUTO = "auto"  # a choice only: fp32 on a CPU, fp16 on CUDA
    FP32 = "fp32"
    BF16 = "bf16"
    FP16 = "fp16"
    INT8 = "int8"  # OpenVINO, calibrated on the operator's own images (a calibration/ folder)

    @classmethod
    def choices(cls) -> list[str]:
        return [member.value for member in cls]


class ModelStatus(StrEnum):
    """A slot's state as /readyz, /api/v2/models and the pages report it."""

    LOADING = "loading"
    LOADED = "loaded"
    UNAVAILABLE = "unavailable"


class Provenance(StrEnum):
    """How a serving process got its engine: compiled here, loaded from a compiled artifact, or built in process
    from the source (eager torch has nothing to compile)."""

    COMPILED = "compiled here"
    LOADED_COMPILED = "loaded compiled"
    IN_PROCESS = "built in process"


class ArtifactKind(StrEnum):
    """What a model was loaded from: a torchvision name, a folder of ours, or a folder a library saved."""

    TORCHVISION = "torchvision"
    STATE_DICT = "state_dict"
    TORCHSCRIPT = "torchscript"
    ONNX = "onnx"
    TIMM = "timm"
    TRANSFORMERS = "transformers"
