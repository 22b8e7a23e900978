"""Model folders as the libraries save them, recognised from their files.

- ``transformers``: ``save_pretrained``'s ``config.json`` (``model_type``/``architectures``, ``id2label``), weights
  (``model.safetensors`` or ``pytorch_model.bin``) and ``preprocessor_config.json``;
- ``timm``: ``save_for_hf``'s ``config.json`` (``architecture``, ``num_classes``, ``label_names``,
  ``pretrained_cfg``) and weights;
- anything else is our own layout (``artifacts.py``: model.pt, model.ts or model.onnx with labels.json).

Each library has one reader that states its preprocessing as a ``Preprocessing`` (torch-free, so the API and the
tests can read a folder's preprocessing without the library) and one loader (imports the library, compile step
only). A fourth library is one more module here.
"""

import json
import math
from enum import StrEnum
from pathlib import Path

from ..errors import ArtifactError
from ..sources import CONFIG_FILE

SAFETENSORS_FILE, PICKLE_WEIGHTS_FILE = "model.safetensors", "pytorch_model.bin"
WEIGHTS_FILES = (SAFETENSORS_FILE, PICKLE_WEIGHTS_FILE)  # the first present is read
# The bytes of one element of each safetensors dtype (the header's claims are checked against the file).
SAFETENSORS_DTYPE_BYTES = {
    "BOOL": 1, "U8": 1, "I8": 1, "F8_E5M2": 1, "F8_E4M3": 1, "I16": 2, "U16": 2, "F16": 2, "BF16": 2,
    "I32": 4, "U32": 4, "F32": 4, "I64": 8, "U64": 8, "F64": 8,
}  # fmt: skip
MAX_SAFETENSORS_HEADER_BYTES = 100 << 20


class FolderKind(StrEnum):
    TRANSFORMERS = "transformers"
    TIMM = "timm"


def folder_kind(folder: Path) -> FolderKind | None:
    """Which library saved ``folder`` (from its config.json), or None for our own layout."""
    path = folder / CONFIG_FILE
    if not path.is_file():
        return None
    try:
        config = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError):
        return None  # our own reader says what is wrong with it
    if not isinstance(config, dict):
        return None
    if "model_type" in config or "architectures" in config:
        return FolderKind.TRANSFORMERS
    if "pretrained_cfg" in config or {"num_classes", "label_names"} <= set(config):
        return FolderKind.TIMM
    return None


def read_json_object(path: Path) -> dict:
    """A JSON object from ``path``; ArtifactError naming the file when it is missing or not one."""
    if not path.is_file():
        raise ArtifactError(f"the model folder has no {path.name}")
    try:
        value = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ArtifactError(f"{path.name} is not valid JSON ({exc})") from exc
    if not isinstance(value, dict):
        raise ArtifactError(f"{path.name} must be an object")
    return value


def weights_file(folder: Path) -> Path:
    """The folder's weights file (safetensors preferred), its safetensors header checked against the file."""
    for name in WEIGHTS_FILES:
        path = folder / name
        if path.is_file() and not path.is_symlink():
            if name == SAFETENSORS_FILE:
                check_safetensors(path)
            return path
    raise ArtifactError(f"the model folder has no weights ({' or '.join(WEIGHTS_FILES)})")


def check_safetensors(path: Path) -> None:
    """Refuse a safetensors file whose header lies: every tensor's bytes must lie inside the file, match its dtype
    and shape, and the tensors must cover the data exactly (nothing overlaps, nothing is left over)."""
    size = path.stat().st_size
    with path.open("rb") as handle:
        prefix = handle.read(8)
        length = int.from_bytes(prefix, "little") if len(prefix) == 8 else -1
        if length < 2 or length > min(size - 8, MAX_SAFETENSORS_HEADER_BYTES):
            raise ArtifactError(f"{path.name}: the safetensors header's length ({length}) does not fit the file")
        try:
            header = json.loads(handle.read(length))
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise ArtifactError(f"{path.name}: the safetensors header is not JSON ({exc})") from exc
    if not isinstance(header, dict):
        raise ArtifactError(f"{path.name}: the safetensors header is not an object")
    spans = []
    for name, entry in header.items():
        if name == "__metadata__":
            continue
        try:
            start, end = (int(offset) for offset in entry["data_offsets"])
            expected = SAFETENSORS_DTYPE_BYTES[entry["dtype"]] * math.prod(int(n) for n in entry["shape"])
        except (KeyError, TypeError, ValueError) as exc:
            raise ArtifactError(f"{path.name}: the header's entry for {name} is malformed") from exc
        if end - start != expected or start < 0:
            raise ArtifactError(
                f"{path.name}: the header says {name} is {entry['dtype']} {entry['shape']} ({expected} bytes) "
                f"but gives it {end - start} bytes"
            )
        spans.append((start, end))
    spans.sort()
    covered = 0
    for start, end in spans:
        if start != covered:
            raise ArtifactError(f"{path.name}: the header's tensors overlap or leave gaps in the data")
        covered = end
    if covered != size - 8 - length:
        raise ArtifactError(
            f"{path.name}: the header describes {covered} bytes of tensors but the file holds {size - 8 - length}"
        )
