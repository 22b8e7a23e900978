"""The model versions admin: upload (validated), the report, activate / roll back, settings models read-only."""

import json
import shutil
import zipfile

import pytest
from django.contrib.messages import get_messages

from classifier.models import ModelVersion
from tests.classifier.factories import version_row

pytestmark = pytest.mark.django_db
ADD_URL = "/admin/classifier/modelversion/add/"


def _upload(admin_client, folder, version: str):
    with (
        (folder / "model.ts").open("rb") as model,
        (folder / "labels.json").open("rb") as labels,
        (folder / "config.json").open("rb") as config,
    ):
        return admin_client.post(
            ADD_URL,
            {
                "name": "flowers",
                "version": version,
                "engine": "",
                "precision": "",
                "notes": "from the admin",
                "model_upload": model,
                "labels_upload": labels,
                "config_upload": config,
            },
        )


def test_uploading_the_files_validates_and_stores_a_staged_version(
    admin_client, admin_user, relabelled_flowers, version_storage, settings
):
    settings.API_MAX_BODY_BYTES = 1000  # the model files are larger: admin uploads have their own limit
    response = _upload(admin_client, relabelled_flowers["v1"], "1")
    assert response.status_code == 302, [
        line for line in response.content.decode().splitlines() if "errorlist" in line or "<li>" in line
    ][:10]
    registered = ModelVersion.objects.get(name="flowers", version="1")
    assert registered.passed and registered.status == "staged" and registered.created_by == admin_user
    page = admin_client.get(f"/admin/classifier/modelversion/{registered.pk}/change/").content.decode()
    assert "validation-checks" in page and "Passed: loads" in page and 'id="activate-version"' in page
    assert "Preprocessing in force" in page
    assert "short side to 256, centre crop 224 (round), bilinear" in page and "from the config" in page


def test_an_upload_over_the_admin_upload_limit_is_413_naming_it(admin_client, relabelled_flowers, settings):
    settings.ADMIN_UPLOAD_MAX_BYTES = 1000
    response = _upload(admin_client, relabelled_flowers["v1"], "1")
    assert response.status_code == 413 and "1000 bytes" in response.json()["detail"]
    assert not ModelVersion.objects.exists()


def test_the_upload_form_states_the_limit_and_what_each_folder_needs(admin_client, settings):
    settings.ADMIN_UPLOAD_MAX_BYTES = 512 * 1024 * 1024
    page = admin_client.get(ADD_URL).content.decode()
    assert "512.0\xa0MB" in page and "ADMIN_UPLOAD_MAX_BYTES" in page
    assert "preprocessor_config.json" in page and "pretrained_cfg" in page and ".data files" in page


def test_a_transformers_folder_uploaded_as_an_archive_is_validated_and_staged(
    admin_client, library_folders, version_storage, tmp_path
):
    archive = tmp_path / "vit.zip"
    with zipfile.ZipFile(archive, "w") as bundle:
        for path in library_folders["transformers:vit"].iterdir():
            bundle.write(path, path.name)
    with archive.open("rb") as upload:
        response = admin_client.post(
            ADD_URL, {"name": "vit", "version": "1", "engine": "", "precision": "", "archive": upload}
        )
    assert response.status_code == 302
    registered = ModelVersion.objects.get(name="vit")
    assert registered.passed, registered.report["summary"]
    assert registered.report["kind"] == "transformers"
    assert registered.report["preprocessing"]["crop"] == {"size": 64, "rounding": "floor"}
    listing = admin_client.get("/admin/classifier/modelversion/").content.decode()
    assert "64px (squash 64, bilinear)" in listing


def test_an_upload_that_fails_the_gate_is_kept_staged_with_its_report(
    admin_client, relabelled_flowers, version_storage, settings, tmp_path
):
    settings.API_MAX_BODY_BYTES = 200 * 1024 * 1024
    folder = shutil.copytree(relabelled_flowers["v1"], tmp_path / "wrong")
    (folder / "labels.json").write_text(json.dumps(["daisy", "rose"]))
    response = _upload(admin_client, folder, "2")
    assert response.status_code == 302
    registered = ModelVersion.objects.get(version="2")
    assert not registered.passed
    messages = [str(m) for m in get_messages(response.wsgi_request)]
    assert any("Refused: labels failed: the model gives 5 outputs but labels.json has 2 labels" in m for m in messages)
    response = admin_client.post(f"/admin/classifier/modelversion/{registered.pk}/activate/", follow=True)
    assert "did not pass validation" in response.content.decode()
    registered.refresh_from_db()
    assert registered.status == "staged"


def test_an_upload_without_files_is_refused_on_the_form(admin_client):
    response = admin_client.post(ADD_URL, {"name": "flowers", "version": "1", "engine": "", "precision": ""})
    assert response.status_code == 200 and "Upload the model folder" in response.content.decode()
    assert not ModelVersion.objects.exists()


def test_the_activate_button_activates_and_on_a_retired_version_rolls_back(admin_client):
    first, second = version_row(version="1", status="active"), version_row(version="2")
    response = admin_client.post(f"/admin/classifier/modelversion/{second.pk}/activate/", follow=True)
    assert "Activated flowers@2" in response.content.decode()
    page = admin_client.get(f"/admin/classifier/modelversion/{first.pk}/change/").content.decode()
    assert "Roll back to this version" in page
    response = admin_client.post(f"/admin/classifier/modelversion/{first.pk}/activate/", follow=True)
    assert "Rolled back to flowers@1" in response.content.decode()
    assert dict(ModelVersion.objects.values_list("version", "status")) == {"1": "active", "2": "retired"}
    assert admin_client.get(f"/admin/classifier/modelversion/{first.pk}/activate/").status_code == 405


def test_the_activate_action_takes_exactly_one_version(admin_client):
    rows = [version_row(version="1"), version_row(version="2")]
    url = "/admin/classifier/modelversion/"
    response = admin_client.post(
        url, {"action": "activate_version", "_selected_action": [r.pk for r in rows]}, follow=True
    )
    assert "Select exactly one version" in response.content.decode()
    admin_client.post(url, {"action": "activate_version", "_selected_action": [rows[1].pk]})
    assert ModelVersion.objects.get(status="active").version == "2"


def test_the_list_shows_the_settings_models_read_only(admin_client):
    page = admin_client.get("/admin/classifier/modelversion/").content.decode()
    assert 'id="settings-models"' in page and "resnet18" in page


def test_torchscript_needs_the_executable_upload_permission_which_no_default_role_has(
    client, relabelled_flowers, version_storage, settings, django_user_model
):
    """A TorchScript file is a program: a staff user who may add versions but not upload code is refused
    before the gate runs it; given the permission, the same upload is registered."""
    from django.contrib.auth.models import Permission

    settings.API_MAX_BODY_BYTES = 200 * 1024 * 1024
    staff = django_user_model.objects.create_user("uploader", password="pw", is_staff=True)
    staff.user_permissions.add(*Permission.objects.filter(codename__in=["add_modelversion", "view_modelversion"]))
    client.force_login(staff)
    refused = _upload(client, relabelled_flowers["v1"], "1")
    assert refused.status_code == 200
    assert "classifier.upload_executable_model" in refused.content.decode()
    assert not ModelVersion.objects.exists()
    staff.user_permissions.add(Permission.objects.get(codename="upload_executable_model"))
    staff = django_user_model.objects.get(pk=staff.pk)  # the permission cache starts afresh
    client.force_login(staff)
    assert _upload(client, relabelled_flowers["v1"], "1").status_code == 302
    assert ModelVersion.objects.filter(version="1").exists()
