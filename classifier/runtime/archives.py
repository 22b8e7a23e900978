"""Unpacking a model folder sent as one archive (.zip, .tar.gz): regular files only, inside the target,
within size bounds (the files in all, each file's expansion ratio, labels.json and config.json). Anything
else, a damaged archive included, is refused with ArchiveError, before any byte is written for it where
the archive's listing shows it (a damaged entry's data shows only as it is read)."""

import gzip
import io
import shutil
import tarfile
import zipfile
import zlib
from pathlib import Path, PurePosixPath

ARCHIVE_SUFFIXES = (".zip", ".tar.gz", ".tgz")
MAX_MEMBERS = 64  # a model folder has three files; an archive with more entries than this is not one
METADATA_FILES = ("labels.json", "config.json")  # read whole by the runtime: bounded by max_metadata_bytes
_TAR_OVERHEAD_BYTES = (MAX_MEMBERS + 4) * 1024  # a tar's headers and padding around its files' bytes
# What a damaged archive raises while it is listed or read (a bad CRC, a truncated stream, a path that is
# also a file, an encrypted or unsupported entry): each becomes the archive's refusal.
_UNPACK_ERRORS = (
    OSError,
    EOFError,
    zipfile.BadZipFile,
    tarfile.TarError,
    zlib.error,
    RuntimeError,
    NotImplementedError,
)


class ArchiveError(ValueError):
    """The archive is unsafe or not a model folder's; the message says why (and names no server path)."""


def is_archive(path: Path) -> bool:
    return path.name.lower().endswith(ARCHIVE_SUFFIXES)


def unpack_model_archive(
    archive: Path, target: Path, *, max_bytes: int, max_ratio: float, max_metadata_bytes: int
) -> Path:
    """Unpack ``archive`` into the empty folder ``target``; return the model folder inside it (``target``,
    or the archive's one top-level folder). Raises ArchiveError for links, devices, absolute or ``..``
    paths, more than MAX_MEMBERS entries, more than ``max_bytes`` in all, a file that expands more than
    ``max_ratio`` times (a .tar.gz: the archive as a whole), a labels.json or config.json over
    ``max_metadata_bytes``, and a damaged archive."""
    try:
        return _unpack(archive, target, max_bytes, max_ratio, max_metadata_bytes)
    except ArchiveError:
        raise
    except _UNPACK_ERRORS as exc:
        raise ArchiveError(f"the archive is damaged or not a model folder's ({type(exc).__name__})") from exc


def _unpack(archive: Path, target: Path, max_bytes: int, max_ratio: float, max_metadata_bytes: int) -> Path:
    if archive.name.lower().endswith(".zip"):
        members = _zip_members(archive, max_ratio)
    elif archive.name.lower().endswith((".tar.gz", ".tgz")):
        members = _tar_members(archive, min(max_bytes, archive.stat().st_size * max_ratio))
    else:
        raise ArchiveError(f"not a .zip or .tar.gz archive: {archive.name}")
    if len(members) > MAX_MEMBERS:
        raise ArchiveError(f"the archive has {len(members)} entries; a model folder has a few files")
    total = sum(size for _, size, _ in members)
    if total > max_bytes:
        raise ArchiveError(f"the archive's files are {total} bytes in all, over the limit of {max_bytes} bytes")
    for relative, size, _ in members:
        if relative.name in METADATA_FILES and size > max_metadata_bytes:
            raise ArchiveError(f"{relative.name} is {size} bytes, over the limit of {max_metadata_bytes} bytes")
    for relative, size, opener in members:
        destination = target.joinpath(*relative.parts)
        destination.parent.mkdir(parents=True, exist_ok=True)
        with opener() as source, destination.open("wb") as sink:
            _copy_bounded(source, sink, size)
    return _model_folder(target)


def _safe_path(name: str) -> PurePosixPath:
    path = PurePosixPath(name.replace("\\", "/"))
    if path.is_absolute() or ".." in path.parts or not path.parts or ":" in path.parts[0]:
        raise ArchiveError(f"the archive entry {name!r} would land outside the model folder")
    return path


def _zip_members(archive: Path, max_ratio: float) -> list:
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
        if info.file_size > max(info.compress_size, 1) * max_ratio:
            raise ArchiveError(
                f"the archive entry {info.filename!r} expands {info.file_size} bytes from {info.compress_size}, "
                f"over the limit of {max_ratio:g} times"
            )
        members.append((_safe_path(info.filename), info.file_size, lambda info=info: bundle.open(info)))
    return members


def _tar_members(archive: Path, max_unpacked_bytes: float) -> list:
    """The .tar.gz's files; listing it decompresses it, so no more than ``max_unpacked_bytes`` (the size
    bound, or the archive's size times the ratio bound, the smaller) is decompressed before it is refused."""
    stream = _BoundedStream(gzip.open(archive), int(max_unpacked_bytes) + _TAR_OVERHEAD_BYTES)  # noqa: SIM115
    try:
        bundle = tarfile.open(fileobj=stream, mode="r:")  # noqa: SIM115 - the members' openers read from it
        infos = bundle.getmembers()
    except ArchiveError:
        raise
    except (tarfile.TarError, OSError, EOFError, zlib.error) as exc:
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


class _BoundedStream(io.RawIOBase):
    """A decompressed stream that refuses to be read or sought past ``limit`` bytes (a decompression bomb)."""

    def __init__(self, stream, limit: int):
        self.stream, self.limit = stream, limit

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self.stream.tell()

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        if whence == io.SEEK_SET:
            self._check(offset)  # before the seek: a forward seek decompresses up to it
        position = self.stream.seek(offset, whence)
        self._check(position)
        return position

    def read(self, size: int = -1) -> bytes:
        data = self.stream.read(self.limit - self.stream.tell() + 1 if size is None or size < 0 else size)
        self._check(self.stream.tell())
        return data

    def readinto(self, buffer) -> int:
        data = self.read(len(buffer))
        buffer[: len(data)] = data
        return len(data)

    def _check(self, position: int) -> None:
        if position > self.limit:
            raise ArchiveError(
                "the archive expands past the size limit (or its files expand more than the ratio limit)"
            )


def _copy_bounded(source, sink, declared: int) -> int:
    """Copy, refusing to write past the entry's declared size (an entry larger than it says)."""
    copied = 0
    while chunk := source.read(1 << 20):
        copied += len(chunk)
        if copied > declared:
            raise ArchiveError("an archive entry is larger than it declares")
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
