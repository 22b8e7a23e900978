from pathlib import Path

import pytest
from django.conf import settings

from classifier.runtime.registry import Slot, Unavailable
from classifier.runtime.sources import ModelSource

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("loaded_model")]
URL = "/api/v2/models"


def test_models_is_public_and_describes_the_loaded_model(client):
    response = client.get(URL)
    assert response.status_code == 200
    body = response.json()
    assert body["max_batch_images"] == settings.CLASSIFIER_MAX_BATCH_IMAGES
    assert body["max_top_k"] == settings.CLASSIFIER_MAX_TOP_K
    (model,) = body["models"]
    assert model["name"] == "resnet18" and model["default"] is True and model["status"] == "loaded"
    assert model["num_labels"] == 1000 and model["input_size"] == 224 and model["device"] == "cpu"
    assert model["preprocessing"] == {
        "resize": {"mode": "center", "size": 256},
        "crop": {"size": 224, "rounding": "round"},
        "interpolation": "bilinear",
        "rescale": 1 / 255,
        "mean": [0.485, 0.456, 0.406],
        "std": [0.229, 0.224, 0.225],
        "channels": "RGB",
        "draft": False,
        "source": "library",
    }
    assert model["weights"].startswith("file:") and "/" not in model["weights"]


def test_further_models_are_listed_after_the_default_with_their_status(client, install_slot):
    install_slot(
        Slot(
            source=ModelSource(name="vit_b_16", architecture="vit_b_16", weights="/srv/w.pt"),
            state=Unavailable("no"),
        )
    )
    install_slot(Slot(source=ModelSource(name="flowers", architecture=None, folder=Path("/srv/models/flowers"))))
    models = client.get(URL).json()["models"]
    assert [m["name"] for m in models] == ["resnet18", "vit_b_16", "flowers"]
    unloaded = {
        "pretrained": None,
        "num_labels": None,
        "input_size": None,
        "device": None,
        "artifact": None,
        "engine": None,
        "precision": None,
        "exact": None,
        "compiled": None,
        "preprocessing": None,
    }
    assert models[1] == {
        "name": "vit_b_16",
        "default": False,
        "status": "unavailable",
        "reason": "no",
        "weights": "file:w.pt",
        "version": "settings",
        **unloaded,
    }
    assert models[2] == {
        "name": "flowers",
        "default": False,
        "status": "loading",
        "reason": "The model is loading.",
        "weights": "folder:flowers",
        "version": "settings",
        **unloaded,
    }


def test_schema_documents_every_v2_endpoint_with_examples(client):
    import yaml  # noqa: PLC0415 - drf-spectacular depends on PyYAML

    schema = yaml.safe_load(client.get("/api/schema/").content)
    for path, method in [("/api/v2/classify", "post"), ("/api/v2/models", "get"), ("/api/v2/usage", "get")]:
        operation = schema["paths"][path][method]
        assert any(
            content.get("examples")
            for response in operation["responses"].values()
            for content in response.get("content", {}).values()
        ), path
    request_examples = schema["paths"]["/api/v2/classify"]["post"]["requestBody"]["content"]["application/json"]
    assert request_examples["examples"]
