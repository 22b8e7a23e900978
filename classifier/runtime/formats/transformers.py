"""Hugging Face ``transformers`` image classifiers as ``save_pretrained`` writes them: config.json
(``model_type``, ``architectures``, ``id2label``), ``model.safetensors`` (or ``pytorch_model.bin``) and the image
processor's ``preprocessor_config.json``.

The preprocessing is the image processor's (its PIL backend, the one that resizes as Pillow does): a fixed
``{"height", "width"}`` resize (no aspect kept), or ``{"shortest_edge"}`` and a centre crop, ConvNeXt's
``crop_pct`` rule (below 384: resize to int(edge / crop_pct), crop; from 384: a square resize), Hugging Face's
crop rounding (down), ``rescale_factor``, ``image_mean`` and ``image_std``.
"""

from pathlib import Path

from ..errors import ArtifactError, first_line
from ..preprocessing import (
    RESAMPLING,
    RESCALE_255,
    CropMode,
    CropRounding,
    Preprocessing,
    PreprocessingSource,
    resize_for_crop,
    triple,
)
from ..sources import CONFIG_FILE
from . import read_json_object, weights_file

PROCESSOR_FILE = "preprocessor_config.json"
CONVNEXT_SQUARE_FROM = 384  # ConvNeXt's processor: a shortest_edge of this or more is resized square, not cropped
DEFAULT_RESAMPLE = 2  # PIL's BILINEAR, what BaseImageProcessor uses when a config names none


def read_config(folder: Path) -> dict:
    config = read_json_object(folder / CONFIG_FILE)
    if not isinstance(config.get("model_type"), str):
        raise ArtifactError(f"{CONFIG_FILE}: a transformers model names its model_type")
    return config


def labels(config: dict) -> list[str]:
    """``id2label`` as a list, its indices 0..n-1 with none missing."""
    id2label = config.get("id2label")
    if not isinstance(id2label, dict) or not id2label:
        raise ArtifactError(f"{CONFIG_FILE}: an image classifier lists its classes in id2label")
    try:
        indexed = {int(index): name for index, name in id2label.items()}
    except ValueError:
        raise ArtifactError(f"{CONFIG_FILE}: the keys of id2label must be integers") from None
    if sorted(indexed) != list(range(len(indexed))):
        raise ArtifactError(f"{CONFIG_FILE}: the indices of id2label must run 0..{len(indexed) - 1}")
    names = [indexed[index] for index in range(len(indexed))]
    if not all(isinstance(name, str) and name for name in names):
        raise ArtifactError(f"{CONFIG_FILE}: id2label's names must be non-empty strings")
    return names


def preprocessing(folder: Path) -> Preprocessing:
    """The image processor's steps, from preprocessor_config.json."""
    if not (folder / PROCESSOR_FILE).is_file():
        raise ArtifactError(
            f"the transformers folder has no {PROCESSOR_FILE} (the image processor: resize, crop, mean, std); "
            "save the processor with the model (processor.save_pretrained(folder))"
        )
    processor = read_json_object(folder / PROCESSOR_FILE)
    resample = processor.get("resample", DEFAULT_RESAMPLE)
    interpolation = next((name for name, value in RESAMPLING.items() if value == resample), None)
    if interpolation is None:
        raise ArtifactError(f"{PROCESSOR_FILE}: resample {resample!r} is not a PIL resampling filter")
    resize, crop, mode = _sizes(processor)
    rescale = float(processor.get("rescale_factor", RESCALE_255)) if processor.get("do_rescale", True) else 1.0
    normalise = processor.get("do_normalize", True)
    return Preprocessing(
        resize_size=resize,
        crop_size=crop,
        mean=triple(processor.get("image_mean", (0.5, 0.5, 0.5))) if normalise else (0.0, 0.0, 0.0),
        std=triple(processor.get("image_std", (0.5, 0.5, 0.5))) if normalise else (1.0, 1.0, 1.0),
        resample=RESAMPLING[interpolation],
        crop_mode=mode,
        crop_rounding=CropRounding.FLOOR,
        rescale=RESCALE_255 if abs(rescale * 255.0 - 1.0) < 1e-9 else rescale,
        source=PreprocessingSource.LIBRARY,
    )


def _sizes(processor: dict) -> tuple[int, int, CropMode]:
    """(resize, crop, mode) of the processor's resize and centre crop; ArtifactError for what cannot be served."""
    if not processor.get("do_resize", True):
        raise ArtifactError(f"{PROCESSOR_FILE}: do_resize is off; images of any size cannot go to the model")
    size = processor.get("size")
    if isinstance(size, int):
        size = {"height": size, "width": size}
    if not isinstance(size, dict):
        raise ArtifactError(f"{PROCESSOR_FILE}: size must be an object")
    kind = str(processor.get("image_processor_type", ""))
    if kind.startswith("ConvNext") and "shortest_edge" in size:
        edge = int(size["shortest_edge"])
        if edge >= CONVNEXT_SQUARE_FROM:
            return edge, edge, CropMode.SQUASH
        return resize_for_crop(edge, float(processor.get("crop_pct") or 224 / 256)), edge, CropMode.CENTER
    if set(size) == {"height", "width"}:
        if size["height"] != size["width"]:
            raise ArtifactError(f"{PROCESSOR_FILE}: a {size['height']}x{size['width']} input is not square")
        resize, mode = int(size["height"]), CropMode.SQUASH
    elif set(size) == {"shortest_edge"}:
        resize, mode = int(size["shortest_edge"]), CropMode.CENTER
    else:
        raise ArtifactError(
            f"{PROCESSOR_FILE}: a size of {sorted(size)} is not served (height and width, or shortest_edge)"
        )
    if not processor.get("do_center_crop", False):
        if mode == CropMode.CENTER:
            raise ArtifactError(f"{PROCESSOR_FILE}: a shortest_edge resize without a centre crop has no fixed size")
        return resize, resize, mode
    crop = processor.get("crop_size", {})
    crop = {"height": crop, "width": crop} if isinstance(crop, int) else crop
    if not isinstance(crop, dict) or crop.get("height") != crop.get("width") or not crop.get("height"):
        raise ArtifactError(f"{PROCESSOR_FILE}: crop_size must be a square's height and width")
    if int(crop["height"]) > resize:
        raise ArtifactError(f"{PROCESSOR_FILE}: the crop is larger than the resized image")
    return resize, int(crop["height"]), mode


def load_network(folder: Path, config: dict):
    """The model through ``AutoModelForImageClassification`` from the folder alone (no hub, no remote code), as a
    module that returns the logits. Imports transformers: compile step only."""
    import torch
    from transformers import AutoModelForImageClassification
    from transformers.models.auto.configuration_auto import CONFIG_MAPPING_NAMES
    from transformers.models.auto.modeling_auto import MODEL_FOR_IMAGE_CLASSIFICATION_MAPPING_NAMES

    model_type = config["model_type"]
    if model_type not in CONFIG_MAPPING_NAMES:
        raise ArtifactError(f"{CONFIG_FILE}: model_type {model_type!r} is not a model type transformers knows")
    if model_type not in MODEL_FOR_IMAGE_CLASSIFICATION_MAPPING_NAMES:
        raise ArtifactError(f"{CONFIG_FILE}: model_type {model_type!r} has no image classifier in transformers")
    path = weights_file(folder)
    try:
        model = AutoModelForImageClassification.from_pretrained(
            str(folder), local_files_only=True, trust_remote_code=False
        )
    except Exception as exc:  # noqa: BLE001 - the library's own reason, first line
        reason = first_line(exc).replace(str(folder), "<model folder>")
        if any(sign in reason for sign in ("mismatched_sizes", "size mismatch", "shape")):
            labels = len(config.get("id2label", {}))
            reason = f"the weights' shapes do not fit config.json (id2label has {labels} labels; does the head?)"
        raise ArtifactError(f"transformers cannot load the model from {path.name}: {reason}") from exc

    class Logits(torch.nn.Module):
        """The model's logits (a transformers model answers with an output object)."""

        def __init__(self, network: torch.nn.Module):
            super().__init__()
            self.network = network

        def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
            return self.network(pixel_values=pixel_values).logits

    return Logits(model.eval()).eval()
