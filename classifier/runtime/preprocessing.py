"""The model's input and output as small functions: decode -> preprocess -> (engine) -> postprocess.

They use Pillow and NumPy only (they release the GIL and start no torch thread pools), so request
threads run them in parallel with inference; the engines (``engines.py``) are the only place that
runs a network, on a batch.
"""

import io
import math
from dataclasses import dataclass
from enum import StrEnum

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from .errors import ImageTooLarge, InvalidImage

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


class CropMode(StrEnum):
    """How the image reaches ``resize_size`` before the ``crop_size`` centre crop (timm's ``crop_mode`` names)."""

    CENTER = "center"  # the short side to resize_size, aspect kept (torchvision's Resize(int), HF shortest_edge)
    SQUASH = "squash"  # both sides to resize_size, aspect not kept (HF's {"height", "width"} sizes)
    BORDER = "border"  # the long side to resize_size, aspect kept, padded with the mean colour


class CropRounding(StrEnum):
    """Where an odd centre crop lands: torchvision and timm round half the margin, Hugging Face rounds it down."""

    ROUND = "round"
    FLOOR = "floor"


class PreprocessingSource(StrEnum):
    """Where a model's preprocessing was read from."""

    CONFIG = "config"  # the model folder's config.json
    LIBRARY = "library"  # the model's library: torchvision's weights, timm's data config, an HF image processor
    DEFAULTS = "defaults"  # ImageNet's, for a torchvision architecture with no transform of its own


RESCALE_255 = 1.0 / 255.0
FULL_RESIZE_FACTOR = 4  # resized images up to this many crops' pixels are made whole, then cropped


@dataclass(frozen=True)
class Preprocessing:
    """Everything between a decoded RGB image and the network's input, stated exactly: resize (``crop_mode``),
    centre-crop to a ``crop_size`` square (``crop_rounding``), channel order, then in the graph
    ``(x * rescale - mean) / std``. ``draft`` lets the JPEG decoder shrink large photos (faster, other pixels)."""

    resize_size: int
    crop_size: int
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    resample: int  # a PIL resampling filter
    crop_mode: CropMode = CropMode.CENTER
    crop_rounding: CropRounding = CropRounding.ROUND
    rescale: float = RESCALE_255
    channels: str = "RGB"  # or "BGR"
    draft: bool = False
    source: PreprocessingSource = PreprocessingSource.DEFAULTS

    @property
    def draft_size(self) -> int | None:
        """The size JPEGs may be drafted to in the decoder, or None for a full decode (the default: exact)."""
        return self.resize_size if self.draft else None

    @property
    def interpolation(self) -> str:
        return next((name for name, value in RESAMPLING.items() if value == self.resample), str(self.resample))

    def to_dict(self) -> dict:
        """JSON-safe, for a compiled artifact's manifest (``from_dict`` reads it back exactly)."""
        return {
            "resize_size": self.resize_size,
            "crop_size": self.crop_size,
            "mean": list(self.mean),
            "std": list(self.std),
            "resample": int(self.resample),
            "crop_mode": str(self.crop_mode),
            "crop_rounding": str(self.crop_rounding),
            "rescale": self.rescale,
            "channels": self.channels,
            "draft": self.draft,
            "source": str(self.source),
        }

    @classmethod
    def from_dict(cls, values: dict) -> "Preprocessing":
        return cls(
            resize_size=int(values["resize_size"]),
            crop_size=int(values["crop_size"]),
            mean=triple(values["mean"]),
            std=triple(values["std"]),
            resample=int(values["resample"]),
            crop_mode=CropMode(values.get("crop_mode", CropMode.CENTER)),
            crop_rounding=CropRounding(values.get("crop_rounding", CropRounding.ROUND)),
            rescale=float(values.get("rescale", RESCALE_255)),
            channels=str(values.get("channels", "RGB")),
            draft=bool(values.get("draft", False)),
            source=PreprocessingSource(values.get("source", PreprocessingSource.DEFAULTS)),
        )

    def describe(self) -> dict:
        """As /api/v2/models and the admin show it."""
        return {
            "resize": {"mode": str(self.crop_mode), "size": self.resize_size},
            "crop": {"size": self.crop_size, "rounding": str(self.crop_rounding)},
            "interpolation": self.interpolation,
            "rescale": self.rescale,
            "mean": list(self.mean),
            "std": list(self.std),
            "channels": self.channels,
            "draft": self.draft,
            "source": str(self.source),
        }


def triple(values) -> tuple[float, float, float]:
    """Three numbers (a mean or a std per channel) as floats."""
    first, second, third = (float(value) for value in values)
    return first, second, third


def resize_for_crop(crop: int, crop_pct: float) -> int:
    """timm's resize for a ``crop_pct`` centre crop: ``floor(crop / crop_pct)`` (HF's ``int()`` is the same)."""
    return math.floor(crop / crop_pct)


# torchvision's ImageNet classifiers' transform: the default for a model that names no other.
IMAGENET = Preprocessing(
    resize_size=256,
    crop_size=224,
    mean=(0.485, 0.456, 0.406),
    std=(0.229, 0.224, 0.225),
    resample=Image.Resampling.BILINEAR,
)


@dataclass(frozen=True)
class Prediction:
    label: str
    confidence: float


def open_image(data: bytes, *, max_pixels: int, draft_size: int | None = None) -> Image.Image:
    """Read a supported image's header, no pixel decoded yet; ``image.size`` is what ``load`` will decode.

    Raises InvalidImage for anything that is not a supported image and ImageTooLarge above
    ``max_pixels``. With ``draft_size``, JPEGs at least twice that size are set to be downscaled by
    the decoder itself (and ``image.size`` is the smaller size).
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
    except (OSError, ValueError, SyntaxError, EOFError, IndexError, TypeError) as exc:
        raise InvalidImage(f"The image data is corrupt or truncated ({exc}).") from exc
    return image


def load(image: Image.Image) -> Image.Image:
    """Decode an image from ``open_image`` (its first frame) into upright RGB.

    Copies only where a conversion needs one: the EXIF rotation is applied in place and only when
    the image has an orientation tag. Raises InvalidImage for corrupt or truncated data.
    """
    try:
        image.load()
        ImageOps.exif_transpose(image, in_place=True)
        return to_rgb(image)
    except Image.DecompressionBombError as exc:
        raise ImageTooLarge() from exc
    except (OSError, ValueError, SyntaxError, EOFError, IndexError, TypeError) as exc:
        raise InvalidImage(f"The image data is corrupt or truncated ({exc}).") from exc


def decode(data: bytes, *, max_pixels: int, draft_size: int | None = None) -> Image.Image:
    """Decode the first frame of a supported image into upright RGB: ``load(open_image(...))``.

    Raises InvalidImage for anything that is not a complete supported image and ImageTooLarge
    above ``max_pixels`` (checked from the header, before any pixel is decoded).
    """
    return load(open_image(data, max_pixels=max_pixels, draft_size=draft_size))


WIDE_GREY_MODES = ("I;16", "I;16L", "I;16B", "I;16N", "I", "F")
ALPHA_MODES = ("RGBA", "LA", "PA", "RGBa", "La")
_GREY_BAND_ROWS = 256  # rows converted at a time: the temporaries stay a band, never the whole image


def to_rgb(image: Image.Image) -> Image.Image:
    """Convert any Pillow mode to 8-bit RGB; transparency is composited over white."""
    if image.mode == "RGB":
        return image
    if image.mode in WIDE_GREY_MODES:
        return _wide_grey_to_l(image).convert("RGB")
    if image.mode in ALPHA_MODES or "transparency" in image.info:
        return _over_white(image)
    return image.convert("RGB")


def _wide_grey_to_l(image: Image.Image) -> Image.Image:
    """16/32-bit greyscale as 8-bit L, the 16-bit range scaled to 8 bits (convert() would clip).

    Integer division by 257 (floats are clipped), a band of rows at a time straight into the 8-bit
    result: one copy of the source in its own dtype plus the result, never a float64 image.
    """
    pixels = np.asarray(image)
    scale = 257 if image.mode.startswith("I") and pixels.max(initial=0) > 255 else 1
    grey = np.empty(pixels.shape, dtype=np.uint8)
    for top in range(0, pixels.shape[0], _GREY_BAND_ROWS):
        band = pixels[top : top + _GREY_BAND_ROWS]
        if scale != 1:
            band = band // scale
        np.clip(band, 0, 255, out=grey[top : top + _GREY_BAND_ROWS], casting="unsafe")
    del pixels
    return Image.fromarray(grey)


def _over_white(image: Image.Image) -> Image.Image:
    """Composite a transparent image over white: the (RGBA) image is pasted through its own alpha
    onto a white RGB canvas, so the only full-size copies are the canvas (and RGBA, when it is not)."""
    rgba = image if image.mode == "RGBA" else image.convert("RGBA")
    canvas = Image.new("RGB", rgba.size, WHITE)
    canvas.paste(rgba, mask=rgba)
    return canvas


def preprocess(image: Image.Image, spec: Preprocessing) -> np.ndarray:
    """Resize and centre-crop as ``spec`` states; return a HxWx3 uint8 array (in ``spec.channels`` order).

    An ordinary photo is resized whole, then cropped: the reference transform's own steps and pixels. When the
    resized image would be much larger than the crop (a 1x40000 strip), Pillow resamples only the crop's box
    of the source (same scale and filter support), so memory stays bounded.
    """
    if spec.crop_mode == CropMode.BORDER:
        pixels = _bordered(image, spec)
    else:
        new_w, new_h = resized_size(image.size, spec)
        crop = spec.crop_size
        top, left = _margin(new_h - crop, spec.crop_rounding), _margin(new_w - crop, spec.crop_rounding)
        if new_w * new_h <= FULL_RESIZE_FACTOR * crop * crop:  # the reference's own steps: resize, then crop
            resized = image.resize((new_w, new_h), spec.resample).crop((left, top, left + crop, top + crop))
        else:  # a long strip: only the crop's box is resampled
            sx, sy = image.width / new_w, image.height / new_h
            box = (left * sx, top * sy, (left + crop) * sx, (top + crop) * sy)
            resized = image.resize((crop, crop), spec.resample, box=box)
        pixels = np.asarray(resized, dtype=np.uint8)
    return pixels[..., ::-1] if spec.channels == "BGR" else pixels


def resized_size(size: tuple[int, int], spec: Preprocessing) -> tuple[int, int]:
    """The (width, height) ``spec`` resizes an image of ``size`` to, before the crop."""
    width, height = size
    if spec.crop_mode == CropMode.SQUASH:
        return spec.resize_size, spec.resize_size
    if spec.crop_mode == CropMode.BORDER:
        ratio = max(width / spec.resize_size, height / spec.resize_size)
        return max(1, round(width / ratio)), max(1, round(height / ratio))
    short, long = (width, height) if width <= height else (height, width)
    new_short, new_long = spec.resize_size, int(spec.resize_size * long / short)
    return (new_short, new_long) if width <= height else (new_long, new_short)


def _margin(extra: int, rounding: CropRounding) -> int:
    return extra // 2 if rounding == CropRounding.FLOOR else int(round(extra / 2.0))


def _bordered(image: Image.Image, spec: Preprocessing) -> np.ndarray:
    """timm's border mode: the long side to resize_size, padded with the mean colour, centre-cropped."""
    new_w, new_h = resized_size(image.size, spec)
    resized = image.resize((new_w, new_h), spec.resample)
    crop = spec.crop_size
    fill = tuple(round(255 * value) for value in spec.mean)
    canvas = Image.new("RGB", (max(crop, new_w), max(crop, new_h)), fill)
    canvas.paste(resized, ((max(crop, new_w) - new_w) // 2, (max(crop, new_h) - new_h) // 2))
    top = _margin(canvas.height - crop, spec.crop_rounding)
    left = _margin(canvas.width - crop, spec.crop_rounding)
    return np.asarray(canvas.crop((left, top, left + crop, top + crop)), dtype=np.uint8)


def postprocess(probabilities: np.ndarray, labels: list[str], top_k: int) -> list[Prediction]:
    """Return the ``top_k`` labels of one probability row, highest first, rounded to 4 places."""
    k = min(top_k, probabilities.shape[-1])
    top = np.argpartition(-probabilities, k - 1)[:k]
    top = top[np.argsort(-probabilities[top], kind="stable")]
    return [Prediction(label=labels[i], confidence=round(float(probabilities[i]), 4)) for i in top]
