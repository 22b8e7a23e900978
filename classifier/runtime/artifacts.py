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
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torchvision
from torchvision.transforms.functional import pil_modes_mapping

from .errors import ArtifactError
from .preprocessing import IMAGENET, RESAMPLING, Preprocessing, triple
from .sources import CONFIG_FILE, LABELS_FILE, MODEL_FILES, ModelSource, file_sha256

logger = logging.getLogger(__name__)

CONFIG_KEYS = {"architecture", "resize", "crop", "mean", "std", "interpolation"}


@dataclass
class Artifact:
    """A loaded model's parts, before an engine runs them."""

    kind: str  # "torchvision", "state_dict", "torchscript" or "onnx"
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
    config = _read_config(folder)
    labels = _read_labels(folder)
    present = [name for name in MODEL_FILES if (folder / name).is_file()]
    if not present:
        raise ArtifactError(f"the model folder has no model file (one of {', '.join(MODEL_FILES)})")
    if len(present) > 1:
        raise ArtifactError(f"the model folder has more than one model file ({', '.join(present)}); keep one")
    model_file = folder / present[0]
    kind = MODEL_FILES[present[0]]
    architecture = config.get("architecture")
    module, onnx = None, None
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
        onnx = model_file.read_bytes()
    digest = hashlib.sha256()
    for part in (model_file, folder / LABELS_FILE, folder / CONFIG_FILE):
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
    if config.get("crop", 0) > config.get("resize", 1 << 30):
        raise ArtifactError(f"{CONFIG_FILE}: crop must not be larger than resize")
    return config


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
    resize = config.get("resize", base.resize_size)
    return Preprocessing(
        resize_size=resize,
        crop_size=config.get("crop", min(base.crop_size, resize)),
        mean=triple(config.get("mean", base.mean)),
        std=triple(config.get("std", base.std)),
        resample=RESAMPLING[config["interpolation"]] if "interpolation" in config else base.resample,
    )


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
