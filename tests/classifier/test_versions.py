"""Registering, validating (in a separate process), activating and rolling back model versions."""

import json
import shutil
import tarfile

import pytest
from django.core.files.storage import default_storage
from django.db import IntegrityError, transaction

from classifier import versions
from classifier.models import ModelVersion
from tests.classifier.factories import version_row

pytestmark = pytest.mark.django_db


def test_a_registered_archive_is_validated_stored_and_staged(relabelled_flowers, version_storage, tmp_path):
    archive = tmp_path / "flowers-1.tar.gz"
    with tarfile.open(archive, "w:gz") as bundle:
        bundle.add(relabelled_flowers["v1"], arcname="flowers")
    registered = versions.model_version_register(name="flowers", version="1", path=archive, notes="first")
    assert registered.status == ModelVersion.Status.STAGED and registered.passed, registered.report["summary"]
    assert [check["check"] for check in registered.report["checks"]] == ["loads", "labels", "forward", "latency"]
    assert registered.report["latency_ms"]["batch_1"] > 0 and registered.report["validated_at"]
    assert registered.model_file.name == "model_versions/flowers/1/model.ts"
    assert default_storage.exists(registered.labels_file.name) and default_storage.exists(registered.config_file.name)
    assert registered.sha256 == versions.files_sha256(
        [relabelled_flowers["v1"] / name for name in ("model.ts", "labels.json", "config.json")]
    )
    local = versions.model_version_local_folder(model_version=registered)
    assert (local / "model.ts").read_bytes() == (relabelled_flowers["v1"] / "model.ts").read_bytes()


def _broken_state_dict(folder):
    data = (folder / "model.pt").read_bytes()
    (folder / "model.pt").write_bytes(data[: len(data) // 2])


def _wrong_labels(folder):
    (folder / "labels.json").write_text(json.dumps({"0": "daisy", "1": "rose"}))


def _not_loading_onnx(folder):
    (folder / "model.onnx").write_bytes(b"\x08\x07garbage, not an ONNX graph" * 10)


@pytest.mark.parametrize(
    "kind, spoil, expected",
    [
        ("state_dict", _broken_state_dict, "Refused: loads failed: model.pt is not a loadable state_dict"),
        (
            "torchscript",
            _wrong_labels,
            "Refused: labels failed: the model gives 5 outputs but labels.json has 2 labels",
        ),
        ("onnx", _not_loading_onnx, "Refused: loads failed: the ONNX graph does not load in onnxruntime"),
    ],
)
def test_a_version_that_fails_the_gate_is_staged_with_a_readable_report_and_cannot_be_activated(
    flower_folders, version_storage, tmp_path, kind, spoil, expected
):
    folder = shutil.copytree(flower_folders[kind], tmp_path / "spoilt")
    spoil(folder)
    registered = versions.model_version_register(name="flowers", version="bad", path=folder)
    assert not registered.passed and registered.report["summary"].startswith(expected), registered.report["summary"]
    assert str(tmp_path) not in json.dumps(registered.report)
    with pytest.raises(versions.ModelVersionError, match="did not pass validation"):
        versions.model_version_activate(name="flowers", version="bad")
    registered.refresh_from_db()
    assert registered.status == ModelVersion.Status.STAGED


def test_the_gate_that_runs_past_its_timeout_setting_refuses(flower_folders, settings):
    settings.CLASSIFIER_VALIDATION_TIMEOUT_SECONDS = 0.05
    report = versions.run_validation_gate(flower_folders["torchscript"])
    assert not report["passed"]
    assert "ran past CLASSIFIER_VALIDATION_TIMEOUT_SECONDS (0.05 s)" in report["summary"]


def test_activating_retires_the_active_version_and_activating_it_again_rolls_back():
    first, second = version_row(version="1"), version_row(version="2")
    versions.model_version_activate(name="flowers", version="1")
    versions.model_version_activate(name="flowers", version="2")
    first.refresh_from_db(), second.refresh_from_db()
    assert (first.status, second.status) == ("retired", "active") and second.activated_at is not None
    versions.model_version_activate(name="flowers", version="1")
    first.refresh_from_db(), second.refresh_from_db()
    assert (first.status, second.status) == ("active", "retired")


def test_other_names_keep_their_active_version():
    version_row(name="flowers", version="1", status="active")
    version_row(name="birds", version="1")
    versions.model_version_activate(name="birds", version="1")
    assert set(ModelVersion.objects.filter(status="active").values_list("name", flat=True)) == {"flowers", "birds"}


def test_the_database_refuses_a_second_active_version_of_a_name():
    version_row(version="1", status="active")
    with pytest.raises(IntegrityError), transaction.atomic():
        version_row(version="2", status="active")


def test_an_unknown_version_cannot_be_activated():
    with pytest.raises(versions.ModelVersionError, match="No version '9' of model 'flowers'"):
        versions.model_version_activate(name="flowers", version="9")


def test_a_taken_version_or_a_bad_name_is_refused_before_validation(flower_folders):
    version_row(version="1")
    with pytest.raises(versions.ModelVersionError, match="already registered"):
        versions.model_version_register(name="flowers", version="1", path=flower_folders["torchscript"])
    with pytest.raises(versions.ModelVersionError, match="not allowed"):
        versions.model_version_register(name="flowers", version="a@b", path=flower_folders["torchscript"])


def test_a_folder_without_labels_is_refused(flower_folders, tmp_path):
    folder = shutil.copytree(flower_folders["torchscript"], tmp_path / "no-labels")
    (folder / "labels.json").unlink()
    with pytest.raises(versions.ModelVersionError, match="no labels.json"):
        versions.model_version_register(name="flowers", version="1", path=folder)


def _stored_names(root) -> list[str]:
    return sorted(str(path.relative_to(root)) for path in root.rglob("*") if path.is_file())


def test_a_version_that_fails_the_gate_keeps_its_report_but_not_its_files(flower_folders, version_storage, tmp_path):
    folder = shutil.copytree(flower_folders["onnx"], tmp_path / "spoilt")
    _not_loading_onnx(folder)
    registered = versions.model_version_register(name="flowers", version="bad", path=folder)
    registered.refresh_from_db()
    assert not registered.passed and registered.report["checks"]
    assert not registered.model_file and not registered.labels_file
    assert _stored_names(version_storage / "media") == []  # nothing of it in the media root
    with pytest.raises(versions.ModelVersionError, match="files were not kept"):
        versions.model_version_validate(model_version=registered)


def test_a_damaged_archive_is_refused_with_the_archives_message(flower_folders, version_storage, tmp_path):
    import zipfile

    archive = tmp_path / "flowers.zip"
    with zipfile.ZipFile(archive, "w") as bundle:  # stored: the bytes below are the file's own
        for path in flower_folders["onnx"].iterdir():
            bundle.write(path, path.name)
        bundle.writestr("labels.json/inside", b"a path that is also a file")
    with pytest.raises(versions.ModelVersionError, match="The archive was refused: the archive is damaged"):
        versions.model_version_register(name="flowers", version="1", path=archive)
    assert not ModelVersion.objects.exists()


def test_labels_over_the_metadata_bound_are_refused_in_a_folder(flower_folders, settings, tmp_path):
    folder = shutil.copytree(flower_folders["onnx"], tmp_path / "big-labels")
    settings.CLASSIFIER_MODEL_METADATA_MAX_BYTES = (folder / "labels.json").stat().st_size - 1
    with pytest.raises(versions.ModelVersionError, match="labels.json is over CLASSIFIER_MODEL_METADATA_MAX_BYTES"):
        versions.model_version_register(name="flowers", version="1", path=folder)


@pytest.mark.parametrize("key", ["resize", "crop"])
def test_a_config_asking_for_an_input_over_the_bound_is_refused(flower_folders, settings, tmp_path, key):
    folder = shutil.copytree(flower_folders["onnx"], tmp_path / "huge-input")
    limit = settings.CLASSIFIER_MAX_INPUT_SIZE
    (folder / "config.json").write_text(json.dumps({key: limit + 1}))
    with pytest.raises(versions.ModelVersionError, match=f"{key} is {limit + 1}, over CLASSIFIER_MAX_INPUT_SIZE"):
        versions.model_version_register(name="flowers", version="1", path=folder)
    assert not ModelVersion.objects.exists()


def test_a_library_folders_pickle_weights_need_the_permission_for_code(library_folders, version_storage, tmp_path):
    import torch
    from safetensors.torch import load_file

    folder = shutil.copytree(library_folders["timm:test_resnet"], tmp_path / "pickled")
    torch.save(load_file(str(folder / "model.safetensors")), folder / "pytorch_model.bin")
    (folder / "model.safetensors").unlink()
    with pytest.raises(versions.ModelVersionError, match="pytorch_model.bin is a pickle"):
        versions.model_version_register(name="resnet", version="1", path=folder, executable_allowed=False)
    assert not ModelVersion.objects.exists()
    registered = versions.model_version_register(name="resnet", version="1", path=folder)
    assert registered.passed, registered.report["summary"]
    assert "timm's own model" in registered.report["agreement"]["reference"]
