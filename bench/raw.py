"""The physical reference: the in-process pipeline with no server around it.

``python -m bench.raw --threads T --seconds S [--batch N]`` classifies the benchmark JPEG in a
loop (decode -> preprocess -> model -> top-5) and prints one JSON line: images, wall seconds and
this process's CPU seconds. The benchmark runs one such stream with every core's threads, and
one stream per core with one thread each, at the same time.
"""
import argparse
import json
import os
import time


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--threads", type=int, required=True)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--model", default="resnet18")
    args = parser.parse_args()

    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "aiserver.settings")
    os.environ.setdefault("DJANGO_DEBUG", "true")
    import django

    import classifier.apps

    classifier.apps.is_serving_process = lambda argv: False  # this process builds its own model, below
    django.setup()
    import torch

    from classifier.runtime import preprocessing as pipeline
    from classifier.runtime.registry import build_model, resolve_device

    from .images import photo_jpeg

    torch.set_num_threads(args.threads)
    model = build_model(args.model, "random", resolve_device(os.environ.get("CLASSIFIER_DEVICE", "auto")))
    data = photo_jpeg()
    spec = model.preprocessing

    def one_batch() -> None:
        pixels = [
            pipeline.preprocess(pipeline.decode(data, max_pixels=10**8, draft_size=spec.resize_size), spec)
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
    print(json.dumps({"images": images, "seconds": elapsed, "cpu_seconds": cpu, "threads": args.threads, "batch": args.batch,
                      "device": str(model.device)}))


if __name__ == "__main__":
    main()
