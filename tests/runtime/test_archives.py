"""Model folders sent as archives: unpacked safely or refused (classifier.runtime.archives)."""

import io
import tarfile
import zipfile

import pytest

from classifier.runtime.archives import MAX_MEMBERS, ArchiveError, unpack_model_archive

FILES = {"model.onnx": b"graph", "labels.json": b'["a", "b"]'}


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
