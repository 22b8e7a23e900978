"""Running a loaded model the way the service does: decode -> preprocess -> engine -> postprocess."""

import numpy as np
from django.test import override_settings

from classifier.runtime import preprocessing
from classifier.runtime.registry import Slot
from classifier.runtime.sources import ModelSource
from classifier.serving import process_runtime

MAX_PIXELS = 40_000_000


def folder_source(folder, name: str = "flowers") -> ModelSource:
    return ModelSource(name=name, architecture=None, folder=folder)


def torchvision_source(weights: str, name: str = "resnet18") -> ModelSource:
    return ModelSource(name=name, architecture=name, weights=weights)


def load(source: ModelSource, *, engine: str = "auto", precision: str = "auto", **overrides) -> Slot:
    with override_settings(CLASSIFIER_ENGINE=engine, CLASSIFIER_PRECISION=precision, **overrides):
        return load_slot(source)


def probabilities(slot: Slot, images: list[bytes]) -> np.ndarray:
    """The probability rows the slot's model gives ``images`` (encoded), without its batcher."""
    spec = slot.model.preprocessing
    pixels = [preprocessing.preprocess(preprocessing.decode(data, max_pixels=MAX_PIXELS), spec) for data in images]
    return slot.model.run_batch(pixels)


def top_labels(slot: Slot, images: list[bytes], k: int = 1) -> list[list[str]]:
    return [
        [p.label for p in preprocessing.postprocess(row, slot.model.labels, k)] for row in probabilities(slot, images)
    ]


def load_slot(source):
    """A slot for ``source`` built with the process runtime's configuration (the settings as they are now)."""
    return process_runtime().load_slot(source)
