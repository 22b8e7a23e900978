"""A user's own model through the API: its labels, how /api/v2/models describes it, per-model readiness."""

import base64

import pytest

from accounts.models import RateLimitEvent
from classifier.runtime.registry import Unavailable
from classifier.serving import process_runtime
from tests.model_weights import FLOWERS, flower_picture
from tests.runtime.helpers import folder_source, load_slot

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("loaded_model")]


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


@pytest.fixture(scope="module")
def flowers_slot(flower_folders):
    slot = load_slot(folder_source(flower_folders["onnx"]))
    assert slot.model is not None, slot.reason
    return slot


@pytest.fixture
def flowers(install_slot, flowers_slot):
    return install_slot(flowers_slot)


def test_v2_answers_with_the_models_own_labels(auth_client, flowers):
    images = [{"image": b64(flower_picture(label)), "filename": f"{label}.jpg"} for label in FLOWERS]
    response = auth_client.post("/api/v2/classify", {"images": images, "model": "flowers", "top_k": 5}, format="json")
    assert response.status_code == 200, response.content
    body = response.json()
    assert body["model"] == "flowers"
    assert [result["predictions"][0]["label"] for result in body["results"]] == list(FLOWERS)
    assert all(sorted(p["label"] for p in result["predictions"]) == sorted(FLOWERS) for result in body["results"])


def test_models_lists_each_model_with_labels_count_engine_precision_artifact_and_status(client, flowers):
    models = {model["name"]: model for model in client.get("/api/v2/models").json()["models"]}
    assert {
        key: models["flowers"][key] for key in ("status", "num_labels", "engine", "precision", "artifact", "exact")
    } == {
        "status": "loaded",
        "num_labels": 5,
        "engine": "onnxruntime",
        "precision": "fp32",
        "artifact": "onnx",
        "exact": True,
    }
    assert models["resnet18"]["num_labels"] == 1000 and models["resnet18"]["artifact"] == "torchvision"


@pytest.mark.usefixtures("database_windows")
def test_a_loaded_model_serves_while_the_default_is_unavailable(auth_client, flowers, monkeypatch):
    monkeypatch.setattr(process_runtime().slot(), "state", Unavailable("the weights did not download"))
    ours = auth_client.post(
        "/api/v2/classify", {"images": [{"image": b64(flower_picture("rose"))}], "model": "flowers"}, format="json"
    )
    assert ours.status_code == 200 and ours.json()["results"][0]["predictions"][0]["label"] == "rose"
    default = auth_client.post("/api/v2/classify", {"images": [{"image": b64(flower_picture("rose"))}]}, format="json")
    assert default.status_code == 503 and "the weights did not download" in default.json()["detail"]
    assert RateLimitEvent.objects.count() == 1  # the 503 spent no quota


def test_readiness_is_per_model(client, flowers, monkeypatch):
    assert client.get("/readyz", {"model": "flowers"}).status_code == 200
    monkeypatch.setattr(flowers, "state", Unavailable("the folder is gone"))
    assert client.get("/readyz", {"model": "flowers"}).status_code == 503
    assert client.get("/readyz").status_code == 200
    assert client.get("/readyz", {"model": "nope"}).status_code == 503  # not ready, as an unknown name


def test_v1_model_info_reports_what_was_loaded(client):
    body = client.get("/api/v1/model/info").json()
    assert body["weights"].startswith("file:") and body["artifact"] == "torchvision"
    assert body["engine"] == "onnxruntime" and body["precision"] == "fp32" and body["num_labels"] == 1000
