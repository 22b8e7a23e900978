"""How closely each engine agrees with eager fp32 torch: ``python -m bench.agreement``.

On the test fixtures (tests.model_weights: the known-answer pictures on the test weights, and the
reference comparison's asymmetric pictures on the probe weights), every engine's probabilities are
compared with eager fp32 torch's: top-1 agreement, top-5 overlap and the largest confidence difference.
The fast modes are measured where agreement means something too: on tests.runtime.shapes, a small CNN fitted
to coloured shapes (right and confident on held-out pictures), with int8 calibrated once on shape pictures and
once, deliberately poorly, on flat grey ones. Prints one JSON line; bench.run puts it in docs/benchmarks.md.
"""

import json
import os
import tempfile
from pathlib import Path

import numpy as np

CHOICES = [("torch", "fp32"), ("onnxruntime", "fp32"), ("torch", "bf16")]
OPENVINO = ("fp32", "bf16")
SHAPES_FIXTURE = "coloured shapes, a CNN fitted to them (held-out pictures)"


def row(fixture: str, engine: str, precision: str, exact: bool, ours: np.ndarray, reference: np.ndarray) -> dict:
    from classifier.runtime.measure import agreement

    measured = agreement(ours, reference)
    return {
        "fixture": fixture,
        "engine": engine,
        "precision": precision,
        "images": measured.images,
        "exact": exact,
        "top1_agreement": measured.top1,
        "top5_overlap": measured.top5_overlap,
        "max_confidence_difference": measured.max_confidence_difference,
    }


def main() -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tests.settings")
    import django

    django.setup()
    from django.test import override_settings

    from classifier.runtime.artifacts import load_artifact
    from classifier.runtime.openvino_engine import OpenVinoEngine, bf16_native
    from classifier.runtime.torch_engines import bf16_supported, export_onnx, resolve_device
    from tests.model_weights import PICTURES, make_probe_weights, make_weights, picture
    from tests.runtime.helpers import load, probabilities, torchvision_source
    from tests.runtime.test_engines import photo_like_images, png
    from tests.runtime.test_openvino_engine import pixels

    device = resolve_device(os.environ.get("CLASSIFIER_DEVICE", "auto"))
    openvino_precisions = [p for p in OPENVINO if p != "bf16" or bf16_native()]
    with tempfile.TemporaryDirectory() as tmp:
        fixtures = {
            "known-answer pictures, test weights": (
                make_weights(Path(tmp) / "test.pt"),
                [picture(label, fmt=fmt) for label in PICTURES for fmt in ("JPEG", "PNG")],
            ),
            "asymmetric pictures, probe weights": (
                make_probe_weights(Path(tmp) / "probe.pt"),
                [png(image) for image in photo_like_images().values()],
            ),
        }
        rows = []
        with override_settings(CLASSIFIER_ENGINE_CACHE_DIR=None):
            for fixture, (weights, images) in fixtures.items():
                reference = probabilities(
                    load(torchvision_source(str(weights)), engine="torch", precision="fp32"), images
                )
                for engine, precision in CHOICES:
                    if precision == "bf16" and not bf16_supported(device):
                        continue
                    slot = load(torchvision_source(str(weights)), engine=engine, precision=precision)
                    ours = probabilities(slot, images)
                    rows.append(row(fixture, engine, precision, slot.model.engine.exact, ours, reference))
                artifact = load_artifact(torchvision_source(str(weights)))
                graph = export_onnx(artifact)
                for precision in openvino_precisions:
                    openvino = OpenVinoEngine.from_onnx(graph, precision=precision, threads=os.cpu_count() or 1)
                    ours = openvino.run(pixels(images, artifact.preprocessing))
                    rows.append(row(fixture, "openvino", precision, openvino.exact, ours, reference))
    rows += shapes_rows(openvino_precisions)
    print(json.dumps({"agreement": rows}))


def shapes_rows(openvino_precisions: list[str]) -> list[dict]:
    """OpenVINO fp32, bf16 (where native) and int8 (good and poor calibration) against eager fp32 on the shapes."""
    import torch

    from classifier.runtime.artifacts import Artifact
    from classifier.runtime.openvino_engine import OpenVinoEngine, compile_int8
    from classifier.runtime.torch_engines import ServingGraph, export_onnx
    from tests.runtime.shapes import PREPROCESSING, SHAPES, constant_pictures, fine_tuned_shapes, shape_pictures

    network = fine_tuned_shapes()
    graph = export_onnx(
        Artifact(
            kind="state_dict",
            labels=list(SHAPES),
            preprocessing=PREPROCESSING,
            pretrained=False,
            fingerprint=None,
            module=network,
        ),
    )
    images, _ = shape_pictures(300, seed=3)
    with torch.inference_mode():
        reference = ServingGraph(network, PREPROCESSING).eval()(torch.from_numpy(images)).numpy()
    threads = os.cpu_count() or 1
    engines = {p: OpenVinoEngine.from_onnx(graph, precision=p, threads=threads) for p in openvino_precisions}
    calibrations = {
        "int8": shape_pictures(64, seed=2)[0],
        "int8 (calibrated on flat grey pictures)": constant_pictures(64),
    }
    for name, calibration in calibrations.items():
        engines[name] = OpenVinoEngine.from_ir(*compile_int8(graph, [calibration]), precision="int8", threads=threads)
    return [
        row(SHAPES_FIXTURE, "openvino", name, engine.exact, engine.run(images), reference)
        for name, engine in engines.items()
    ]


if __name__ == "__main__":
    main()
