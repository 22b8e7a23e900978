"""The decode budget counts what decoding and preprocessing one image hold at once: its pixels and the crop's."""

import pytest

from classifier import services
from classifier.runtime.budget import PixelBudget
from classifier.runtime.preprocessing import IMAGENET, Preprocessing
from tests.model_weights import picture


class RecordingBudget(PixelBudget):
    def __init__(self, capacity: int):
        super().__init__(capacity)
        self.held: list[int] = []

    def acquire(self, pixels: int, *, timeout: float) -> bool:
        self.held.append(pixels)
        return super().acquire(pixels, timeout=timeout)


@pytest.mark.parametrize("crop", [IMAGENET.crop_size, 512])
def test_the_preprocessed_crop_is_counted_with_the_decoded_pixels(monkeypatch, settings, crop):
    budget = RecordingBudget(settings.CLASSIFIER_DECODE_BUDGET_MEGAPIXELS * 1_000_000)
    monkeypatch.setattr(services, "decode_budget", budget)
    spec = Preprocessing(
        resize_size=crop, crop_size=crop, mean=IMAGENET.mean, std=IMAGENET.std, resample=IMAGENET.resample
    )
    data = picture("goldfish")
    image = services.pipeline.open_image(data, max_pixels=settings.CLASSIFIER_MAX_IMAGE_PIXELS, draft_size=crop)

    pixels = services._preprocessed(data, spec)

    assert pixels.shape == (crop, crop, 3)
    assert budget.held == [image.width * image.height + crop * crop]
    assert budget.in_use == 0
