import base64

import pytest
from django.test import override_settings

from classifier import cache
from classifier.runtime.registry import build_model
from classifier.runtime.sources import ModelSource
from classifier.runtime_settings import runtime_config
from classifier.serving import process_runtime
from tests.model_weights import picture

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("loaded_model")]
V1, V2 = "/api/v1/classify", "/api/v2/classify"


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def images_through_model(registry) -> int:
    return process_runtime().slot().batcher.stats.images


def test_same_image_again_is_answered_from_the_cache_without_the_model(auth_client, loaded_model):
    payload = {"image": b64(picture("goldfish"))}
    first = auth_client.post(V1, payload, format="json")
    before = images_through_model(loaded_model)
    second = auth_client.post(V1, payload, format="json")
    assert first.status_code == second.status_code == 200
    assert second.json()["predictions"] == first.json()["predictions"]
    assert images_through_model(loaded_model) == before


def test_cache_key_includes_top_k(auth_client, loaded_model):
    images = [{"image": b64(picture("jellyfish"))}]
    auth_client.post(V2, {"images": images, "top_k": 3}, format="json")
    before = images_through_model(loaded_model)
    response = auth_client.post(V2, {"images": images, "top_k": 2}, format="json")
    assert len(response.json()["results"][0]["predictions"]) == 2
    assert images_through_model(loaded_model) == before + 1


def test_a_batch_mixes_hits_and_misses_in_input_order(auth_client, loaded_model):
    auth_client.post(V2, {"images": [{"image": b64(picture("goldfish"))}], "top_k": 1}, format="json")
    before = images_through_model(loaded_model)
    images = [{"image": b64(picture(label))} for label in ("tree frog", "goldfish", "jellyfish")]
    body = auth_client.post(V2, {"images": images, "top_k": 1}, format="json").json()
    assert [r["predictions"][0]["label"] for r in body["results"]] == ["tree frog", "goldfish", "jellyfish"]
    assert images_through_model(loaded_model) == before + 2


@override_settings(CLASSIFIER_RESULT_CACHE_SECONDS=0)
def test_setting_zero_turns_the_cache_off(auth_client, loaded_model):
    payload = {"image": b64(picture("goldfish"))}
    auth_client.post(V1, payload, format="json")
    before = images_through_model(loaded_model)
    auth_client.post(V1, payload, format="json")
    assert images_through_model(loaded_model) == before + 1


@override_settings(
    CACHES={"default": {"BACKEND": "django.core.cache.backends.redis.RedisCache", "LOCATION": "redis://127.0.0.1:1/0"}}
)
def test_unreachable_cache_backend_falls_back_to_the_model(auth_client, caplog):
    response = auth_client.post(V1, {"image": b64(picture("tree frog"))}, format="json")
    assert response.status_code == 200
    assert response.json()["predictions"][0]["label"] == "tree frog"
    assert "result cache unavailable" in caplog.text


def test_random_weights_are_never_cached_and_file_weights_are_fingerprinted_by_content(weights_path, tmp_path):
    assert build_model(resnet18("random"), cpu()).fingerprint is None
    copy = tmp_path / "same.pt"
    copy.write_bytes(weights_path.read_bytes())
    assert (
        build_model(resnet18(str(copy)), cpu()).fingerprint
        == build_model(resnet18(str(weights_path)), cpu()).fingerprint
    )
    assert cache.result_key("a", b"x", 5) != cache.result_key("a", b"y", 5) != cache.result_key("a", b"x", 4)


def resnet18(weights: str) -> ModelSource:
    return ModelSource(name="resnet18", architecture="resnet18", weights=weights)


def cpu():
    """The runtime's configuration now (the tests' settings: a CPU)."""
    return runtime_config()
