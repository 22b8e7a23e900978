"""The runtime's configuration, typed: everything the model side reads, in one frozen value.

The runtime never reads Django's settings. The Django side builds a ``RuntimeConfig`` from them in one place
(``classifier.runtime_settings.runtime_config``) and hands it to the runtime.
"""

import os
from dataclasses import dataclass, field
from pathlib import Path


@dataclass(frozen=True)
class RuntimeConfig:
    models: dict[str, str] = field(default_factory=dict)  # CLASSIFIER_MODELS as parsed: {name: weights or folder}
    default_model: str = "resnet18"
    default_weights: str = "default"
    device: str = "auto"
    engine: str = "auto"
    precision: str = "auto"
    # Where compiled artifacts live (named by the sha256 of their inputs); None: a temporary folder per process.
    artifact_dir: Path | None = None
    max_image_pixels: int = 40_000_000
    max_batch_size: int = 8
    max_batch_delay_ms: float = 2.0
    queue_size: int = 64
    batch_workers: int = 0  # 0: one per core of this process on a CPU, one on a GPU
    torch_threads: int = 0  # 0: this process's cores shared among its CPU batch workers
    web_concurrency: int = 1
    # Compile in a sandboxed child process (scrubbed environment, temporary directory, resource limits), so that
    # torch never enters a serving process and a model's code never runs with the server's secrets.
    compile_in_child: bool = True
    compile_timeout_seconds: float = 300.0
    compile_memory_bytes: int = 8 << 30  # the compiling child's address-space limit (RLIMIT_AS)
    # A fast mode (bf16, int8) is refused when its top-1 agreement with fp32 on the calibration images is lower.
    min_top1_agreement: float = 0.99
    max_calibration_images: int = 300  # the calibration/ images a compile reads at most
    # ``auto`` on a CPU measures ONNX Runtime and OpenVINO fp32 when compiling and keeps the faster (both exact).
    race_engines: bool = True

    def process_cores(self) -> int:
        """This process's share of the cores among ``web_concurrency`` worker processes."""
        return max(1, (os.cpu_count() or 1) // max(1, self.web_concurrency))

    def workers_for(self, device: str) -> int:
        """Forward-pass threads per model: the setting, else one per core of this process on a CPU, one on a GPU."""
        if self.batch_workers > 0:
            return self.batch_workers
        return 1 if device.startswith("cuda") else self.process_cores()

    def engine_threads(self) -> int:
        """Intra-op threads per engine: the setting, else this process's cores shared among its CPU batch workers."""
        if self.torch_threads > 0:
            return self.torch_threads
        return max(1, self.process_cores() // self.workers_for("cpu"))


@dataclass(frozen=True)
class CompileOptions:
    """What a compile needs of the configuration (sent to the compiling child as JSON)."""

    min_top1_agreement: float = 0.99
    max_calibration_images: int = 300
    max_image_pixels: int = 40_000_000
    race_engines: bool = True
    # How many callers run the engine at once when it serves (its batch workers): an OpenVINO engine gets one
    # stream each, and the compile measures every engine with that many concurrent callers, as it will serve.
    callers: int = 1
