"""JPEG draft decoding, measured (docs/benchmarks.md, "Draft decoding" and "Library models").

``python -m bench.draft [--runs N] [--write]`` prints one JSON object (``--write``: also saves it as
docs/benchmark-draft.json and rewrites the two sections at the end of docs/benchmarks.md, which ``make bench``
keeps):

- ``twelve_mp``: the median milliseconds to decode and preprocess a 12 MP (4000x3000) JPEG for a 256/224 model, with
  a full decode (the default) and with draft decoding (a model's ``"draft": true``): the decoder shrinks the JPEG by
  a power of two before any pixel is made;
- ``draft_max_probability_difference``: the largest probability difference draft decoding causes on the real
  photographs of the tests (scikit-image's, as JPEGs, and phone-sized ones), for a seeded ResNet-18 whose head is
  scaled so that its answers move with the pixels;
- ``libraries``: per tiny timm and transformers model of the tests, the largest difference between the served
  (compiled, exact) answer and the library's own on those photographs.
"""

import argparse
import io
import json
import os
import statistics
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
from PIL import Image

MAX_PIXELS = 10**8
DOCS = Path(__file__).resolve().parent.parent / "docs"
SECTION = "## Draft decoding"


def markdown(result: dict) -> list[str]:
    """The two sections of docs/benchmarks.md this benchmark writes."""
    timing = result["twelve_mp"]
    lines = [
        SECTION,
        "",
        "Written by `python -m bench.draft --write` on the machine above (other work shared its 2 cores: the "
        f"times are indicative; measured {result.get('measured', '?')}). Decoding and preprocessing a 12 MP (4000x3000) "
        "JPEG for a 256/224 model (median of runs):",
        "",
        "| decode | ms |",
        "| --- | --- |",
        f"| full decode (the default: exact) | {timing['full_decode_ms']} |",
        f'| draft decoding (`"draft": true` in config.json) | {timing["draft_ms"]} |',
        "",
        "The largest probability difference draft decoding causes, over the tests' real photographs (scikit-image's, "
        "as JPEGs, phone-sized ones and the 12 MP one) for a seeded ResNet-18 whose answers move with the pixels: "
        f"**{result['draft_max_probability_difference']:.2g}**. Hence full decoding by default.",
        "",
    ]
    if "libraries" in result:
        lines += [
            "## Library models",
            "",
            "The largest probability difference between the served answer (compiled, onnxruntime fp32) and the "
            "library's own (timm's `create_transform(**resolve_data_config(...))` and model; transformers' "
            '`pipeline("image-classification")` with the PIL image processor) on the same photographs, for the '
            "tests' tiny seeded models:",
            "",
            "| model | largest difference |",
            "| --- | --- |",
            *[f"| {model} | {difference:.2g} |" for model, difference in result["libraries"].items()],
            "",
        ]
    return lines


def write_docs(result: dict) -> None:
    (DOCS / "benchmark-draft.json").write_text(json.dumps(result, indent=2) + "\n")
    page = DOCS / "benchmarks.md"
    kept = page.read_text().split(SECTION)[0].rstrip("\n")
    page.write_text(kept + "\n\n" + "\n".join(markdown(result)))


def twelve_mp_jpeg() -> bytes:
    import skimage.data

    photo = Image.fromarray(skimage.data.coffee()).resize((4000, 3000), Image.Resampling.BICUBIC)
    buffer = io.BytesIO()
    photo.save(buffer, "JPEG", quality=90)
    return buffer.getvalue()


def decode_ms(data: bytes, spec, runs: int) -> float:
    from classifier.runtime import preprocessing as pipeline

    times = []
    for _ in range(runs):
        started = time.perf_counter()
        pipeline.preprocess(pipeline.decode(data, max_pixels=MAX_PIXELS, draft_size=spec.draft_size), spec)
        times.append((time.perf_counter() - started) * 1000.0)
    return round(statistics.median(times), 1)


def draft_difference(photos: list[bytes]) -> float:
    """The largest probability difference between full and draft decoding over ``photos``."""
    import torch
    import torchvision

    from classifier.runtime import preprocessing as pipeline
    from classifier.runtime.torch_engines import TorchEngine

    torch.manual_seed(1)
    network = torchvision.models.resnet18(weights=None).eval()
    with torch.no_grad():
        network.fc.weight.mul_(5.0)
    full = pipeline.IMAGENET
    draft = replace(full, draft=True)
    engine = TorchEngine(network, full, device="cpu", precision="fp32")
    rows = {}
    for name, spec in (("full", full), ("draft", draft)):
        pixels = [
            pipeline.preprocess(pipeline.decode(data, max_pixels=MAX_PIXELS, draft_size=spec.draft_size), spec)
            for data in photos
        ]
        rows[name] = engine.run(np.stack(pixels))
    return float(np.abs(rows["full"] - rows["draft"]).max())


def library_differences(photos: list[bytes]) -> dict[str, float]:
    from tests.library_models import LIBRARY_MODELS, library_probabilities, write_library_folder
    from tests.runtime.helpers import folder_source, load, probabilities

    differences = {}
    with tempfile.TemporaryDirectory() as root:
        for model in LIBRARY_MODELS:
            folder = write_library_folder(Path(root) / model.replace(":", "-"), model)
            slot = load(folder_source(folder, name=model.replace(":", "-").replace("_", "-")))
            served = probabilities(slot, photos)
            differences[model] = float(np.abs(served - library_probabilities(folder, model, photos)).max())
            if slot.batcher is not None:
                slot.batcher.close()
    return differences


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=15)
    parser.add_argument("--no-libraries", action="store_true", help="skip the timm and transformers comparison")
    parser.add_argument("--write", action="store_true", help="save to docs/benchmark-draft.json and docs/benchmarks.md")
    args = parser.parse_args()
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tests.settings")
    import django

    django.setup()
    from classifier.runtime import preprocessing as pipeline
    from tests.library_models import real_photos

    data = twelve_mp_jpeg()
    photos = list(real_photos().values()) + [data]
    result: dict = {
        "measured": time.strftime("%Y-%m-%d", time.gmtime()),
        "twelve_mp": {
            "full_decode_ms": decode_ms(data, pipeline.IMAGENET, args.runs),
            "draft_ms": decode_ms(data, replace(pipeline.IMAGENET, draft=True), args.runs),
        },
        "draft_max_probability_difference": draft_difference(photos),
    }
    if not args.no_libraries:
        result["libraries"] = library_differences(photos)
    print(json.dumps(result, indent=2))
    if args.write:
        write_docs(result)


if __name__ == "__main__":
    main()
