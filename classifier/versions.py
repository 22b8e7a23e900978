"""Model versions' writes: register (store the files, run the validation gate), validate again, activate
(which is also the roll-back), retire, the local copy a serving process loads, and its load status.

The validation gate compiles and checks a version in the runtime's sandboxed child process (classifier/runtime/
sandbox.py) with CLASSIFIER_VALIDATION_TIMEOUT_SECONDS to finish; a version whose report did not pass cannot be
activated, and one that passed is stored compiled, so activating it only loads the artifact.
"""

import hashlib
import json
import os
import shutil
import tarfile
import tempfile
from pathlib import Path

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.files import File
from django.core.files.storage import default_storage
from django.db import IntegrityError, transaction
from django.utils import timezone

from .models import ModelLoadStatus, ModelVersion, name_validator
from .runtime.archives import ArchiveError, is_archive, remove_tree, unpack_model_archive
from .runtime.formats import folder_kind
from .runtime.registry import validate_folder
from .runtime.sources import CONFIG_FILE, EXECUTABLE_MODEL_FILES, LABELS_FILE, MODEL_FILES
from .runtime_settings import runtime_config

BUNDLE_FILE = "model.tar.gz"  # a folder of several files, stored as one (a timm or transformers folder)
COMPLETE_MARKER = ".complete"  # written last into a local copy whose files matched the version's sha256


class ModelVersionError(Exception):
    """A version cannot be registered, validated or activated; the message says why (safe to show)."""


def model_version_register(
    *,
    name: str,
    version: str,
    path: Path,
    engine: str = "",
    precision: str = "",
    notes: str = "",
    created_by=None,
    executable_allowed: bool = True,
) -> ModelVersion:
    """Store the model folder (or .zip/.tar.gz of one) at ``path`` as version ``version`` of ``name``, staged,
    with the validation gate's report (passed or not); the files are kept only when it passed (a refused
    version is its report). Raises ModelVersionError when it cannot be stored, or when it holds a model file
    that is code (TorchScript) and ``executable_allowed`` is False (an admin user without
    ``classifier.upload_executable_model``)."""
    _check_names(name, version, engine, precision)
    if ModelVersion.objects.filter(name=name, version=version).exists():
        raise ModelVersionError(f"{name}@{version} is already registered; give the new one another version.")
    with tempfile.TemporaryDirectory(prefix="model-version-") as scratch:
        folder = _unpacked(Path(path), Path(scratch))
        files = _model_files(folder, Path(scratch))
        executable = [name for name in EXECUTABLE_MODEL_FILES if (folder / name).is_file()]
        if executable and not executable_allowed:
            what = "TorchScript, a program" if executable[0] == "model.ts" else "a pickle, code"
            raise ModelVersionError(
                f"{executable[0]} is {what} that runs when it is loaded: uploading it needs the "
                'permission "Can upload model files that are code" (classifier.upload_executable_model). '
                "Upload a state_dict (model.pt), an ONNX graph (model.onnx) or model.safetensors instead: they are data."
            )
        report = run_validation_gate(folder, engine=engine, precision=precision)
        model_version = ModelVersion(
            name=name,
            version=version,
            engine=engine,
            precision=precision,
            notes=notes,
            created_by=created_by,
            report=report,
            sha256=files_sha256(files.values()),
        )
        try:
            with transaction.atomic():
                if model_version.passed:  # a refused version keeps its report, not its files
                    for field, file_path in files.items():
                        with file_path.open("rb") as handle:
                            getattr(model_version, field).save(file_path.name, File(handle), save=False)
                model_version.save()
        except IntegrityError:
            _delete_files(model_version)
            raise ModelVersionError(f"{name}@{version} is already registered.") from None
    return model_version


def model_version_validate(*, model_version: ModelVersion) -> ModelVersion:
    """Run the validation gate again on the stored files (e.g. after a server upgrade); save the new report.
    Raises ModelVersionError for a version refused at registration: its files were not kept."""
    if not model_version.model_file:
        raise ModelVersionError(f"{model_version} was refused when registered and its files were not kept.")
    folder = model_version_local_folder(model_version=model_version)
    model_version.report = run_validation_gate(folder, engine=model_version.engine, precision=model_version.precision)
    model_version.save(update_fields=["report"])
    return model_version


def model_version_activate(*, name: str, version: str) -> ModelVersion:
    """Make ``name@version`` the one every server serves for ``name``; the active one before it is retired.
    Activating an earlier (retired) version is the roll-back. Raises ModelVersionError for an unknown version
    or one the validation gate did not pass."""
    with transaction.atomic():
        target = ModelVersion.objects.select_for_update().filter(name=name, version=version).first()
        if target is None:
            raise ModelVersionError(f"No version {version!r} of model {name!r} is registered.")
        if not target.passed:
            raise ModelVersionError(
                f"{target} did not pass validation and cannot be activated: "
                f"{target.report.get('summary', 'it has no validation report')}"
            )
        if target.status == ModelVersion.Status.ACTIVE:
            return target
        ModelVersion.objects.filter(name=name, status=ModelVersion.Status.ACTIVE).update(
            status=ModelVersion.Status.RETIRED
        )
        target.status, target.activated_at = ModelVersion.Status.ACTIVE, timezone.now()
        target.save(update_fields=["status", "activated_at"])
    return target


def model_version_retire(*, model_version: ModelVersion) -> ModelVersion:
    """Stop serving ``model_version`` (the servers go back to the settings model of its name, if any)."""
    model_version.status = ModelVersion.Status.RETIRED
    model_version.save(update_fields=["status"])
    return model_version


def model_version_local_folder(*, model_version: ModelVersion) -> Path:
    """This machine's copy of the version's files as a model folder (under CLASSIFIER_MODEL_CACHE_DIR),
    fetched from the default storage once and checked against its sha256. Raises ModelVersionError."""
    folder = (
        Path(settings.CLASSIFIER_MODEL_CACHE_DIR)
        / model_version.name
        / f"{model_version.version}-{model_version.sha256[:12]}"
    )
    if (folder / COMPLETE_MARKER).is_file():
        return folder
    folder.parent.mkdir(parents=True, exist_ok=True)
    partial = Path(tempfile.mkdtemp(dir=folder.parent, prefix=".partial-"))
    try:
        copies = []
        for field, local_name in _stored_files(model_version):
            with getattr(model_version, field).open("rb") as source, (partial / local_name).open("wb") as sink:
                shutil.copyfileobj(source, sink, 1 << 20)
            copies.append(partial / local_name)
        if files_sha256(copies) != model_version.sha256:
            raise ModelVersionError(f"the stored files of {model_version} do not match its sha256")
        if (partial / BUNDLE_FILE).is_file():
            _unbundle(partial / BUNDLE_FILE, partial)
        (partial / COMPLETE_MARKER).write_text(model_version.sha256)
        try:
            os.rename(partial, folder)
        except OSError:  # another worker of this machine finished first: its copy is the same files
            if not (folder / COMPLETE_MARKER).is_file():
                raise
    except OSError as exc:
        raise ModelVersionError(f"could not copy {model_version}'s files ({type(exc).__name__})") from exc
    finally:
        remove_tree(partial)
    return folder


def _unbundle(bundle: Path, folder: Path) -> None:
    """Unpack a stored bundle into the local copy beside it (checked as any archive is), then remove it."""
    unpacked = folder / ".unpacked"
    unpacked.mkdir()
    try:
        inner = _unpack_archive(bundle, unpacked)
    except ArchiveError as exc:
        raise ModelVersionError(f"the stored bundle was refused: {exc}") from exc
    for path in inner.iterdir():
        path.rename(folder / path.name)
    bundle.unlink()
    remove_tree(unpacked)


def model_load_status_record(
    *, worker: str, name: str, version: str, outcome: str, serving: str, reason: str = ""
) -> None:
    """What worker ``worker`` did with ``name@version`` (loaded, or failed and why) and what it serves now."""
    ModelLoadStatus.objects.update_or_create(
        worker=worker,
        name=name,
        defaults={"version": version, "outcome": outcome, "serving": serving, "reason": reason},
    )


def run_validation_gate(folder: Path, *, engine: str = "", precision: str = "") -> dict:
    """Validate the model folder in the runtime's sandboxed compiling process (which also compiles it, so that
    activating it only loads the artifact); return its report (a failed one when the process crashed or ran past
    CLASSIFIER_VALIDATION_TIMEOUT_SECONDS)."""
    report = validate_folder(folder, runtime_config(), engine=engine, precision=precision)
    report["validated_at"] = timezone.now().isoformat()
    return report


def files_sha256(paths) -> str:
    """The sha256 of the files' bytes, one after the other, in the order given (model, labels, config)."""
    digest = hashlib.sha256()
    for path in paths:
        with Path(path).open("rb") as handle:
            for chunk in iter(lambda: handle.read(1 << 20), b""):
                digest.update(chunk)
    return digest.hexdigest()


def _gate_failure(detail: str) -> dict:
    return {
        "passed": False,
        "checks": [{"check": "loads", "passed": False, "detail": detail}],
        "summary": f"Refused: {detail}.",
    }


def _check_names(name: str, version: str, engine: str, precision: str) -> None:
    for what, value in (("name", name), ("version", version)):
        try:
            name_validator(value)
        except ValidationError:
            raise ModelVersionError(f"The {what} {value!r} is not allowed: {name_validator.message}") from None
    if engine not in [value for value, _ in ModelVersion.ENGINE_CHOICES]:
        raise ModelVersionError(f"Unknown engine {engine!r}; use one of torch, onnxruntime (or none).")
    if precision not in [value for value, _ in ModelVersion.PRECISION_CHOICES]:
        raise ModelVersionError(f"Unknown precision {precision!r}; use one of fp32, bf16, fp16 (or none).")


def _unpacked(path: Path, scratch: Path) -> Path:
    if path.is_dir():
        return path
    if not path.is_file():
        raise ModelVersionError(f"{path.name} is neither a model folder nor an archive of one.")
    if not is_archive(path):
        raise ModelVersionError(f"{path.name} is not a .zip or .tar.gz archive of a model folder.")
    target = scratch / "unpacked"
    target.mkdir()
    try:
        return _unpack_archive(path, target)
    except ArchiveError as exc:
        raise ModelVersionError(f"The archive was refused: {exc}.") from exc


def _unpack_archive(path: Path, target: Path) -> Path:
    """``path`` unpacked into ``target`` within the archive bounds of the settings; the model folder inside."""
    return unpack_model_archive(
        path,
        target,
        max_bytes=settings.CLASSIFIER_MODEL_ARCHIVE_MAX_BYTES,
        max_ratio=settings.CLASSIFIER_MODEL_ARCHIVE_MAX_RATIO,
        max_metadata_bytes=settings.CLASSIFIER_MODEL_METADATA_MAX_BYTES,
    )


def _model_files(folder: Path, scratch: Path) -> dict[str, Path]:
    """The folder's files by ModelVersion field: exactly one model file, labels.json, config.json if there; or, for
    a folder of several files (a timm or transformers folder, ONNX with external data), one .tar.gz of them all as
    the model file."""
    if _needs_bundle(folder):
        return {"model_file": _bundle(folder, scratch)}
    present = [folder / name for name in MODEL_FILES if (folder / name).is_file()]
    if len(present) != 1:
        found = ", ".join(path.name for path in present) or "none"
        raise ModelVersionError(
            f"A model folder has exactly one of {', '.join(MODEL_FILES)} (found: {found}), or is a folder as timm or "
            "transformers save it (config.json and model.safetensors)."
        )
    if not (folder / LABELS_FILE).is_file():
        raise ModelVersionError(f"The model folder has no {LABELS_FILE}.")
    files = {"model_file": present[0], "labels_file": folder / LABELS_FILE}
    if (folder / CONFIG_FILE).is_file():
        files["config_file"] = folder / CONFIG_FILE
    limit = settings.CLASSIFIER_MODEL_METADATA_MAX_BYTES
    for path in (folder / LABELS_FILE, folder / CONFIG_FILE):
        if path.is_file() and path.stat().st_size > limit:
            raise ModelVersionError(f"{path.name} is over CLASSIFIER_MODEL_METADATA_MAX_BYTES ({limit} bytes).")
    _check_input_size(folder / CONFIG_FILE)
    return files


def _needs_bundle(folder: Path) -> bool:
    return folder_kind(folder) is not None or any(path.suffix == ".data" for path in folder.iterdir())


def _bundle(folder: Path, scratch: Path) -> Path:
    """The folder's files (its top level, no dotfiles or links) as one .tar.gz, stored as the model file and
    unpacked again (checked as any uploaded archive) into a serving machine's local copy."""
    limit = settings.CLASSIFIER_MODEL_METADATA_MAX_BYTES
    if (folder / CONFIG_FILE).is_file() and (folder / CONFIG_FILE).stat().st_size > limit:
        raise ModelVersionError(f"{CONFIG_FILE} is over CLASSIFIER_MODEL_METADATA_MAX_BYTES ({limit} bytes).")
    target = scratch / BUNDLE_FILE
    with tarfile.open(target, "w:gz", compresslevel=1) as bundle:
        for path in sorted(folder.iterdir()):
            if path.is_file() and not path.is_symlink() and not path.name.startswith("."):
                bundle.add(path, arcname=path.name, recursive=False)
    return target


def _check_input_size(config_file: Path) -> None:
    """Refuse a config.json whose resize or crop is over CLASSIFIER_MAX_INPUT_SIZE: every request would pay for
    it (a 4096 crop is 50 MB an image). Other faults of the file are the validation gate's to report."""
    try:
        config = json.loads(config_file.read_text(encoding="utf-8")) if config_file.is_file() else {}
    except (UnicodeDecodeError, json.JSONDecodeError):
        return
    limit = settings.CLASSIFIER_MAX_INPUT_SIZE
    for key in ("resize", "crop"):
        value = config.get(key) if isinstance(config, dict) else None
        if isinstance(value, int | float) and value > limit:
            raise ModelVersionError(
                f"config.json: {key} is {value}, over CLASSIFIER_MAX_INPUT_SIZE ({limit} pixels a side)."
            )


def _stored_files(model_version: ModelVersion) -> list[tuple[str, str]]:
    """(field, the runtime's file name) of each stored file, in sha256 order; the storage may have renamed
    a file (model_X1b2.pt), the runtime's name keeps its suffix."""
    if Path(model_version.model_file.name).name.startswith("model.tar"):
        return [("model_file", BUNDLE_FILE)]
    files = [("model_file", "model" + Path(model_version.model_file.name).suffix), ("labels_file", LABELS_FILE)]
    if model_version.config_file:
        files.append(("config_file", CONFIG_FILE))
    return files


def _delete_files(model_version: ModelVersion) -> None:
    for field in ("model_file", "labels_file", "config_file"):
        stored = getattr(model_version, field)
        if stored and default_storage.exists(stored.name):
            default_storage.delete(stored.name)
