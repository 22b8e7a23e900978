"""The physical reference: the in-process pipeline with no server around it.

``python -m bench.raw --engine E --precision P --threads T --seconds S [--batch N]`` classifies the
benchmark JPEG in a loop (decode -> preprocess -> engine -> top-5) and prints one JSON line: images,
wall seconds and this process's CPU seconds. Engines are the service's own (classifier.runtime.engines):
``torch`` (fp32 or bf16) and ``onnxruntime`` (fp32), and ``openvino`` (classifier.runtime.openvino_engine:
fp32, bf16 where the CPU has it natively, int8 calibrated on photo-like pictures) on the same exported graph.
The benchmark runs each as one stream with every core's threads and as one stream per core with one thread
each, one image and batches per forward pass.
"""

import argparse
import json
import os
import time

# Ways to run torch that the service does not offer, measured so that the reference is the best this machine
# can do and not only the best of what the service happens to use.
RAW_ONLY = {
    "torch-channels-last": "eager torch, channels-last memory format",
    "torch-jit-frozen": "TorchScript, frozen with torch.jit.optimize_for_inference",
    "torch-compile": "torch.compile (inductor)",
}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--engine", choices=["torch", "onnxruntime", "openvino", *RAW_ONLY], default="torch")
    parser.add_argument("--precision", choices=["fp32", "bf16", "fp16", "int8"], default="fp32")
    parser.add_argument("--threads", type=int, required=True)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--model", default="resnet18")
    args = parser.parse_args()

    os.environ.update(
        {
            "DJANGO_SETTINGS_MODULE": os.environ.get("DJANGO_SETTINGS_MODULE", "aiserver.settings"),
            "DJANGO_DEBUG": os.environ.get("DJANGO_DEBUG", "true"),
            "CLASSIFIER_ENGINE": "torch" if args.engine in (*RAW_ONLY, "openvino") else args.engine,
            "CLASSIFIER_PRECISION": "fp32" if args.engine == "openvino" else args.precision,
            "CLASSIFIER_TORCH_THREADS": str(args.threads),  # torch's pool, and the onnxruntime session's
            "CLASSIFIER_MAX_BATCH_SIZE": str(args.batch),  # what the load-time check warms up
        }
    )
    import django

    django.setup()
    import torch

    from classifier.runtime import preprocessing as pipeline
    from classifier.runtime.registry import build_model, configure_libraries
    from classifier.runtime.sources import ModelSource
    from classifier.runtime_settings import runtime_config

    from .images import photo_jpeg

    config = runtime_config()
    configure_libraries(config)
    model = build_model(ModelSource(name=args.model, architecture=args.model, weights="random"), config)
    if args.engine in RAW_ONLY:
        model.engine = raw_only_engine(args.engine, model.engine, batch=args.batch)
    elif args.engine == "openvino":
        model.engine = openvino_engine(model, precision=args.precision, threads=args.threads)
    data = photo_jpeg()
    spec = model.preprocessing

    def one_batch() -> None:
        pixels = [
            pipeline.preprocess(pipeline.decode(data, max_pixels=10**8, draft_size=spec.draft_size), spec)
            for _ in range(args.batch)
        ]
        for row in model.run_batch(pixels):
            pipeline.postprocess(row, model.labels, 5)

    for _ in range(3):  # warm-up
        one_batch()
    images = 0
    cpu_started, started = time.process_time(), time.perf_counter()
    while time.perf_counter() - started < args.seconds:
        one_batch()
        images += args.batch
    elapsed, cpu = time.perf_counter() - started, time.process_time() - cpu_started
    print(
        json.dumps(
            {
                "images": images,
                "seconds": elapsed,
                "cpu_seconds": cpu,
                "threads": args.threads,
                "batch": args.batch,
                "engine": model.engine.name,
                "precision": model.engine.precision,
                "exact": model.engine.exact,
                "device": model.engine.device,
                "torch_threads": torch.get_num_threads(),
            }
        )
    )


def raw_only_engine(kind: str, eager, *, batch: int):
    """``eager`` (the service's TorchEngine) run another way; ``exact`` is measured against eager itself."""
    import numpy as np
    import torch

    class ChannelsLast(torch.nn.Module):
        def forward(self, batch: torch.Tensor) -> torch.Tensor:
            return batch.contiguous(memory_format=torch.channels_last)

    graph = eager._graph
    sample = np.random.default_rng(0).integers(0, 256, size=(batch, 224, 224, 3), dtype=np.uint8)
    example = torch.from_numpy(sample)
    with torch.inference_mode(False), torch.no_grad():
        if kind == "torch-channels-last":
            graph.network = torch.nn.Sequential(ChannelsLast(), graph.network.to(memory_format=torch.channels_last))
            runner = graph
        elif kind == "torch-jit-frozen":
            runner = torch.jit.optimize_for_inference(torch.jit.trace(graph, example))
        else:
            runner = torch.compile(graph)
            runner(example)  # compiles for this batch size

    class RawEngine:
        name, precision, device = kind, "fp32", "cpu"

        def run(self, pixels: np.ndarray) -> np.ndarray:
            with torch.no_grad():
                return runner(torch.from_numpy(pixels)).numpy()

    engine = RawEngine()
    engine.exact = bool(np.abs(engine.run(sample) - eager.run(sample)).max() <= 1e-4)
    return engine


CALIBRATION_PICTURES = 32  # int8: photo-like pictures (bench.images, other seeds than the measured one)


def openvino_engine(model, *, precision: str, threads: int):
    """The model's network (eager fp32 ``model.engine``) exported as the runtime exports it, on OpenVINO;
    ``exact`` checked against eager fp32 on this machine as for the other exact engines."""
    import numpy as np

    from classifier.runtime import preprocessing as pipeline
    from classifier.runtime.artifacts import Artifact
    from classifier.runtime.openvino_engine import OpenVinoEngine, compile_int8
    from classifier.runtime.torch_engines import export_onnx

    from .images import photo_jpeg

    eager = model.engine
    artifact = Artifact(
        kind="torchvision",
        labels=model.labels,
        preprocessing=model.preprocessing,
        pretrained=False,
        fingerprint=None,
        module=eager._graph.network,
    )
    graph = export_onnx(artifact)
    if precision == "int8":
        spec = model.preprocessing
        calibration = np.stack(
            [
                pipeline.preprocess(pipeline.decode(photo_jpeg(seed=seed), max_pixels=10**8), spec)
                for seed in range(1, CALIBRATION_PICTURES + 1)
            ]
        )
        engine = OpenVinoEngine.from_ir(*compile_int8(graph, [calibration]), precision="int8", threads=threads)
    else:
        engine = OpenVinoEngine.from_onnx(graph, precision=precision, threads=threads)
    if engine.exact:
        sample = np.random.default_rng(0).integers(0, 256, size=(2, 224, 224, 3), dtype=np.uint8)
        engine.exact = bool(np.abs(engine.run(sample) - eager.run(sample)).max() <= 1e-4)
    return engine


if __name__ == "__main__":
    main()
