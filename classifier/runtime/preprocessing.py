"""The model's input and output as small functions: decode -> preprocess -> (engine) -> postprocess.

They use Pillow and NumPy only (they release the GIL and start no torch thread pools), so request
threads run them in parallel with inference; the engines (``engines.py``) are the only place that
runs a network, on a batch.
"""
import io
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from ..exceptions import ImageTooLarge, InvalidImage

SUPPORTED_FORMATS = ("JPEG", "PNG", "WEBP", "GIF", "BMP", "TIFF")
WHITE = (255, 255, 255)


# PIL's filters by the names torchvision's InterpolationMode and config.json use.
RESAMPLING = {
    "nearest": Image.Resampling.NEAREST,
    "bilinear": Image.Resampling.BILINEAR,
    "bicubic": Image.Resampling.BICUBIC,
    "lanczos": Image.Resampling.LANCZOS,
    "box": Image.Resampling.BOX,
    "hamming": Image.Resampling.HAMMING,
}


@dataclass(frozen=True)
class Preprocessing:
    """The weights' own transform: resize the short side, centre-crop, normalise."""

    resize_size: int
    crop_size: int
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    resample: int  # a PIL resampling filter


# torchvision's ImageNet classifiers' transform: the default for a model that names no other.
IMAGENET = Preprocessing(
    resize_size=256, crop_size=224, mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225),
    resample=Image.Resampling.BILINEAR,
)


@dataclass(frozen=True)
class Prediction:
    label: str
    confidence: float


def decode(data: bytes, *, max_pixels: int, draft_size: int | None = None) -> Image.Image:
    """Decode the first frame of a supported image into upright RGB.

    Raises InvalidImage for anything that is not a complete supported image and ImageTooLarge
    above ``max_pixels`` (checked from the header, before any pixel is decoded). With
    ``draft_size``, JPEGs at least twice that size are downscaled by the decoder itself.
    """
    try:
        image = Image.open(io.BytesIO(data), formats=SUPPORTED_FORMATS)
    except Image.DecompressionBombError as exc:
        raise ImageTooLarge() from exc
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as exc:
        raise InvalidImage(f"Not a readable image; supported formats: {', '.join(SUPPORTED_FORMATS)}.") from exc
    width, height = image.size
    if width * height > max_pixels:
        raise ImageTooLarge(f"The image has {width}x{height} pixels; at most {max_pixels} pixels are accepted.")
    if width < 1 or height < 1:
        raise InvalidImage("The image has no pixels.")
    try:
        image.seek(0)
        if draft_size and image.format == "JPEG":
            image.draft("RGB", (draft_size, draft_size))
        image.load()
        image = ImageOps.exif_transpose(image)
        return to_rgb(image)
    except Image.DecompressionBombError as exc:
        raise ImageTooLarge() from exc
    except (OSError, ValueError, SyntaxError, EOFError, IndexError, TypeError) as exc:
        raise InvalidImage(f"The image data is corrupt or truncated ({exc}).") from exc


def to_rgb(image: Image.Image) -> Image.Image:
    """Convert any Pillow mode to 8-bit RGB; transparency is composited over white."""
    if image.mode == "RGB":
        return image
    if image.mode in ("I;16", "I;16L", "I;16B", "I;16N", "I", "F"):
        # 16/32-bit greyscale: scale the 16-bit range to 8 bits (convert() would clip).
        pixels = np.asarray(image, dtype=np.float64)
        scale = 257.0 if image.mode.startswith("I") and pixels.max(initial=0) > 255 else 1.0
        grey = np.clip(pixels / scale, 0, 255).astype(np.uint8)
        return Image.fromarray(grey, mode="L").convert("RGB")
    has_alpha = image.mode in ("RGBA", "LA", "PA", "RGBa", "La") or "transparency" in image.info
    if has_alpha:
        rgba = image.convert("RGBA")
        canvas = Image.new("RGBA", rgba.size, WHITE + (255,))
        canvas.alpha_composite(rgba)
        return canvas.convert("RGB")
    return image.convert("RGB")


def preprocess(image: Image.Image, spec: Preprocessing) -> np.ndarray:
    """Resize and centre-crop like the weights' transform; return a HxWx3 uint8 array.

    Pillow resamples only the crop's box of the source (with the same scale and filter
    support as a full resize), which gives the reference transform's pixels without
    materialising the full resized image — so a 1x40000 strip cannot blow up memory.
    """
    width, height = image.size
    short, long = (width, height) if width <= height else (height, width)
    new_short, new_long = spec.resize_size, int(spec.resize_size * long / short)
    new_w, new_h = (new_short, new_long) if width <= height else (new_long, new_short)
    crop = spec.crop_size
    top = int(round((new_h - crop) / 2.0))
    left = int(round((new_w - crop) / 2.0))
    sx, sy = width / new_w, height / new_h
    box = (left * sx, top * sy, (left + crop) * sx, (top + crop) * sy)
    resized = image.resize((crop, crop), spec.resample, box=box)
    return np.asarray(resized, dtype=np.uint8)


def postprocess(probabilities: np.ndarray, labels: list[str], top_k: int) -> list[Prediction]:
    """Return the ``top_k`` labels of one probability row, highest first, rounded to 4 places."""
    k = min(top_k, probabilities.shape[-1])
    top = np.argpartition(-probabilities, k - 1)[:k]
    top = top[np.argsort(-probabilities[top], kind="stable")]
    return [Prediction(label=labels[i], confidence=round(float(probabilities[i]), 4)) for i in top]
