"""Compiled artifacts: a model compiled once into its engine's own format, stored with what serving needs.

An artifact is a folder named by its key: the sha256 of everything that went into it (the source's files or
torchvision name and weights, the engine and precision asked for, the compiler's format and the versions of
the libraries that read it). It holds the engine's file(s) and ``manifest.json``: the labels, the
preprocessing, the engine, the agreement report, the compiler's library versions and the sha256 of every
file. A serving process that finds the artifact loads only
that; nothing in here imports torch.

Reads check every file's digest: an artifact whose files do not match its manifest is removed and compiled
again, never trusted. Writes are atomic (a temporary folder renamed into place), so a worker starting beside
a compiling one sees the whole artifact or none.
"""

import contextlib
import fcntl
import hashlib
import json
import logging
import os
import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

from .kinds import Provenance
from .preprocessing import Preprocessing
from .sources import ModelSource, file_sha256

logger = logging.getLogger(__name__)

# Bump when the compiled graph or the manifest changes meaning (4: auto's race measured as served, chosen by CPU
# per image, and auto's artifact named apart from an explicit onnxruntime choice's).
FORMAT = "aiserver-compiled-4"
MANIFEST = "manifest.json"


COMPILER_LIBRARIES = ("torch", "torchvision", "onnx", "transformers", "timm")
SERVING_LIBRARIES = ("onnxruntime", "openvino")


def library_versions(names: tuple[str, ...] = COMPILER_LIBRARIES + SERVING_LIBRARIES) -> dict[str, str]:
    """Installed versions of ``names``, read from the package metadata (no import); "" where one is missing."""
    versions = {}
    for name in names:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = ""
    return versions


def artifact_key(source: ModelSource, *, engine: str, precision: str, device: str) -> str:
    """The name of ``source``'s compiled artifact for this engine choice."""
    parts = {
        "format": FORMAT,
        "inputs": source.input_digest(),
        "engine": engine,
        "precision": precision,
        "device": device.split(":")[0],
        # Only the libraries that read the artifact: a serving image without torch finds what a compiling
        # image with torch wrote. The compiler's versions are recorded in the manifest, not in the key.
        "versions": library_versions(SERVING_LIBRARIES),
    }
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()[:40]


@dataclass(frozen=True)
class CompiledModel:
    """One compiled artifact, as read from the store."""

    key: str
    folder: Path
    manifest: dict
    provenance: Provenance = Provenance.LOADED_COMPILED

    @property
    def labels(self) -> list[str]:
        return list(self.manifest["labels"])

    @property
    def preprocessing(self) -> Preprocessing:
        return Preprocessing.from_dict(self.manifest["preprocessing"])

    @property
    def graph(self) -> Path:
        return self.folder / self.manifest["graph"]

    def with_provenance(self, provenance: Provenance) -> "CompiledModel":
        return CompiledModel(key=self.key, folder=self.folder, manifest=self.manifest, provenance=provenance)


class ArtifactStore:
    """The compiled artifacts under one folder (CLASSIFIER_ENGINE_CACHE_DIR)."""

    def __init__(self, root: Path):
        self.root = Path(root)

    def read(self, key: str) -> CompiledModel | None:
        """The artifact ``key`` when it is whole and its files match their digests; None otherwise (a bad one is
        removed, so the next compile replaces it)."""
        folder = self.root / key
        try:
            manifest = json.loads((folder / MANIFEST).read_text())
        except (OSError, ValueError):
            return None
        if manifest.get("format") != FORMAT or not self._intact(folder, manifest):
            logger.warning("compiled artifact %s does not match its manifest; compiling it again", key)
            shutil.rmtree(folder, ignore_errors=True)
            return None
        return CompiledModel(key=key, folder=folder, manifest=manifest)

    @staticmethod
    def _intact(folder: Path, manifest: dict) -> bool:
        files = manifest.get("files")
        if not isinstance(files, dict) or manifest.get("graph") not in files:
            return False
        for name, digest in files.items():
            path = folder / name
            if Path(name).name != name or not path.is_file() or file_sha256(path) != digest:
                return False
        return True

    def write(self, key: str, files: dict[str, bytes], manifest: dict) -> CompiledModel:
        """Store an artifact of ``files`` (name -> bytes) and ``manifest`` (the file digests are added)."""
        self.root.mkdir(parents=True, exist_ok=True)
        scratch = Path(tempfile.mkdtemp(prefix=f".{key}.", dir=self.root))
        try:
            for name, data in files.items():
                (scratch / name).write_bytes(data)
            manifest = {**manifest, "format": FORMAT, "key": key}
            manifest["files"] = {name: file_sha256(scratch / name) for name in files}
            (scratch / MANIFEST).write_text(json.dumps(manifest, indent=1, sort_keys=True))
            target = self.root / key
            shutil.rmtree(target, ignore_errors=True)
            os.replace(scratch, target)
        except BaseException:
            shutil.rmtree(scratch, ignore_errors=True)
            raise
        return CompiledModel(key=key, folder=target, manifest=manifest, provenance=Provenance.COMPILED)

    def writable(self) -> bool:
        """Whether artifacts can be stored here (the folder exists or can be made, and may be written)."""
        try:
            self.root.mkdir(parents=True, exist_ok=True)
        except OSError:
            return False
        return os.access(self.root, os.W_OK)

    @contextlib.contextmanager
    def locked(self, key: str) -> Iterator[None]:
        """Hold the compile lock of ``key`` (one compile per artifact, across the processes of this machine)."""
        self.root.mkdir(parents=True, exist_ok=True)
        with open(self.root / f".{key}.lock", "a+b") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)
