"""timm checkpoint folders (``timm.models.save_for_hf``, what ``push_to_hf_hub`` uploads): config.json with
``architecture``, ``num_classes``, ``label_names``, ``model_args`` and ``pretrained_cfg``, plus the weights.

The preprocessing is timm's eval transform (``timm.data.create_transform(**resolve_data_config(...))``) stated
exactly: ``input_size``, ``interpolation``, ``crop_pct`` (resize = floor(size / crop_pct)), ``crop_mode``,
``mean``, ``std``.
"""

from pathlib import Path

from ..errors import ArtifactError, first_line
from ..preprocessing import (
    RESAMPLING,
    CropMode,
    CropRounding,
    Preprocessing,
    PreprocessingSource,
    resize_for_crop,
    triple,
)
from ..sources import CONFIG_FILE
from . import read_json_object, weights_file

# timm's defaults (timm.data.constants, resolve_data_config) for what a pretrained_cfg leaves out.
DEFAULT_CROP_PCT = 0.875
DEFAULT_MEAN, DEFAULT_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
DEFAULT_INTERPOLATION = "bicubic"


def read_config(folder: Path) -> dict:
    config = read_json_object(folder / CONFIG_FILE)
    if not isinstance(config.get("architecture"), str):
        raise ArtifactError(f"{CONFIG_FILE}: a timm checkpoint names its 'architecture'")
    if not isinstance(config.get("pretrained_cfg", {}), dict):
        raise ArtifactError(f"{CONFIG_FILE}: pretrained_cfg must be an object")
    return config


def labels(config: dict) -> list[str]:
    """``label_names`` (a list, or an index-to-name object), as many as ``num_classes``."""
    names = config.get("label_names", config.get("pretrained_cfg", {}).get("label_names"))
    if isinstance(names, dict):
        names = [names.get(str(index)) for index in range(len(names))]
    if not isinstance(names, list) or not names or not all(isinstance(name, str) and name for name in names):
        raise ArtifactError(f"{CONFIG_FILE}: label_names must list the classes' names")
    classes = config.get("num_classes", config.get("pretrained_cfg", {}).get("num_classes"))
    if classes is not None and classes != len(names):
        raise ArtifactError(f"{CONFIG_FILE}: num_classes is {classes} but label_names has {len(names)} names")
    return names


def preprocessing(config: dict) -> Preprocessing:
    """timm's eval transform for this checkpoint's pretrained_cfg."""
    cfg = config.get("pretrained_cfg", {})
    input_size = cfg.get("input_size", (3, 224, 224))
    if not (isinstance(input_size, list | tuple) and len(input_size) == 3 and input_size[0] == 3):
        raise ArtifactError(f"{CONFIG_FILE}: pretrained_cfg.input_size must be [3, height, width]")
    height, width = int(input_size[1]), int(input_size[2])
    if height != width:
        raise ArtifactError(f"{CONFIG_FILE}: an input of {height}x{width} is not square; only square inputs serve")
    interpolation = cfg.get("interpolation") or DEFAULT_INTERPOLATION
    if interpolation not in RESAMPLING:
        raise ArtifactError(f"{CONFIG_FILE}: interpolation {interpolation!r} is not one of {', '.join(RESAMPLING)}")
    crop_mode = cfg.get("crop_mode") or CropMode.CENTER
    if crop_mode not in [mode.value for mode in CropMode]:
        raise ArtifactError(f"{CONFIG_FILE}: crop_mode {crop_mode!r} is not one of center, squash, border")
    crop_pct = float(cfg.get("crop_pct") or DEFAULT_CROP_PCT)
    return Preprocessing(
        resize_size=resize_for_crop(height, crop_pct),
        crop_size=height,
        mean=triple(cfg.get("mean", DEFAULT_MEAN)),
        std=triple(cfg.get("std", DEFAULT_STD)),
        resample=RESAMPLING[interpolation],
        crop_mode=CropMode(crop_mode),
        crop_rounding=CropRounding.ROUND,
        source=PreprocessingSource.LIBRARY,
    )


def load_network(folder: Path, config: dict, num_classes: int):
    """The timm network of ``config``, its weights loaded strictly (safetensors, or a pickle with
    ``weights_only=True``). Imports timm: compile step only."""
    import timm
    import torch

    path = weights_file(folder)
    try:
        arguments = {**config.get("model_args", {}), "num_classes": num_classes}
        network = timm.create_model(config["architecture"], pretrained=False, **arguments)
    except Exception as exc:  # noqa: BLE001 - an unknown architecture, arguments it does not take
        raise ArtifactError(f"timm cannot build {config['architecture']!r} ({first_line(exc)})") from exc
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            state_dict = load_file(str(path))
        else:
            state_dict = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - any failure means "not loadable weights"
        raise ArtifactError(f"{path.name} is not loadable weights ({first_line(exc)})") from exc
    try:
        network.load_state_dict(state_dict)
    except RuntimeError as exc:
        first = str(exc).split("\n\t")[1:2] or [str(exc)]
        raise ArtifactError(f"{path.name} does not fit {config['architecture']}: {first[0].strip()}") from exc
    return network.eval()
