"""Deterministic test weights: a seeded, untrained ResNet-18 whose last layer is fitted so that
a few synthetic pictures map confidently to chosen ImageNet labels.

Used by the in-process tests and by the live-server tests (through CLASSIFIER_WEIGHTS).
"""
import io
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
