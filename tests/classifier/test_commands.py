"""register_model, activate_model and list_models: the operator's documented interface."""

import zipfile
from io import StringIO

import pytest
from django.core.management import CommandError, call_command

from classifier.models import ModelVersion
from tests.classifier.factories import version_row

pytestmark = pytest.mark.django_db


def _run(*args) -> str:
    out = StringIO()
    call_command(*args, stdout=out)
    return out.getvalue()


def test_register_model_from_a_zip_with_activate_validates_stores_and_activates(
    relabelled_flowers, version_storage, tmp_path
):
    archive = tmp_path / "flowers.zip"
    with zipfile.ZipFile(archive, "w") as bundle:
        for path in relabelled_flowers["v2"].iterdir():
            bundle.write(path, path.name)
    out = _run("register_model", "flowers", str(archive), "--version", "2", "--activate", "--notes", "relabelled")
    assert "flowers@2: Passed" in out and "flowers@2 is active" in out
    registered = ModelVersion.objects.get(name="flowers", version="2")
    assert (registered.status, registered.notes) == ("active", "relabelled")


def test_register_model_refuses_an_unsafe_archive(tmp_path):
    archive = tmp_path / "evil.zip"
    with zipfile.ZipFile(archive, "w") as bundle:
        bundle.writestr("../../model.onnx", b"x")
    with pytest.raises(CommandError, match="outside the model folder"):
        _run("register_model", "flowers", str(archive), "--version", "1")
    assert not ModelVersion.objects.exists()


def test_activate_model_activates_and_rolls_back():
    version_row(version="1", status="active")
    version_row(version="2")
    assert "flowers@2 is active" in _run("activate_model", "flowers@2")
    assert "flowers@1 is active" in _run("activate_model", "flowers@1")
    assert dict(ModelVersion.objects.values_list("version", "status")) == {"1": "active", "2": "retired"}


def test_activate_model_refuses_a_failed_version_and_a_malformed_name():
    version_row(version="3", passed=False)
    with pytest.raises(CommandError, match="did not pass validation"):
        _run("activate_model", "flowers@3")
    with pytest.raises(CommandError, match="NAME@VERSION"):
        _run("activate_model", "flowers")


def test_list_models_shows_settings_models_and_every_version():
    version_row(version="1", status="retired")
    version_row(version="2", passed=False)
    out = _run("list_models")
    lines = out.splitlines()
    assert lines[0].startswith("resnet18@settings\tsettings")
    assert any(line.startswith("flowers@1\tretired\tvalidated") for line in lines)
    assert any(line.startswith("flowers@2\tstaged\tNOT VALIDATED") for line in lines)


def test_compile_models_compiles_each_configured_model_once_then_finds_it(weights_path, settings, tmp_path, db):
    from io import StringIO

    from django.core.management import call_command

    settings.CLASSIFIER_ENGINE_CACHE_DIR = tmp_path / "compiled"
    settings.CLASSIFIER_WEIGHTS = str(weights_path)
    first, second = StringIO(), StringIO()
    call_command("compile_models", stdout=first)
    call_command("compile_models", stdout=second)
    assert "resnet18@settings: compiled here (onnxruntime fp32" in first.getvalue()
    assert "resnet18@settings: loaded compiled (onnxruntime fp32" in second.getvalue()
    assert len(list((tmp_path / "compiled").glob("*/manifest.json"))) == 1
