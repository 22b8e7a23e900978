"""timm and transformers folders through the API: v1, v2 JSON, v2 multipart, /api/v2/models, and registered with
register_model and activate_model; the answers are the library's own (top 5 labels, confidences within 1e-4)."""

import base64
import io
import tarfile
from io import StringIO

import numpy as np
import pytest
from django.core.management import call_command

from classifier.models import ModelVersion
from classifier.runtime.registry import Runtime
from classifier.runtime_settings import runtime_config
from classifier.watcher import VersionWatcher
from tests.library_models import CLASSES
from tests.runtime.helpers import folder_source, load_slot

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("loaded_model")]
# The library's probabilities within 1e-4; the API rounds confidences to 4 places (up to 5e-5 more).
TOLERANCE = 1e-4 + 5e-5
PHOTOS = ("chelsea.jpg", "rocket.png", "astronaut.jpg", "off-centre-disc.png")


def expected(library_answers, library_photos, model: str, photo: str) -> list[tuple[str, float]]:
    row = library_answers[model][list(library_photos).index(photo)]
    order = np.argsort(-row, kind="stable")
    return [(CLASSES[index], float(row[index])) for index in order]


def assert_same(predictions: list[dict], wanted: list[tuple[str, float]]) -> None:
    assert [p["label"] for p in predictions] == [label for label, _ in wanted]
    assert max(abs(p["confidence"] - confidence) for p, (_, confidence) in zip(predictions, wanted)) <= TOLERANCE


@pytest.fixture(scope="module")
def library_slots(library_folders):
    slots = {
        model: load_slot(folder_source(library_folders[model], name=model.split(":")[1].replace("_", "-")))
        for model in ("transformers:convnext", "timm:test_vit")
    }
    assert all(slot.model is not None for slot in slots.values()), [slot.reason for slot in slots.values()]
    yield slots
    for slot in slots.values():
        slot.batcher.close()


@pytest.mark.parametrize("model", ["transformers:convnext", "timm:test_vit"])
def test_v2_json_and_multipart_answer_as_the_library_does(
    auth_client, install_slot, library_slots, library_photos, library_answers, model
):
    name = install_slot(library_slots[model]).name
    images = [{"image": base64.b64encode(library_photos[photo]).decode(), "filename": photo} for photo in PHOTOS]
    json_body = auth_client.post("/api/v2/classify", {"images": images, "model": name, "top_k": 5}, format="json")
    uploads = []
    for photo in PHOTOS:
        upload = io.BytesIO(library_photos[photo])
        upload.name = photo
        uploads.append(upload)
    multipart = auth_client.post(
        "/api/v2/classify", {"files": uploads, "model": name, "top_k": "5"}, format="multipart"
    )
    for response in (json_body, multipart):
        assert response.status_code == 200, response.content
        for photo, result in zip(PHOTOS, response.json()["results"]):
            assert_same(result["predictions"], expected(library_answers, library_photos, model, photo))


def test_v1_answers_as_the_library_does_when_the_library_model_is_the_default(
    auth_client, install_slot, library_folders, library_photos, library_answers
):
    slot = load_slot(folder_source(library_folders["transformers:vit"], name="resnet18"))  # the default's name
    install_slot(slot)
    try:
        for photo in PHOTOS:
            upload = io.BytesIO(library_photos[photo])
            upload.name = photo
            response = auth_client.post("/api/v1/classify", {"file": upload}, format="multipart")
            assert response.status_code == 200, response.content
            wanted = expected(library_answers, library_photos, "transformers:vit", photo)
            assert_same(response.json()["predictions"], wanted[: len(response.json()["predictions"])])
    finally:
        slot.batcher.close()


def test_models_shows_the_library_and_the_preprocessing_in_force(client, install_slot, library_slots):
    install_slot(library_slots["transformers:convnext"])
    install_slot(library_slots["timm:test_vit"])
    models = {model["name"]: model for model in client.get("/api/v2/models").json()["models"]}
    convnext, vit = models["convnext"], models["test-vit"]
    assert (convnext["artifact"], vit["artifact"]) == ("transformers", "timm")
    assert convnext["preprocessing"] == {
        "resize": {"mode": "center", "size": 72},  # int(63 / 0.875)
        "crop": {"size": 63, "rounding": "floor"},
        "interpolation": "bicubic",
        "rescale": 1 / 255,
        "mean": [0.5, 0.5, 0.5],
        "std": [0.5, 0.5, 0.5],
        "channels": "RGB",
        "draft": False,
        "source": "library",
    }
    assert vit["preprocessing"]["resize"] == {"mode": "border", "size": 168}  # floor(160 / 0.95)
    assert vit["input_size"] == 160 and vit["preprocessing"]["interpolation"] == "bicubic"


def test_a_registered_and_activated_library_folder_answers_as_the_library_does(
    auth_client, install_slot, library_folders, library_photos, library_answers, version_storage, tmp_path, settings
):
    archive = tmp_path / "convnext.tar.gz"
    with tarfile.open(archive, "w:gz") as bundle:
        bundle.add(library_folders["transformers:convnext"], arcname="convnext")
    out = StringIO()
    call_command("register_model", "convnext", str(archive), "--version", "1", stdout=out)
    call_command("activate_model", "convnext@1", stdout=out)
    assert "convnext@1: Passed" in out.getvalue(), out.getvalue()
    assert ModelVersion.objects.get(name="convnext").status == "active"
    watcher = VersionWatcher(Runtime(runtime_config))
    assert watcher.sync() == ["convnext"]
    slot = watcher.registry.get("convnext")
    try:
        install_slot(slot)
        images = [{"image": base64.b64encode(library_photos[photo]).decode()} for photo in PHOTOS]
        response = auth_client.post(
            "/api/v2/classify", {"images": images, "model": "convnext", "top_k": 5}, format="json"
        )
        assert response.status_code == 200 and response.json()["model_version"] == "1", response.content
        for photo, result in zip(PHOTOS, response.json()["results"]):
            assert_same(
                result["predictions"], expected(library_answers, library_photos, "transformers:convnext", photo)
            )
    finally:
        slot.batcher.close()
