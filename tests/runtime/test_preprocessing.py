import io
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import torchvision
from PIL import Image

from classifier.runtime import preprocessing as pipeline
from classifier.runtime.artifacts import load_artifact
from classifier.runtime.errors import ImageTooLarge, InvalidImage
from classifier.runtime.sources import ModelSource
from tests.live.server import ROOT

MAX_PIXELS = 40_000_000


@pytest.fixture(scope="module")
def spec():
    return load_artifact(ModelSource(name="resnet18", architecture="resnet18", weights="random")).preprocessing


def encode(image: Image.Image, fmt: str, **kwargs) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **kwargs)
    return buffer.getvalue()


def photo(size=(500, 375), seed=0) -> Image.Image:
    """A photo-like image with detail at every scale (noise over gradients)."""
    rng = np.random.default_rng(seed)
    w, h = size
    x, y = np.meshgrid(np.linspace(0, 1, w), np.linspace(0, 1, h))
    base = np.stack([x * 255, y * 255, (1 - x) * 200], axis=-1)
    noisy = np.clip(base + rng.normal(0, 25, base.shape), 0, 255).astype(np.uint8)
    return Image.fromarray(noisy, "RGB")


def normalised(pixels: np.ndarray, spec) -> torch.Tensor:
    tensor = torch.from_numpy(pixels.copy()).permute(2, 0, 1).float() / 255.0
    return (tensor - torch.tensor(spec.mean).view(3, 1, 1)) / torch.tensor(spec.std).view(3, 1, 1)


@pytest.mark.parametrize("size", [(500, 375), (375, 500), (224, 224), (1000, 300), (257, 1999)])
def test_preprocess_matches_the_weights_reference_transform(spec, size):
    image = photo(size)
    reference = torchvision.models.ResNet18_Weights.DEFAULT.transforms()(image)
    ours = normalised(pipeline.preprocess(image, spec), spec)
    assert ours.shape == reference.shape == (3, 224, 224)
    # One 8-bit level (1/255 before normalisation, ~0.0175 after) covers rounding differences.
    assert torch.max(torch.abs(ours - reference)).item() <= 1.01 / 255 / min(spec.std)


def test_preprocess_of_an_extreme_strip_stays_small(spec):
    strip = Image.new("RGB", (40_000, 1), (10, 20, 30))
    assert pipeline.preprocess(strip, spec).shape == (224, 224, 3)


def test_jpeg_draft_decoding_stays_within_tolerance_of_full_decode(spec):
    data = encode(photo((2000, 1500), seed=3), "JPEG", quality=92)
    full = normalised(pipeline.preprocess(pipeline.decode(data, max_pixels=MAX_PIXELS), spec), spec)
    draft = pipeline.decode(data, max_pixels=MAX_PIXELS, draft_size=spec.resize_size)
    assert draft.size[0] < 2000  # the decoder downscaled
    fast = normalised(pipeline.preprocess(draft, spec), spec)
    assert torch.mean(torch.abs(fast - full)).item() < 0.05


@pytest.mark.parametrize("fmt", pipeline.SUPPORTED_FORMATS)
def test_every_supported_format_decodes_to_rgb(fmt):
    image = pipeline.decode(encode(Image.new("RGB", (40, 30), (200, 10, 10)), fmt), max_pixels=MAX_PIXELS)
    assert image.mode == "RGB" and image.size == (40, 30)


@pytest.mark.parametrize(
    "mode,fmt",
    [
        ("P", "PNG"),
        ("RGBA", "PNG"),
        ("LA", "PNG"),
        ("L", "JPEG"),
        ("CMYK", "JPEG"),
        ("I;16", "PNG"),
        ("1", "BMP"),
        ("RGBA", "WEBP"),
    ],
)
def test_any_mode_becomes_rgb(mode, fmt):
    source = Image.new("RGB", (16, 16), (120, 120, 120)).convert(mode)
    assert pipeline.decode(encode(source, fmt), max_pixels=MAX_PIXELS).mode == "RGB"


def test_sixteen_bit_greyscale_keeps_its_brightness():
    grey16 = Image.fromarray(np.full((8, 8), 32768, dtype=np.uint16))
    rgb = pipeline.decode(encode(grey16, "PNG"), max_pixels=MAX_PIXELS)
    assert abs(rgb.getpixel((0, 0))[0] - 127) <= 1


def test_transparent_pixels_are_composited_over_white():
    clear = Image.new("RGBA", (8, 8), (0, 0, 0, 0))
    assert pipeline.decode(encode(clear, "PNG"), max_pixels=MAX_PIXELS).getpixel((0, 0)) == (255, 255, 255)


def test_first_frame_of_an_animation_is_used():
    frames = [Image.new("RGB", (8, 8), colour) for colour in [(255, 0, 0), (0, 0, 255)]]
    data = encode(frames[0], "GIF", save_all=True, append_images=frames[1:])
    red, green, blue = pipeline.decode(data, max_pixels=MAX_PIXELS).getpixel((0, 0))
    assert red > 200 and blue < 50


def test_exif_orientation_is_honoured():
    image = Image.new("RGB", (40, 20), (255, 0, 0))  # stored landscape
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90° clockwise for display
    data = encode(image, "JPEG", exif=exif.tobytes())
    assert pipeline.decode(data, max_pixels=MAX_PIXELS).size == (20, 40)


RGB_BYTES_PER_PIXEL = 4  # how Pillow holds an RGB image in memory
LARGE = (4000, 2500)


def large(kind: str) -> Image.Image:
    """A 10-megapixel picture that compresses to a few KB, like the hostile PNGs of the hardening issue."""
    w, h = LARGE
    if kind == "grey16":
        pixels = np.full((h, w), 32768, dtype=np.uint16)
        pixels[::100] = 65535
        return Image.fromarray(pixels)
    if kind == "transparent":
        pixels = np.zeros((h, w, 4), dtype=np.uint8)
        pixels[..., 0], pixels[::50, :, 3] = 200, 255
        return Image.fromarray(pixels, "RGBA")
    pixels = np.zeros((h, w, 3), dtype=np.uint8)
    pixels[::50] = 255
    return Image.fromarray(pixels, "RGB")


# Run in a fresh process, whose heap holds no memory freed by earlier tests (that would hide growth):
# Django with only the app classifier.api.exceptions imports, so no model loads; VmHWM is reset after imports.
PEAK_RSS_GROWTH = r"""
import re, sys
from pathlib import Path
import django
from django.conf import settings
settings.configure(INSTALLED_APPS=["django.contrib.contenttypes", "django.contrib.auth", "accounts"])
django.setup()
from classifier.runtime import preprocessing as pipeline
def kb(field):
    return int(re.search(field + r":\s+(\d+) kB", Path("/proc/self/status").read_text()).group(1))
data = Path(sys.argv[1]).read_bytes()
Path("/proc/self/clear_refs").write_text("5")
before = kb("VmRSS")
pipeline.preprocess(pipeline.decode(data, max_pixels=int(sys.argv[2])), pipeline.IMAGENET)
print((kb("VmHWM") - before) * 1024)
"""


def peak_rss_growth(data: bytes, tmp_path) -> int:
    """Bytes a fresh process's peak RSS rises while it decodes and preprocesses ``data`` (Linux)."""
    if not Path("/proc/self/clear_refs").exists():
        pytest.skip("needs Linux's /proc/self/clear_refs to reset the peak RSS")
    path = tmp_path / "image"
    path.write_bytes(data)
    result = subprocess.run(
        [sys.executable, "-c", PEAK_RSS_GROWTH, str(path), str(MAX_PIXELS)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    return int(result.stdout.strip())


# The full-size copies decoding may hold at its peak, in RGB images' worth: 16-bit grey is the decoded
# 16-bit image, one copy of it and the RGB result (2.25); transparent is the RGBA image and the RGB canvas;
# an RGB picture without an orientation tag is only itself. float64 and an unconditional exif_transpose
# copy put them at about 7, 4 and 2.
@pytest.mark.parametrize("kind,copies", [("grey16", 2.25), ("transparent", 2), ("rgb", 1)])
def test_decoding_a_large_image_holds_only_the_copies_its_conversion_needs(tmp_path, kind, copies):
    growth = peak_rss_growth(encode(large(kind), "PNG"), tmp_path)
    pixels = LARGE[0] * LARGE[1]
    assert growth <= (copies + 0.5) * RGB_BYTES_PER_PIXEL * pixels, f"{growth / pixels:.1f} bytes per pixel"


def test_wide_greyscale_is_scaled_and_clipped_to_eight_bits():
    wide = Image.fromarray(np.array([[0, 257 * 100, 65535, 70000, -5]], dtype=np.int32), "I")
    assert list(pipeline.to_rgb(wide).get_flattened_data()) == [(0,) * 3, (100,) * 3, (255,) * 3, (255,) * 3, (0,) * 3]
    floats = Image.fromarray(np.array([[-1.0, 12.7, 300.0]], dtype=np.float32), "F")
    assert [pixel[0] for pixel in pipeline.to_rgb(floats).get_flattened_data()] == [0, 12, 255]


def test_half_transparent_pixels_are_blended_with_white():
    half = Image.new("RGBA", (4, 4), (0, 0, 0, 128))
    red, green, blue = pipeline.decode(encode(half, "PNG"), max_pixels=MAX_PIXELS).getpixel((0, 0))
    assert red == green == blue and abs(red - 127) <= 1


def test_open_image_reports_the_pixels_to_decode_before_decoding_them():
    data = encode(photo((2000, 1500)), "JPEG")
    image = pipeline.open_image(data, max_pixels=MAX_PIXELS, draft_size=256)
    assert image.size == (500, 375)  # the decoder's draft: what load() will decode, and what it costs
    assert pipeline.load(image).size == (500, 375)


@pytest.mark.parametrize(
    "data",
    [b"", b"not an image at all", encode(Image.new("RGB", (8, 8)), "ICO"), encode(Image.new("RGB", (8, 8)), "PPM")],
    ids=["empty", "text", "ico-unsupported", "ppm-unsupported"],
)
def test_unsupported_or_non_images_are_invalid(data):
    with pytest.raises(InvalidImage):
        pipeline.decode(data, max_pixels=MAX_PIXELS)


@pytest.mark.parametrize("fmt", ["JPEG", "PNG", "WEBP", "GIF", "BMP", "TIFF"])
def test_truncated_images_are_invalid(fmt):
    data = encode(photo((64, 64)), fmt)
    with pytest.raises(InvalidImage):
        pipeline.decode(data[: len(data) // 2], max_pixels=MAX_PIXELS)


def test_images_over_the_pixel_limit_are_refused_before_decoding():
    data = encode(Image.new("L", (3000, 3000)), "PNG")
    with pytest.raises(ImageTooLarge):
        pipeline.decode(data, max_pixels=1000 * 1000)


def test_postprocess_returns_top_k_sorted_and_rounded():
    probabilities = np.array([0.1, 0.5, 0.05, 0.3, 0.05], dtype=np.float32)
    predictions = pipeline.postprocess(probabilities, list("abcde"), top_k=3)
    assert [p.label for p in predictions] == ["b", "d", "a"]
    assert [p.confidence for p in predictions] == [0.5, 0.3, 0.1]


def test_jpegs_are_decoded_in_full_unless_a_model_asks_for_draft(spec):
    assert not spec.draft and spec.draft_size is None and not pipeline.IMAGENET.draft
    drafting = pipeline.Preprocessing.from_dict({**spec.to_dict(), "draft": True})
    assert drafting.draft_size == spec.resize_size
    data = encode(photo((2400, 1800)), "JPEG", quality=90)
    assert pipeline.open_image(data, max_pixels=MAX_PIXELS, draft_size=spec.draft_size).size == (2400, 1800)
    assert pipeline.open_image(data, max_pixels=MAX_PIXELS, draft_size=drafting.draft_size).size[0] < 2400


def _spec(**fields) -> pipeline.Preprocessing:
    return pipeline.Preprocessing.from_dict({**pipeline.IMAGENET.to_dict(), **fields})


@pytest.mark.parametrize("size", [(500, 375), (333, 777), (224, 224)])
def test_squash_resizes_both_sides_without_keeping_the_aspect(size):
    from torchvision.transforms import CenterCrop, InterpolationMode, Resize

    image = photo(size)
    spec = _spec(crop_mode="squash", resize_size=240, crop_size=224)
    reference = np.asarray(CenterCrop(224)(Resize((240, 240), interpolation=InterpolationMode.BILINEAR)(image)))
    assert np.array_equal(pipeline.preprocess(image, spec), reference)


@pytest.mark.parametrize("rounding,expected_left", [("round", 2), ("floor", 1)])
def test_an_odd_margin_is_rounded_as_the_library_does(rounding, expected_left):
    ramp = np.tile(np.arange(227, dtype=np.uint8), (224, 1))  # column x has value x: the crop's left edge shows
    image = Image.fromarray(np.stack([ramp] * 3, axis=-1))
    spec = _spec(resize_size=224, crop_size=224, crop_rounding=rounding, resample=Image.Resampling.NEAREST)
    assert pipeline.preprocess(image, spec)[0, 0, 0] == expected_left


def test_border_pads_with_the_mean_colour_and_keeps_the_whole_picture():
    image = Image.new("RGB", (400, 100), (0, 0, 0))
    pixels = pipeline.preprocess(image, _spec(crop_mode="border", resize_size=224, crop_size=224))
    assert pixels.shape == (224, 224, 3)
    assert tuple(pixels[0, 0]) == tuple(round(255 * v) for v in pipeline.IMAGENET.mean)  # the padding
    assert tuple(pixels[112, 0]) == (0, 0, 0)  # the picture, its full width kept


def test_bgr_channel_order_reverses_the_channels():
    image = Image.new("RGB", (64, 64), (10, 20, 30))
    pixels = pipeline.preprocess(image, _spec(resize_size=32, crop_size=32, channels="BGR"))
    assert tuple(pixels[0, 0]) == (30, 20, 10)
