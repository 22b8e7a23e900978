"""Where a configured model comes from (a torchvision name and weights, or a model folder), without loading it.

Torch-free: a serving process names its models and finds their compiled artifacts from these alone.
"""

import hashlib
from dataclasses import dataclass
from pathlib import Path

MODEL_FILES = {"model.pt": "state_dict", "model.ts": "torchscript", "model.onnx": "onnx"}
LABELS_FILE, CONFIG_FILE = "labels.json", "config.json"
TORCHVISION_WEIGHTS = ("default", "random", "trivial")
# Model files that are code: loading them runs what their author wrote (classifier.upload_executable_model). A
# library's pickle weights count too (docs/security.md), though they are read with torch.load(weights_only=True).
EXECUTABLE_MODEL_FILES = ("model.ts", "pytorch_model.bin")


@dataclass(frozen=True)
class ModelSource:
    """Where one configured model comes from: a torchvision name and weights, or a model folder."""

    name: str
    architecture: str | None  # a torchvision model name; None for a folder that names none
    weights: str = "default"  # torchvision: default, random, trivial or a state_dict path
    folder: Path | None = None  # a model folder, when the model is one
    version: str = ""  # a registered version's name (classifier.models.ModelVersion); "" for a settings model
    engine: str = ""  # a registered version's engine override; "": the configured engine
    precision: str = ""  # a registered version's precision override; "": the configured precision

    @property
    def described(self) -> str:
        """The weights as shown to API users: never the server's paths."""
        if self.version:
            return f"version:{self.version}"
        if self.folder is not None:
            return f"folder:{self.folder.name}"
        return self.weights if self.weights in TORCHVISION_WEIGHTS else f"file:{Path(self.weights).name}"

    def input_digest(self) -> str:
        """The sha256 of what this model is made of: every file of its folder (names and bytes; dotfiles such as a local copy's marker aside), or its torchvision
        name with its weights (a weights file by its bytes). A changed input names a new compiled artifact."""
        digest = hashlib.sha256()
        if self.folder is not None:
            for path in sorted(p for p in self.folder.rglob("*") if p.is_file() and not p.name.startswith(".")):
                digest.update(path.relative_to(self.folder).as_posix().encode() + b"\0")
                digest.update(file_sha256(path).encode())
        else:
            digest.update(f"torchvision:{self.architecture}:".encode())
            weights = Path(self.weights)
            if self.weights not in TORCHVISION_WEIGHTS and weights.is_file():
                digest.update(file_sha256(weights).encode())
            else:
                digest.update(self.weights.encode())
        return digest.hexdigest()


def model_sources(models: dict[str, str], *, default_model: str, default_weights: str) -> list[ModelSource]:
    """The sources of CLASSIFIER_MODELS as settings parsed it ({name: weights}, "" for none: ``default_weights``).

    ``default_model`` (CLASSIFIER_MODEL) comes first and serves v1; no name appears twice.
    """
    specs = {default_model: models.get(default_model) or default_weights}
    for name, weights in models.items():
        specs.setdefault(name, weights or default_weights)
    return [_source(name, weights) for name, weights in specs.items()]


def _source(name: str, weights: str) -> ModelSource:
    path = Path(weights)
    if weights not in TORCHVISION_WEIGHTS and path.is_dir():
        return ModelSource(name=name, architecture=None, folder=path)
    return ModelSource(name=name, architecture=name, weights=weights)


def file_sha256(path: Path) -> str:
    """The sha256 of a file, read in chunks (weights files are tens of MB)."""
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()
