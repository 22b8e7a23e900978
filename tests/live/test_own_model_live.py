"""A user's own model folder named in CLASSIFIER_MODELS, served by real uvicorn workers."""

import base64

import pytest
import requests

from tests.live.server import LiveServer
from tests.model_weights import FLOWERS, flower_picture

pytestmark = pytest.mark.live


@pytest.fixture(scope="module")
def server(tmp_path_factory, flower_folders):
    database = tmp_path_factory.mktemp("own-model") / "db.sqlite3"
    live = LiveServer(
        database_url=f"sqlite:///{database}",
        weights="random",
        workers=2,
        ready_models=("resnet18",),
        extra_env={
            "CLASSIFIER_MODELS": f"flowers={flower_folders['state_dict']},resnet18=random",
            "CLASSIFIER_ENGINE_CACHE_DIR": str(tmp_path_factory.mktemp("engine-cache")),
        },
    ).start()
    yield live
    live.stop()


def test_the_folder_model_is_v1s_model_and_answers_its_own_labels(server):
    key = server.create_key("own", rate_limit=100)
    for label in FLOWERS:
        response = requests.post(
            f"{server.url}/api/v1/classify",
            headers={"Authorization": f"Bearer {key}"},
            files={"file": (f"{label}.jpg", flower_picture(label), "image/jpeg")},
            timeout=30,
        )
        assert response.status_code == 200, response.text
        body = response.json()
        assert body["model"] == "flowers" and body["predictions"][0]["label"] == label


def test_both_models_are_listed_and_v2_picks_either(server):
    models = requests.get(f"{server.url}/api/v2/models", timeout=10).json()["models"]
    assert [(m["name"], m["default"], m["num_labels"], m["artifact"], m["exact"]) for m in models] == [
        ("flowers", True, 5, "state_dict", True),
        ("resnet18", False, 1000, "torchvision", True),
    ]
    assert {m["engine"] for m in models} <= {"onnxruntime", "openvino"}  # auto: whichever exact engine it measured
    assert "/" not in models[0]["weights"]
    key = server.create_key("own-v2", rate_limit=100)
    image = base64.b64encode(flower_picture("tulip")).decode()
    for model in ("flowers", "resnet18"):
        response = requests.post(
            f"{server.url}/api/v2/classify",
            headers={"X-API-Key": key},
            timeout=30,
            json={"images": [{"image": image}], "model": model, "top_k": 5},
        )
        assert response.status_code == 200, response.text
        predictions = response.json()["results"][0]["predictions"]
        assert len(predictions) == 5 and (model != "flowers" or predictions[0]["label"] == "tulip")
