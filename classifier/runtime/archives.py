"""Unpacking a model folder sent as one archive (.zip, .tar.gz): regular files only, inside the target,
within a size bound. Anything else is refused with ArchiveError, before any byte is written for it."""

import shutil
import tarfile
import zipfile
from pathlib import Path, PurePosixPath

ARCHIVE_SUFFIXES = (".zip", ".tar.gz", ".tgz")
MAX_MEMBERS = 64  # a model folder has three files; an archive with more entries than this is not one


class ArchiveError(ValueError):
    """The archive is unsafe or not a model folder's; the message says why (and names no server path)."""


def is_archive(path: Path) -> bool:
    return path.name.lower().endswith(ARCHIVE_SUFFIXES)


def unpack_model_archive(archive: Path, target: Path, *, max_bytes: int) -> Path:
    """Unpack ``archive`` into the empty folder ``target``; return the model folder inside it (``target``,
    or the archive's one top-level folder). Raises ArchiveError for links, devices, absolute or ``..``
    paths, more than MAX_MEMBERS entries or more than ``max_bytes`` in all."""
    if archive.name.lower().endswith(".zip"):
        members = _zip_members(archive)
    elif archive.name.lower().endswith((".tar.gz", ".tgz")):
        members = _tar_members(archive)
    else:
        raise ArchiveError(f"not a .zip or .tar.gz archive: {archive.name}")
    if len(members) > MAX_MEMBERS:
        raise ArchiveError(f"the archive has {len(members)} entries; a model folder has a few files")
    total = sum(size for _, size, _ in members)
    if total > max_bytes:
        raise ArchiveError(f"the archive's files are {total} bytes in all, over the limit of {max_bytes} bytes")
    written = 0
    for relative, _size, opener in members:
        destination = target.joinpath(*relative.parts)
        destination.parent.mkdir(parents=True, exist_ok=True)
        with opener() as source, destination.open("wb") as sink:
            written += _copy_bounded(source, sink, max_bytes - written)
    return _model_folder(target)


def _safe_path(name: str) -> PurePosixPath:
    path = PurePosixPath(name.replace("\\", "/"))
    if path.is_absolute() or ".." in path.parts or not path.parts or ":" in path.parts[0]:
        raise ArchiveError(f"the archive entry {name!r} would land outside the model folder")
    return path


def _zip_members(archive: Path) -> list:
    try:
        bundle = zipfile.ZipFile(archive)
    except zipfile.BadZipFile as exc:
        raise ArchiveError(f"not a readable zip archive ({exc})") from exc
    members = []
    for info in bundle.infolist():
        if info.is_dir():
            _safe_path(info.filename)
            continue
        if (info.external_attr >> 16) & 0o170000 not in (0, 0o100000):  # a symlink or device stored in a zip
            raise ArchiveError(f"the archive entry {info.filename!r} is not a regular file")
        members.append((_safe_path(info.filename), info.file_size, lambda info=info: bundle.open(info)))
    return members


def _tar_members(archive: Path) -> list:
    try:
        bundle = tarfile.open(archive, mode="r:gz")  # noqa: SIM115 - the members' openers read from it; freed with them
        infos = bundle.getmembers()
    except (tarfile.TarError, OSError, EOFError) as exc:
        raise ArchiveError(f"not a readable .tar.gz archive ({exc})") from exc
    members = []
    for info in infos:
        if info.isdir():
            _safe_path(info.name)
            continue
        if not info.isfile():
            raise ArchiveError(f"the archive entry {info.name!r} is not a regular file (a link or device)")
        members.append((_safe_path(info.name), info.size, lambda info=info: bundle.extractfile(info)))
    return members


def _copy_bounded(source, sink, remaining: int) -> int:
    """Copy, refusing to write past ``remaining`` bytes (an entry whose real size exceeds its declared one)."""
    copied = 0
    while chunk := source.read(1 << 20):
        copied += len(chunk)
        if copied > remaining:
            raise ArchiveError("the archive's files are larger than they declare, over the limit")
        sink.write(chunk)
    return copied


def _model_folder(target: Path) -> Path:
    """``target`` when the files are at its top, else its single sub-folder (an archive of a folder)."""
    entries = [entry for entry in target.iterdir() if entry.name != "__MACOSX"]
    if len(entries) == 1 and entries[0].is_dir():
        return entries[0]
    return target


def remove_tree(path: Path) -> None:
    shutil.rmtree(path, ignore_errors=True)
