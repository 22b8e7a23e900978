"""How closely each engine agrees with eager fp32 torch: ``python -m bench.agreement``.

On the test fixtures (tests.model_weights: the known-answer pictures on the test weights, and the
reference comparison's asymmetric pictures on the probe weights), every engine's probabilities are
compared with eager fp32 torch's: top-1 agreement and the largest confidence difference. Prints one
JSON line; bench.run puts it in docs/benchmarks.md.
"""

import json
import os
import tempfile
from pathlib import Path

CHOICES = [("torch", "fp32"), ("onnxruntime", "fp32"), ("torch", "bf16")]


def main() -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tests.settings")
    import django

    django.setup()
    import numpy as np
    from django.test import override_settings

    from classifier.runtime.engines import bf16_supported, resolve_device
    from tests.model_weights import PICTURES, make_probe_weights, make_weights, picture
    from tests.runtime.helpers import load, probabilities, torchvision_source
    from tests.runtime.test_engines import photo_like_images, png

    device = resolve_device(os.environ.get("CLASSIFIER_DEVICE", "auto"))
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
                    rows.append(
                        {
                            "fixture": fixture,
                            "engine": engine,
                            "precision": precision,
                            "images": len(images),
                            "exact": slot.model.engine.exact,
                            "top1_agreement": float(np.mean(ours.argmax(axis=1) == reference.argmax(axis=1))),
                            "max_confidence_difference": float(np.abs(ours - reference).max()),
                        }
                    )
    print(json.dumps({"agreement": rows}))


if __name__ == "__main__":
    main()
