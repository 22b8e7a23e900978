"""Versions through the API: model_version in v1 and v2 answers, name@version, /api/v2/models?all=true."""

import base64
import re

import pytest

from classifier.serving import process_runtime
from tests.classifier.factories import version_row
from tests.model_weights import flower_picture, picture
from tests.runtime.helpers import folder_source, load_slot

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("loaded_model")]


@pytest.fixture(scope="module")
def flowers_v2(relabelled_flowers):
    source = folder_source(relabelled_flowers["v2"])
    slot = load_slot(type(source)(name="flowers", architecture=None, folder=source.folder, version="2"))
    assert slot.model is not None, slot.reason
    yield slot
    slot.batcher.close()


@pytest.fixture
def flowers(install_slot, flowers_v2):
    return install_slot(flowers_v2)


def _classify(client, model: str):
    image = base64.b64encode(flower_picture("rose")).decode()
    return client.post("/api/v2/classify", {"images": [{"image": image}], "model": model, "top_k": 1}, format="json")


def test_v1_answers_say_which_version_answered(auth_client):
    response = auth_client.post(
        "/api/v1/classify", {"image": base64.b64encode(picture("goldfish")).decode()}, format="json"
    )
    assert response.status_code == 200 and response.json()["model_version"] == "settings"


def test_v2_answers_carry_the_served_version_whether_or_not_the_request_names_it(auth_client, flowers):
    for model in ("flowers", "flowers@2"):
        response = _classify(auth_client, model)
        assert response.status_code == 200, response.content
        body = response.json()
        assert (body["model"], body["model_version"]) == ("flowers", "2")
        assert body["results"][0]["predictions"][0]["label"] == "rose-v2"


def test_a_version_that_is_not_the_served_one_is_404_model_not_found(auth_client, flowers):
    version_row(version="1", status="retired")
    version_row(version="3", status="staged")
    for model in ("flowers@1", "flowers@3", "flowers@9"):
        response = _classify(auth_client, model)
        assert response.status_code == 404, response.content
        assert response.json()["code"] == "model_not_found"
        assert "serves '2'" in response.json()["detail"]


def test_an_unknown_name_with_a_version_is_still_400_unknown_model(auth_client):
    response = _classify(auth_client, "nothing@1")
    assert response.status_code == 400 and response.json()["code"] == "unknown_model"


def test_models_lists_the_served_versions_and_with_all_every_registered_one(client, auth_client, flowers):
    version_row(version="1", status="retired")
    version_row(version="2", status="active")
    version_row(version="3", passed=False)
    body = client.get("/api/v2/models").json()
    assert [(m["name"], m["version"]) for m in body["models"]] == [("resnet18", "settings"), ("flowers", "2")]
    assert "versions" not in body
    every = auth_client.get("/api/v2/models?all=true").json()["versions"]  # needs a key
    assert [(v["version"], v["status"], v["validated"]) for v in every] == [
        ("3", "staged", False),
        ("2", "active", True),
        ("1", "retired", True),
    ]
    assert auth_client.get("/api/v2/models?all=maybe").status_code == 400


def test_the_schema_documents_model_version_and_the_versions_list(client):
    import yaml  # noqa: PLC0415

    schema = yaml.safe_load(client.get("/api/schema/").content)["components"]["schemas"]
    assert "model_version" in schema["ClassifyOutput"]["required"]
    assert "model_version" in schema["ClassifyBatchOutput"]["required"]
    assert "version" in schema["ModelOutput"]["required"]
    assert schema["ModelsOutput"]["properties"]["versions"]["items"]["$ref"].endswith("VersionOutput")
    for component in ("ClassifyBatchJsonRequest", "ClassifyBatchMultipartRequest"):
        model = schema[component]["properties"]["model"]
        assert "name@version" in model["description"]
        pattern = re.compile(model["pattern"])
        served = process_runtime().names()[0]
        assert pattern.match(served) and pattern.match(f"{served}@3") and pattern.match(f"{served}@v1.2-rc")
        assert (
            not pattern.match("not-a-served-model")
            and not pattern.match(f"{served}@")
            and not pattern.match(f"{served}@a@b")
        )
