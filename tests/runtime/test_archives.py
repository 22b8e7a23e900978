"""Model folders sent as archives: unpacked safely or refused (classifier.runtime.archives)."""

import gzip
import io
import tarfile
import zipfile

import pytest
from django.conf import settings as django_settings

from classifier.runtime.archives import MAX_MEMBERS, ArchiveError
from classifier.runtime.archives import unpack_model_archive as unpack_with

FILES = {"model.onnx": b"graph", "labels.json": b'["a", "b"]'}


def unpack_model_archive(archive, target, *, max_bytes):
    """Unpack with ``max_bytes`` and the settings' ratio and metadata bounds."""
    return unpack_with(
        archive,
        target,
        max_bytes=max_bytes,
        max_ratio=django_settings.CLASSIFIER_MODEL_ARCHIVE_MAX_RATIO,
        max_metadata_bytes=django_settings.CLASSIFIER_MODEL_METADATA_MAX_BYTES,
    )


def _zip(path, entries):
    with zipfile.ZipFile(path, "w") as bundle:
        for name, data in entries.items():
            bundle.writestr(name, data)
    return path


def _tar(path, entries, *, symlink=None):
    with tarfile.open(path, "w:gz") as bundle:
        for name, data in entries.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            bundle.addfile(info, io.BytesIO(data))
        if symlink:
            info = tarfile.TarInfo(symlink)
            info.type, info.linkname = tarfile.SYMTYPE, "/etc/passwd"
            bundle.addfile(info)
    return path


@pytest.mark.parametrize("make, name", [(_zip, "m.zip"), (_tar, "m.tar.gz")])
def test_an_archive_of_a_folder_unpacks_to_that_folder(tmp_path, make, name):
    archive = make(tmp_path / name, {f"flowers/{file}": data for file, data in FILES.items()})
    (tmp_path / "out").mkdir()
    folder = unpack_model_archive(archive, tmp_path / "out", max_bytes=1000)
    assert folder == tmp_path / "out" / "flowers"
    assert {path.name: path.read_bytes() for path in folder.iterdir()} == FILES


@pytest.mark.parametrize("entry", ["../escape.txt", "/etc/cron.d/x", "a/../../escape.txt"])
@pytest.mark.parametrize("make, name", [(_zip, "m.zip"), (_tar, "m.tar.gz")])
def test_an_entry_outside_the_folder_is_refused_and_nothing_is_written(tmp_path, make, name, entry):
    archive = make(tmp_path / name, {**FILES, entry: b"x"})
    (tmp_path / "out").mkdir()
    with pytest.raises(ArchiveError, match="outside the model folder"):
        unpack_model_archive(archive, tmp_path / "out", max_bytes=1000)
    assert not list((tmp_path / "out").iterdir()) and not (tmp_path / "escape.txt").exists()


def test_a_symlink_is_refused(tmp_path):
    archive = _tar(tmp_path / "m.tar.gz", FILES, symlink="labels2.json")
    (tmp_path / "out").mkdir()
    with pytest.raises(ArchiveError, match="not a regular file"):
        unpack_model_archive(archive, tmp_path / "out", max_bytes=1000)


def test_a_zip_symlink_is_refused(tmp_path):
    archive = tmp_path / "m.zip"
    with zipfile.ZipFile(archive, "w") as bundle:
        info = zipfile.ZipInfo("model.onnx")
        info.external_attr = 0o120777 << 16  # S_IFLNK
        bundle.writestr(info, "/etc/passwd")
    (tmp_path / "out").mkdir()
    with pytest.raises(ArchiveError, match="not a regular file"):
        unpack_model_archive(archive, tmp_path / "out", max_bytes=1000)


def test_files_over_the_size_bound_are_refused(tmp_path, settings):
    limit = settings.CLASSIFIER_MODEL_ARCHIVE_MAX_BYTES = 16
    archive = _zip(tmp_path / "m.zip", {"model.onnx": b"x" * (limit + 1), "labels.json": b"[]"})
    (tmp_path / "out").mkdir()
    with pytest.raises(ArchiveError, match=f"over the limit of {limit} bytes"):
        unpack_model_archive(archive, tmp_path / "out", max_bytes=settings.CLASSIFIER_MODEL_ARCHIVE_MAX_BYTES)


def test_too_many_entries_or_not_an_archive_are_refused(tmp_path):
    archive = _zip(tmp_path / "m.zip", {f"f{index}": b"" for index in range(MAX_MEMBERS + 1)})
    (tmp_path / "out").mkdir()
    with pytest.raises(ArchiveError, match="entries"):
        unpack_model_archive(archive, tmp_path / "out", max_bytes=1000)
    (tmp_path / "bad.zip").write_bytes(b"not a zip")
    with pytest.raises(ArchiveError, match="not a readable zip"):
        unpack_model_archive(tmp_path / "bad.zip", tmp_path / "out", max_bytes=1000)


def test_a_zip_entry_that_expands_past_the_ratio_is_refused_before_it_is_written(tmp_path, settings):
    ratio = settings.CLASSIFIER_MODEL_ARCHIVE_MAX_RATIO
    archive = tmp_path / "bomb.zip"
    with zipfile.ZipFile(archive, "w", compression=zipfile.ZIP_DEFLATED) as bundle:
        bundle.writestr("model.onnx", b"\0" * int(ratio * 4096))  # zeros deflate about 1000 times
        bundle.writestr("labels.json", b'["a"]')
    (tmp_path / "out").mkdir()
    with pytest.raises(ArchiveError, match=f"over the limit of {ratio:g} times"):
        unpack_model_archive(archive, tmp_path / "out", max_bytes=settings.CLASSIFIER_MODEL_ARCHIVE_MAX_BYTES)
    assert not list((tmp_path / "out").iterdir())


def test_a_tar_gz_that_expands_past_the_ratio_is_refused_without_decompressing_it_whole(tmp_path, settings):
    ratio = settings.CLASSIFIER_MODEL_ARCHIVE_MAX_RATIO
    archive = _tar(tmp_path / "bomb.tar.gz", {"model.onnx": b"\0" * (64 << 20), "labels.json": b'["a"]'})
    assert archive.stat().st_size * ratio < 64 << 20
    (tmp_path / "out").mkdir()
    read = []
    real_read = gzip.GzipFile.read

    def counting_read(self, size=-1):
        data = real_read(self, size)
        read.append(len(data))
        return data

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(gzip.GzipFile, "read", counting_read)
        with pytest.raises(ArchiveError, match="expands past"):
            unpack_model_archive(archive, tmp_path / "out", max_bytes=settings.CLASSIFIER_MODEL_ARCHIVE_MAX_BYTES)
    assert sum(read) <= archive.stat().st_size * ratio + (1 << 20)  # stopped at the bound, not at 64 MiB
    assert not list((tmp_path / "out").iterdir())


@pytest.mark.parametrize("make, name", [(_zip, "m.zip"), (_tar, "m.tar.gz")])
@pytest.mark.parametrize("metadata", ["labels.json", "config.json"])
def test_labels_or_config_over_the_metadata_bound_are_refused(tmp_path, settings, make, name, metadata):
    limit = settings.CLASSIFIER_MODEL_METADATA_MAX_BYTES = 1024
    archive = make(tmp_path / name, {**FILES, metadata: b" " * (limit + 1)})
    (tmp_path / "out").mkdir()
    with pytest.raises(ArchiveError, match=f"{metadata} is {limit + 1} bytes, over the limit of {limit} bytes"):
        unpack_model_archive(archive, tmp_path / "out", max_bytes=settings.CLASSIFIER_MODEL_ARCHIVE_MAX_BYTES)


def _zip_with_a_bad_crc(path):
    _zip(path, FILES)
    data = bytearray(path.read_bytes())
    at = data.index(b"graph")  # stored, not deflated: the model's bytes as they are
    data[at] ^= 0xFF
    path.write_bytes(bytes(data))
    return path


def _path_that_is_also_a_file(path):
    return _zip(path, {**FILES, "extra": b"a file", "extra/inside.txt": b"and a folder"})


def _truncated_tar_gz(path):
    _tar(path, {**FILES, "model.onnx": bytes(range(256)) * 4096})
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    return path


@pytest.mark.parametrize("make", [_zip_with_a_bad_crc, _path_that_is_also_a_file, _truncated_tar_gz])
def test_a_damaged_archive_is_refused_with_an_archive_error(tmp_path, make):
    archive = make(tmp_path / ("m.tar.gz" if "tar" in make.__name__ else "m.zip"))
    (tmp_path / "out").mkdir()
    with pytest.raises(ArchiveError):
        unpack_model_archive(archive, tmp_path / "out", max_bytes=django_settings.CLASSIFIER_MODEL_ARCHIVE_MAX_BYTES)
