"""A small classifier whose answers mean something, fitted in the test session: four classes of coloured shapes
on noisy backgrounds (``shape_pictures``), a tiny CNN trained on them for a few seconds (``fine_tuned_shapes``).

Its fp32 predictions are right, confident and spread, so how often a fast mode (int8, bf16) agrees with fp32
on these pictures measures that mode, not noise in near-uniform logits of random weights.
"""

import numpy as np
import torch
from PIL import Image, ImageDraw

from classifier.runtime.preprocessing import IMAGENET, Preprocessing

SHAPES = ("red disc", "green square", "blue triangle", "yellow bar")
SIZE = 64
PREPROCESSING = Preprocessing(
    resize_size=SIZE, crop_size=SIZE, mean=IMAGENET.mean, std=IMAGENET.std, resample=IMAGENET.resample
)
COLOURS = {"red": (220, 40, 40), "green": (40, 190, 60), "blue": (40, 70, 220), "yellow": (230, 210, 40)}


def shape_pictures(count: int, *, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """``count`` uint8 SIZExSIZEx3 pictures (NHWC, as served) and their class indices, drawn from ``seed``."""
    rng = np.random.default_rng(seed)
    pictures, targets = [], []
    for _ in range(count):
        target = int(rng.integers(len(SHAPES)))
        background = np.clip(rng.normal(rng.uniform(60, 190), 25, (SIZE, SIZE, 3)), 0, 255).astype(np.uint8)
        image = Image.fromarray(background)
        colour = tuple(
            int(c) for c in np.clip(np.array(COLOURS[SHAPES[target].split()[0]]) + rng.normal(0, 15, 3), 0, 255)
        )
        size = int(rng.integers(18, 34))
        x, y = (int(v) for v in rng.integers(2, SIZE - size - 2, 2))
        draw = ImageDraw.Draw(image)
        if target == 0:
            draw.ellipse((x, y, x + size, y + size), fill=colour)
        elif target == 1:
            draw.rectangle((x, y, x + size, y + size), fill=colour)
        elif target == 2:
            draw.polygon([(x, y + size), (x + size, y + size), (x + size // 2, y)], fill=colour)
        else:
            draw.rectangle((x, y + size // 3, x + size, y + 2 * size // 3), fill=colour)
        pictures.append(np.asarray(image))
        targets.append(target)
    return np.stack(pictures), np.array(targets)


def constant_pictures(count: int, value: int = 128) -> np.ndarray:
    """``count`` flat grey pictures: a deliberately poor calibration set."""
    return np.full((count, SIZE, SIZE, 3), value, dtype=np.uint8)


class TinyNet(torch.nn.Module):
    def __init__(self, classes: int):
        super().__init__()
        layers: list[torch.nn.Module] = []
        for inputs, outputs in ((3, 16), (16, 32), (32, 64)):
            layers += [
                torch.nn.Conv2d(inputs, outputs, 3, stride=2, padding=1, bias=False),
                torch.nn.BatchNorm2d(outputs),
                torch.nn.ReLU(),
            ]
        self.features = torch.nn.Sequential(*layers)
        self.head = torch.nn.Linear(64, classes)

    def forward(self, batch: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(batch).mean(dim=(2, 3)))


def fine_tuned_shapes(steps: int = 150) -> torch.nn.Module:
    """TinyNet fitted to ``shape_pictures`` (seeded: the same network every session), in eval mode."""
    torch.manual_seed(20261203)
    network = TinyNet(len(SHAPES))
    pictures, targets = shape_pictures(steps * 32, seed=1)
    mean = torch.tensor(PREPROCESSING.mean).view(1, 3, 1, 1)
    std = torch.tensor(PREPROCESSING.std).view(1, 3, 1, 1)
    optimiser = torch.optim.Adam(network.parameters(), lr=3e-3)
    network.train()
    for step in range(steps):
        batch = torch.from_numpy(pictures[step * 32 : (step + 1) * 32]).permute(0, 3, 1, 2).float()
        optimiser.zero_grad()
        loss = torch.nn.functional.cross_entropy(
            network((batch / 255.0 - mean) / std), torch.from_numpy(targets[step * 32 : (step + 1) * 32])
        )
        loss.backward()
        optimiser.step()
    return network.eval()
