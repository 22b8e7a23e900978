"""What a configured model is made of: its network, its labels and its preprocessing.

A model comes from one of two places:

- a torchvision name (``resnet18``) with weights: ``default`` (torchvision's pretrained weights,
  downloaded once), ``random`` (untrained), ``trivial`` (the benchmark's near-free network) or a
  state_dict file for the 1000-class ImageNet head;
- a model folder, the layout model servers use::

      flowers/
        model.pt | model.ts | model.onnx   # exactly one: a state_dict, TorchScript or ONNX
        labels.json                        # ["daisy", ...] or {"0": "daisy", ...} (index_to_name.json)
        config.json                        # optional: architecture, resize, crop, mean, std, interpolation

``load_artifact`` turns either into an ``Artifact``, or raises ``ArtifactError`` whose message
names the problem but never the server's paths (it is shown to API users).
"""

import hashlib
import json
import logging
import math
from dataclasses import dataclass, field, replace
from pathlib import Path

import torch
import torchvision
from torchvision.transforms.functional import pil_modes_mapping

from .errors import ArtifactError
from .formats import FolderKind, folder_kind
from .formats import timm as timm_format
from .formats import transformers as transformers_format
from .preprocessing import (
    IMAGENET,
    RESAMPLING,
    CropMode,
    CropRounding,
    Preprocessing,
    PreprocessingSource,
    resize_for_crop,
    triple,
)
from .sources import CONFIG_FILE, LABELS_FILE, MODEL_FILES, ModelSource, file_sha256

logger = logging.getLogger(__name__)

CONFIG_KEYS = {
    "architecture",
    "resize",
    "crop",
    "crop_pct",
    "crop_mode",
    "crop_rounding",
    "mean",
    "std",
    "interpolation",
    "rescale_factor",
    "channel_order",
    "draft",
}


@dataclass
class Artifact:
    """A loaded model's parts, before an engine runs them."""

    kind: str  # "torchvision", "state_dict", "torchscript", "onnx", "timm" or "transformers"
    labels: list[str]
    preprocessing: Preprocessing
    pretrained: bool
    fingerprint: str | None  # names these exact weights and preprocessing; None: random weights
    module: torch.nn.Module | None = field(default=None, repr=False)  # torch kinds
    onnx: bytes | None = field(default=None, repr=False)  # the "onnx" kind: the graph as the operator gave it


def load_artifact(source: ModelSource) -> Artifact:
    """Load ``source``'s network, labels and preprocessing; raises ArtifactError (safe to show)."""
    if source.folder is not None:
        try:
            return _load_folder(source.folder)
        except ArtifactError as exc:
            raise ArtifactError(_scrub(str(exc), source.folder)) from exc
    return _load_torchvision(source.architecture or source.name, source.weights)


def _load_torchvision(name: str, weights: str) -> Artifact:
    reference = _reference_weights(name) if name in torchvision.models.list_models(module=torchvision.models) else None
    if reference is None:
        raise ArtifactError(f"unknown torchvision model {name!r}")
    labels = list(reference.meta["categories"])
    if weights == "default":
        module = torchvision.models.get_model(name, weights=reference)
        fingerprint = f"{name}:{reference.name}"
    elif weights == "random":
        module, fingerprint = torchvision.models.get_model(name, weights=None), None
    elif weights == "trivial":
        module, fingerprint = TrivialClassifier(len(labels)), None
    else:
        path = Path(weights)
        if not path.is_file():
            raise ArtifactError(f"the weights file {path.name} does not exist")
        module = torchvision.models.get_model(name, weights=None)
        _load_state_dict(module, path)
        fingerprint = f"{name}:file:{file_digest(path)}"
    return Artifact(
        kind="torchvision",
        labels=labels,
        preprocessing=_from_transform(reference),
        pretrained=weights != "random",
        fingerprint=fingerprint,
        module=module.eval(),
    )


def _load_folder(folder: Path) -> Artifact:
    library = folder_kind(folder)
    if library is not None:
        return _load_library_folder(folder, library)
    config = _read_config(folder)
    labels = _read_labels(folder)
    present = [name for name in MODEL_FILES if (folder / name).is_file()]
    if not present:
        raise ArtifactError(f"the model folder has no model file (one of {', '.join(MODEL_FILES)})")
    if len(present) > 1:
        raise ArtifactError(f"the model folder has more than one model file ({', '.join(present)}); keep one")
    model_file = folder / present[0]
    kind = MODEL_FILES[present[0]]
    if kind != "state_dict" and not (folder / CONFIG_FILE).is_file():
        raise ArtifactError(
            f"the model folder has no {CONFIG_FILE}: the preprocessing of a {present[0]} cannot be inferred from it; "
            "write config.json with its resize, crop, mean, std and interpolation (docs/models.md)"
        )
    architecture = config.get("architecture")
    module, onnx, data_files = None, None, list[str]()
    if kind == "state_dict":
        if architecture is None:
            raise ArtifactError("model.pt is a state_dict: config.json must name its torchvision 'architecture'")
        module = torchvision.models.get_model(architecture, weights=None, num_classes=len(labels))
        _load_state_dict(module, model_file)
    elif kind == "torchscript":
        try:
            module = torch.jit.load(str(model_file), map_location="cpu")
        except Exception as exc:  # noqa: BLE001 - any failure means "not a TorchScript file"
            raise ArtifactError(f"model.ts is not a loadable TorchScript module ({type(exc).__name__})") from exc
    else:
        onnx, data_files = read_onnx(model_file)
    digest = hashlib.sha256()
    for part in (model_file, folder / LABELS_FILE, folder / CONFIG_FILE, *(folder / name for name in data_files)):
        if part.is_file():
            digest.update(part.read_bytes())
    return Artifact(
        kind=kind,
        labels=labels,
        preprocessing=_preprocessing(config),
        pretrained=True,
        fingerprint=f"{kind}:{digest.hexdigest()[:32]}",
        module=module.eval() if module is not None else None,
        onnx=onnx,
    )


def _load_library_folder(folder: Path, library: FolderKind) -> Artifact:
    """A folder as timm or transformers saved it: the library's reader states its labels and preprocessing, the
    library loads its network."""
    if library == FolderKind.TIMM:
        config = timm_format.read_config(folder)
        labels = timm_format.labels(config)
        spec = timm_format.preprocessing(config)
        module = timm_format.load_network(folder, config, len(labels))
    else:
        config = transformers_format.read_config(folder)
        labels = transformers_format.labels(config)
        spec = transformers_format.preprocessing(folder)
        module = transformers_format.load_network(folder, config)
    if config.get("draft") is True:  # the one key of ours such a config.json may hold
        spec = replace(spec, draft=True)
    digest = hashlib.sha256()
    for path in sorted(p for p in folder.iterdir() if p.is_file() and not p.name.startswith(".")):
        digest.update(path.name.encode() + b"\0" + file_sha256(path).encode())
    return Artifact(
        kind=str(library),
        labels=labels,
        preprocessing=spec,
        pretrained=True,
        fingerprint=f"{library}:{digest.hexdigest()[:32]}",
        module=module,
    )


def _read_labels(folder: Path) -> list[str]:
    path = folder / LABELS_FILE
    if not path.is_file():
        raise ArtifactError(f"the model folder has no {LABELS_FILE}")
    labels = _read_json(path)
    if isinstance(labels, dict):  # TorchServe's index_to_name.json: {"0": "daisy", ...}
        try:
            indexed = {int(index): name for index, name in labels.items()}
        except ValueError:
            raise ArtifactError(f"{LABELS_FILE}: the keys of an index-to-name object must be integers") from None
        if sorted(indexed) != list(range(len(indexed))):
            raise ArtifactError(f"{LABELS_FILE}: the indices must run 0..{len(indexed) - 1} with none missing")
        labels = [indexed[index] for index in range(len(indexed))]
    if not isinstance(labels, list) or not labels or not all(isinstance(label, str) and label for label in labels):
        raise ArtifactError(f"{LABELS_FILE} must be a non-empty list of label strings, or an index-to-name object")
    return labels


def _read_config(folder: Path) -> dict:
    path = folder / CONFIG_FILE
    if not path.is_file():
        return {}
    config = _read_json(path)
    if not isinstance(config, dict):
        raise ArtifactError(f"{CONFIG_FILE} must be an object")
    unknown = sorted(set(config) - CONFIG_KEYS)
    if unknown:
        raise ArtifactError(
            f"{CONFIG_FILE}: unknown keys {', '.join(unknown)} (known: {', '.join(sorted(CONFIG_KEYS))})"
        )
    architecture = config.get("architecture")
    if architecture is not None and architecture not in torchvision.models.list_models(module=torchvision.models):
        raise ArtifactError(f"{CONFIG_FILE}: architecture {architecture!r} is not a torchvision classifier")
    for key in ("resize", "crop"):
        if key in config and not (
            isinstance(config[key], int) and not isinstance(config[key], bool) and 1 <= config[key] <= 4096
        ):
            raise ArtifactError(f"{CONFIG_FILE}: {key} must be an integer from 1 to 4096")
    for key in ("mean", "std"):
        if key in config and not (
            isinstance(config[key], list)
            and len(config[key]) == 3
            and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in config[key])
        ):
            raise ArtifactError(f"{CONFIG_FILE}: {key} must be a list of 3 numbers")
    for key in ("mean", "std"):
        if key in config and not all(math.isfinite(v) for v in config[key]):
            raise ArtifactError(f"{CONFIG_FILE}: {key} values must be finite numbers")
    if "std" in config and any(v <= 0 for v in config["std"]):
        raise ArtifactError(f"{CONFIG_FILE}: std values must be positive")
    if "interpolation" in config and config["interpolation"] not in RESAMPLING:
        raise ArtifactError(f"{CONFIG_FILE}: interpolation must be one of {', '.join(RESAMPLING)}")
    _check_choices(config)
    if "crop_pct" in config and "resize" in config:
        raise ArtifactError(f"{CONFIG_FILE}: give resize or crop_pct, not both")
    if config.get("crop", 0) > config.get("resize", 1 << 30):
        raise ArtifactError(f"{CONFIG_FILE}: crop must not be larger than resize")
    return config


def _check_choices(config: dict) -> None:
    choices = {
        "crop_mode": [mode.value for mode in CropMode],
        "crop_rounding": [rounding.value for rounding in CropRounding],
        "channel_order": ["RGB", "BGR"],
    }
    for key, allowed in choices.items():
        if key in config and config[key] not in allowed:
            raise ArtifactError(f"{CONFIG_FILE}: {key} must be one of {', '.join(allowed)}")
    for key, high in (("crop_pct", 2.0), ("rescale_factor", 1.0)):
        value = config.get(key)
        if key in config and not (isinstance(value, int | float) and not isinstance(value, bool) and 0 < value <= high):
            raise ArtifactError(f"{CONFIG_FILE}: {key} must be a number above 0 and at most {high:g}")
    if "draft" in config and not isinstance(config["draft"], bool):
        raise ArtifactError(f"{CONFIG_FILE}: draft must be true or false")


def _read_json(path: Path):
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ArtifactError(f"{path.name} is not valid JSON ({exc})") from exc


def _preprocessing(config: dict) -> Preprocessing:
    """config.json's values, else the architecture's torchvision weights' transform, else ImageNet's."""
    architecture = config.get("architecture")
    reference = _reference_weights(architecture) if architecture else None
    base = _from_transform(reference) if reference is not None else IMAGENET
    crop = config.get("crop", base.crop_size)
    if "crop_pct" in config:
        resize = resize_for_crop(crop, config["crop_pct"])
    else:
        resize = config.get("resize", base.resize_size)
        crop = config.get("crop", min(base.crop_size, resize))
    return Preprocessing(
        resize_size=resize,
        crop_size=crop,
        mean=triple(config.get("mean", base.mean)),
        std=triple(config.get("std", base.std)),
        resample=RESAMPLING[config["interpolation"]] if "interpolation" in config else base.resample,
        crop_mode=CropMode(config.get("crop_mode", CropMode.CENTER)),
        crop_rounding=CropRounding(config.get("crop_rounding", CropRounding.ROUND)),
        rescale=float(config.get("rescale_factor", base.rescale)),
        channels=config.get("channel_order", "RGB"),
        draft=config.get("draft", False),
        source=PreprocessingSource.CONFIG if set(config) - {"architecture", "draft"} else base.source,
    )


def read_onnx(model_file: Path) -> tuple[bytes, list[str]]:
    """An ONNX graph with its weights inside, and the external data files it read (``torch.onnx.export``'s
    ``model.onnx.data``). External data is read only from plain file names in the graph's own folder: an absolute
    path, a ``..``, a sub-folder or a link is refused, so a graph cannot make the server read another file."""
    import onnx
    from onnx.external_data_helper import ExternalDataInfo, _get_all_tensors, load_external_data_for_model

    raw = model_file.read_bytes()
    try:
        graph = onnx.load_from_string(raw)
    except Exception:  # noqa: BLE001 - not a graph: onnxruntime says why when it tries to load it
        return raw, []
    names = sorted(
        {
            ExternalDataInfo(tensor).location
            for tensor in _get_all_tensors(graph)
            if tensor.data_location == onnx.TensorProto.EXTERNAL
        }
    )
    if not names:
        return raw, []
    folder = model_file.parent
    for name in names:
        path = folder / name
        if not name or name != Path(name).name or name in (".", "..") or "\\" in name:
            raise ArtifactError(
                f"model.onnx names external data {name!r}: only a file name in the model folder is allowed"
            )
        if path.is_symlink() or not path.is_file():
            raise ArtifactError(f"model.onnx's external data file {name} is not a file in the model folder")
    try:
        load_external_data_for_model(graph, str(folder))
    except Exception as exc:  # noqa: BLE001 - offsets or lengths beyond the file
        raise ArtifactError(f"model.onnx's external data does not load ({type(exc).__name__})") from exc
    return graph.SerializeToString(), names


def _reference_weights(name: str):
    """torchvision's DEFAULT weights enum of classifier ``name``, or None when it has none."""
    try:
        return torchvision.models.get_model_weights(name).DEFAULT
    except (ValueError, KeyError, AttributeError):
        return None


def _from_transform(reference) -> Preprocessing:
    transform = reference.transforms()
    return Preprocessing(
        resize_size=int(transform.resize_size[0]),
        crop_size=int(transform.crop_size[0]),
        mean=tuple(transform.mean),
        std=tuple(transform.std),
        resample=pil_modes_mapping[transform.interpolation],
        source=PreprocessingSource.LIBRARY,
    )


def _load_state_dict(module: torch.nn.Module, path: Path) -> None:
    """Load a state_dict with ``weights_only=True`` (no pickled code runs); ArtifactError if it does not fit."""
    try:
        state_dict = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - any failure means "not a safe state_dict"
        raise ArtifactError(f"{path.name} is not a loadable state_dict ({type(exc).__name__})") from exc
    if not isinstance(state_dict, dict):
        raise ArtifactError(f"{path.name} is not a state_dict (a {type(state_dict).__name__})")
    try:
        module.load_state_dict(state_dict)
    except RuntimeError as exc:
        first = str(exc).split("\n\t")[1:2] or [str(exc)]
        raise ArtifactError(f"{path.name} does not fit the architecture: {first[0].strip()}") from exc


def file_digest(path: Path) -> str:
    return file_sha256(path)[:16]


def _scrub(message: str, folder: Path) -> str:
    """``message`` without the server's paths to ``folder``."""
    for path in {str(folder.resolve()), str(folder)}:
        message = message.replace(path, "<model folder>")
    return message


class TrivialClassifier(torch.nn.Module):
    """Benchmark mode (CLASSIFIER_WEIGHTS=trivial): near-free logits in place of the network, so that a
    benchmark measures the service's own cost per request (auth, limits, logging, parsing, decoding)."""

    def __init__(self, num_classes: int):
        super().__init__()
        self.classes = torch.nn.Linear(3, num_classes)

    def forward(self, batch: torch.Tensor) -> torch.Tensor:
        return self.classes(batch.mean(dim=(2, 3)))
