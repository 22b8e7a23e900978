"""The benchmark's input: a deterministic, photo-like ~500x375 JPEG."""

import io

import numpy as np
from PIL import Image, ImageFilter

WIDTH, HEIGHT = 500, 375


def photo_jpeg(*, seed: int = 0, quality: int = 90) -> bytes:
    """A 500x375 JPEG with a photo's mix of smooth regions, edges and grain (not a flat test card)."""
    rng = np.random.default_rng(seed)
    coarse = rng.integers(0, 256, size=(12, 16, 3), dtype=np.uint8)
    base = Image.fromarray(coarse).resize((WIDTH, HEIGHT), Image.Resampling.BICUBIC).filter(ImageFilter.GaussianBlur(6))
    pixels = np.asarray(base, dtype=np.int16)
    yy, xx = np.mgrid[0:HEIGHT, 0:WIDTH]
    shapes = ((xx - 250) ** 2 / 120**2 + (yy - 190) ** 2 / 80**2 < 1)[..., None] * np.array([60, -30, -40])
    grain = rng.normal(0, 14, size=(HEIGHT, WIDTH, 3))
    photo = np.clip(pixels + shapes + grain, 0, 255).astype(np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(photo).save(buffer, "JPEG", quality=quality)
    return buffer.getvalue()
