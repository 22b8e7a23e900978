"""Deterministic test weights: a seeded, untrained ResNet-18 whose last layer is fitted so that
a few synthetic pictures map confidently to chosen ImageNet labels.

Used by the in-process tests and by the live-server tests (through CLASSIFIER_WEIGHTS).
"""

import io
import json
import warnings
from pathlib import Path

import numpy as np
import torch
import torchvision
from PIL import Image

# Solid colours survive JPEG, resizing and base64 round trips, so their labels are stable.
PICTURES = {
    "goldfish": (220, 40, 30),
    "tree frog": (40, 180, 60),
    "jellyfish": (30, 60, 210),
}
SEED = 20261122


def picture(label: str, size=(500, 375), fmt: str = "JPEG", mode: str = "RGB") -> bytes:
    """Encode the synthetic picture for ``label`` in ``fmt``."""
    image = Image.new("RGB", size, PICTURES[label])
    if mode != "RGB":
        image = image.convert(mode)
    buffer = io.BytesIO()
    image.save(buffer, format=fmt)
    return buffer.getvalue()


def _features(backbone: torch.nn.Module, images: list[Image.Image]) -> torch.Tensor:
    weights = torchvision.models.ResNet18_Weights.DEFAULT
    transform = weights.transforms()
    batch = torch.stack([transform(image) for image in images])
    with torch.inference_mode():
        return backbone(batch)


def make_weights(path: Path) -> Path:
    """Write the state_dict to ``path`` (deterministic for a given torch build) and return it."""
    torch.manual_seed(SEED)
    model = torchvision.models.resnet18(weights=None).eval()
    categories = torchvision.models.ResNet18_Weights.DEFAULT.meta["categories"]
    fc = model.fc
    model.fc = torch.nn.Identity()
    images, targets = [], []
    for label, colour in PICTURES.items():
        for size in [(500, 375), (224, 224), (64, 300), (1000, 800)]:
            for jitter in (-12, 0, 12):
                rgb = tuple(int(np.clip(c + jitter, 0, 255)) for c in colour)
                images.append(Image.new("RGB", size, rgb))
                targets.append(categories.index(label))
    features = _features(model, images)
    features = features.detach().clone()
    targets_t = torch.tensor(targets)
    optimiser = torch.optim.Adam(fc.parameters(), lr=0.05)
    for _ in range(300):
        optimiser.zero_grad()
        loss = torch.nn.functional.cross_entropy(fc(features), targets_t)
        loss.backward()
        optimiser.step()
    model.fc = fc
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(model.state_dict(), path)
    return path


# --- A user's own model: 5 classes of their own, in a model folder ------------------------------
FLOWERS = {
    "daisy": (245, 245, 240),
    "rose": (200, 20, 60),
    "tulip": (250, 130, 0),
    "bluebell": (60, 80, 200),
    "fern": (30, 120, 40),
}
ARTIFACT_KINDS = ("state_dict", "torchscript", "onnx")
# torchvision's ImageNet transform as a model folder's config.json states it.
IMAGENET_CONFIG = {
    "resize": 256,
    "crop": 224,
    "mean": [0.485, 0.456, 0.406],
    "std": [0.229, 0.224, 0.225],
    "interpolation": "bilinear",
}


def flower_picture(label: str, size=(400, 300), fmt: str = "JPEG") -> bytes:
    image = Image.new("RGB", size, FLOWERS[label])
    buffer = io.BytesIO()
    image.save(buffer, format=fmt)
    return buffer.getvalue()


def fine_tuned_flowers() -> torch.nn.Module:
    """A seeded ResNet-18 with a 5-class head fitted to the FLOWERS colours (what a user's fine-tuning gives)."""
    torch.manual_seed(SEED + 1)
    model = torchvision.models.resnet18(weights=None, num_classes=len(FLOWERS)).eval()
    fc, model.fc = model.fc, torch.nn.Identity()
    images, targets = [], []
    for index, colour in enumerate(FLOWERS.values()):
        for size in [(400, 300), (224, 224), (120, 500)]:
            for jitter in (-12, 0, 12):
                images.append(Image.new("RGB", size, tuple(int(np.clip(c + jitter, 0, 255)) for c in colour)))
                targets.append(index)
    features = _features(model, images).detach().clone()
    optimiser = torch.optim.Adam(fc.parameters(), lr=0.05)
    for _ in range(300):
        optimiser.zero_grad()
        torch.nn.functional.cross_entropy(fc(features), torch.tensor(targets)).backward()
        optimiser.step()
    model.fc = fc
    return model.eval()


def write_model_folder(folder: Path, kind: str, model: torch.nn.Module, labels: list[str] | None = None) -> Path:
    """Write ``model`` as a model folder of ``kind`` (state_dict, torchscript or onnx), with its labels.

    The state_dict folder names its architecture in config.json and lists its labels; the TorchScript
    one uses TorchServe's index_to_name form; the TorchScript and ONNX ones state ImageNet's preprocessing in
    config.json (it cannot be inferred from their files).
    """
    folder.mkdir(parents=True, exist_ok=True)
    labels = labels or list(FLOWERS)
    example = torch.zeros(1, 3, 224, 224)
    if kind == "state_dict":
        torch.save(model.state_dict(), folder / "model.pt")
        (folder / "config.json").write_text(json.dumps({"architecture": "resnet18"}))
        (folder / "labels.json").write_text(json.dumps(labels))
    elif kind == "torchscript":
        with torch.no_grad():
            torch.jit.trace(model, example).save(str(folder / "model.ts"))
        (folder / "labels.json").write_text(json.dumps({str(i): label for i, label in enumerate(labels)}))
        (folder / "config.json").write_text(json.dumps(IMAGENET_CONFIG))
    elif kind == "onnx":
        with warnings.catch_warnings(), torch.no_grad():
            warnings.simplefilter("ignore")
            torch.onnx.export(
                model,
                (example,),
                str(folder / "model.onnx"),
                dynamo=False,
                input_names=["input"],
                output_names=["logits"],
                dynamic_axes={"input": {0: "batch"}, "logits": {0: "batch"}},
            )
        (folder / "labels.json").write_text(json.dumps(labels))
        (folder / "config.json").write_text(json.dumps(IMAGENET_CONFIG))
    else:
        raise ValueError(kind)
    return folder


def make_probe_weights(path: Path) -> Path:
    """A seeded, untrained ResNet-18 whose head is scaled up (x5) so that its answers are spread over a few
    labels and move when the input does: a transposed or mirrored image changes them far beyond 1e-4."""
    torch.manual_seed(1)
    model = torchvision.models.resnet18(weights=None).eval()
    with torch.no_grad():
        model.fc.weight.mul_(5.0)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(model.state_dict(), path)
    return path
