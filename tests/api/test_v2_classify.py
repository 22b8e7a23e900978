import base64
import io

import pytest
from django.conf import settings

from accounts.models import RateLimitEvent, RequestLog
from classifier.api.throttling import SlidingWindowThrottle
from classifier.runtime.registry import Slot
from classifier.runtime.sources import ModelSource
from classifier.serving import process_runtime
from tests.model_weights import picture
from tests.runtime.helpers import load_slot

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("loaded_model")]
URL = "/api/v2/classify"
SECOND_MODEL = "mobilenet_v3_small"
SECOND_SOURCE = ModelSource(name=SECOND_MODEL, architecture=SECOND_MODEL, weights="random")


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def item(label: str, filename: str = "") -> dict:
    return {"image": b64(picture(label)), "filename": filename or f"{label}.jpg"}


def keyed_client(client, make_key, **limits):
    _, raw = make_key(**{"rate_limit": 1000, "rate_window_seconds": 60, **limits})
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {raw}")
    return client


def charged() -> list[int]:
    """The units admitted into the windows so far, in order."""
    return list(RateLimitEvent.objects.order_by("at", "pk").values_list("cost", flat=True))


@pytest.fixture
def v2(client, make_key):
    return keyed_client(client, make_key)


@pytest.fixture(scope="module")
def second_slot():
    slot = load_slot(SECOND_SOURCE)
    assert slot.model is not None, slot.reason
    return slot


@pytest.fixture
def second_model(install_slot, second_slot):
    return install_slot(second_slot)


@pytest.fixture
def clock(monkeypatch):
    now = [1_000_000.0]
    monkeypatch.setattr(SlidingWindowThrottle, "clock", staticmethod(lambda: now[0]))
    return now


def test_the_answer_says_the_engine_that_ran_it_is_exact(v2):
    response = v2.post(URL, {"images": [item("goldfish")]}, format="json")
    assert response.status_code == 200, response.content
    engine = process_runtime().get().model.engine
    assert response.json()["engine"] == {
        "name": str(engine.name),
        "precision": "fp32",
        "exact": True,
        "agreement": None,  # exact: equal to eager fp32 within 1e-4, nothing to measure per version
    }


def test_batch_with_good_and_bad_images_answers_each_in_input_order(v2):
    images = [
        item("goldfish"),
        {"image": b64(b"plain text, not an image"), "filename": "notes.txt"},
        item("jellyfish"),
        {"image": "!!! not base64 !!!", "filename": "garbled"},
        {"image": "", "filename": "empty"},
        item("tree frog"),
    ]
    response = v2.post(URL, {"images": images, "top_k": 3}, format="json")
    assert response.status_code == 200, response.content
    body = response.json()
    assert body["model"] == "resnet18" and body["id"] == response["X-Request-ID"]
    assert body["created"].endswith("Z") and body["processing_time_ms"] >= 0
    results = body["results"]
    assert [r["index"] for r in results] == list(range(6))
    assert [r["filename"] for r in results] == [i["filename"] for i in images]
    assert [r["predictions"][0]["label"] for r in (results[0], results[2], results[5])] == [
        "goldfish",
        "jellyfish",
        "tree frog",
    ]
    assert all(len(r["predictions"]) == 3 and "error" not in r for r in (results[0], results[2], results[5]))
    assert [results[i]["error"]["code"] for i in (1, 3, 4)] == ["invalid_image", "invalid_base64", "empty_image"]
    assert all(results[i]["error"]["message"] and "predictions" not in results[i] for i in (1, 3, 4))


def test_a_per_image_error_has_the_one_error_shape_and_keeps_message_for_old_clients(v2):
    images = [
        {"image": base64.b64encode(b"not an image").decode(), "filename": "notes.txt"},
        {"image": "@@@", "filename": "bad.b64"},
    ]
    response = v2.post(URL, {"images": images}, format="json")
    assert response.status_code == 200, response.content
    errors = [result["error"] for result in response.json()["results"]]
    assert [set(error) for error in errors] == [{"detail", "code", "message"}] * 2
    assert [error["code"] for error in errors] == ["invalid_image", "invalid_base64"]
    assert all(error["detail"] and error["message"] == error["detail"] for error in errors)
    assert errors[1]["detail"] == "Not valid base64."  # the image's own message, not prefixed by a field name


def test_multipart_files_and_top_k_form_field(v2):
    uploads = []
    for name, data in [("a.jpg", picture("goldfish")), ("b.png", picture("jellyfish", fmt="PNG")), ("c.bin", b"")]:
        upload = io.BytesIO(data)
        upload.name = name
        uploads.append(upload)
    response = v2.post(URL, {"files": uploads, "top_k": "2"}, format="multipart")
    assert response.status_code == 200, response.content
    results = response.json()["results"]
    assert [r["filename"] for r in results] == ["a.jpg", "b.png", "c.bin"]
    assert [p["label"] for p in results[0]["predictions"]][:1] == ["goldfish"] and len(results[0]["predictions"]) == 2
    assert results[1]["predictions"][0]["label"] == "jellyfish"
    assert results[2]["error"]["code"] == "empty_image"


def test_top_k_defaults_to_the_v1_count(v2):
    results = v2.post(URL, {"images": [item("goldfish")]}, format="json").json()["results"]
    assert len(results[0]["predictions"]) == settings.CLASSIFIER_TOP_K


@pytest.mark.parametrize("top_k", [1, settings.CLASSIFIER_MAX_TOP_K])
def test_top_k_bounds_are_accepted(v2, top_k):
    results = v2.post(URL, {"images": [item("goldfish")], "top_k": top_k}, format="json").json()["results"]
    assert len(results[0]["predictions"]) == top_k


@pytest.mark.parametrize("top_k", [0, -1, settings.CLASSIFIER_MAX_TOP_K + 1, "many"])
@pytest.mark.usefixtures("database_windows")
def test_top_k_out_of_bounds_is_400_and_costs_one_unit(v2, top_k):
    response = v2.post(URL, {"images": [item("goldfish")], "top_k": top_k}, format="json")
    assert response.status_code == 400 and response.json()["detail"].startswith("top_k")
    assert charged() == [1]


@pytest.mark.parametrize(
    "payload,code",
    [
        ({}, "no_images"),
        ({"images": []}, "no_images"),
        ({"images": [{"filename": "no image field"}]}, "required"),
        ({"images": "not a list"}, "not_a_list"),
        ({"images": [{"image": "x"}], "files": []}, "no_images"),
    ],
)
@pytest.mark.usefixtures("database_windows")
def test_bad_envelope_is_400_for_the_whole_request_and_costs_one_unit(v2, payload, code):
    response = v2.post(URL, payload, format="json")
    assert response.status_code == 400 and response.json()["code"] == code
    assert charged() == [1]


MALFORMED = {
    "too_many_images": lambda: ({"images": [item("goldfish")] * (settings.CLASSIFIER_MAX_BATCH_IMAGES + 1)}, "json"),
    "no_images": lambda: ({}, "json"),
    "unknown_model": lambda: ({"images": [item("goldfish")], "model": "vgg_nonexistent"}, "json"),
    "parse_error": lambda: ('{"images": [', "application/json"),
    "unsupported_media_type": lambda: ("images", "text/plain"),
}


@pytest.mark.parametrize("code", MALFORMED)
@pytest.mark.usefixtures("database_windows")
def test_malformed_requests_cost_one_unit_each_until_the_key_is_throttled(client, make_key, code):
    limit, extra = 3, 2
    v2 = keyed_client(client, make_key, rate_limit=limit)
    body, kind = MALFORMED[code]()
    send = (
        (lambda: v2.post(URL, body, format="json"))
        if kind == "json"
        else (lambda: v2.post(URL, body, content_type=kind))
    )
    answers = [send() for _ in range(limit + extra)]
    assert [answer.status_code for answer in answers[:limit]] == [answers[0].status_code] * limit
    assert answers[0].status_code in (400, 415)
    assert {"detail", "code"} <= set(answers[0].json()) and answers[0].json()["code"] == code
    assert [answer.status_code for answer in answers[limit:]] == [429] * extra
    assert answers[-1].json()["code"] == "throttled" and int(answers[-1]["Retry-After"]) >= 1
    assert charged() == [1] * limit  # the refused ones spent nothing
    assert v2.post(URL, {"images": [item("goldfish")]}, format="json").status_code == 429


@pytest.mark.usefixtures("database_windows")
def test_a_well_formed_batch_over_the_quota_spends_nothing(client, make_key):
    v2 = keyed_client(client, make_key, rate_limit=4)
    assert v2.post(URL, {"images": [item("goldfish")] * 3}, format="json").status_code == 200
    assert v2.post(URL, {"images": [item("goldfish")] * 2}, format="json").status_code == 429
    assert charged() == [3]


def test_more_images_than_the_batch_limit_is_400(v2):
    images = [item("goldfish")] * (settings.CLASSIFIER_MAX_BATCH_IMAGES + 1)
    response = v2.post(URL, {"images": images}, format="json")
    assert response.status_code == 400 and response.json()["code"] == "too_many_images"


def test_a_full_batch_is_accepted(v2):
    images = [item("tree frog")] * settings.CLASSIFIER_MAX_BATCH_IMAGES
    response = v2.post(URL, {"images": images, "top_k": 1}, format="json")
    assert response.status_code == 200
    assert len(response.json()["results"]) == settings.CLASSIFIER_MAX_BATCH_IMAGES


def test_model_picks_one_of_the_loaded_models(v2, second_model):
    response = v2.post(URL, {"images": [item("goldfish")], "model": SECOND_MODEL, "top_k": 2}, format="json")
    assert response.status_code == 200, response.content
    assert response.json()["model"] == SECOND_MODEL
    assert len(response.json()["results"][0]["predictions"]) == 2
    assert v2.post(URL, {"images": [item("goldfish")]}, format="json").json()["model"] == "resnet18"


def test_v1_always_uses_the_first_model(v2, second_model):
    response = v2.post("/api/v1/classify", {"image": b64(picture("goldfish"))}, format="json")
    assert response.json()["model"] == "resnet18"


def test_unknown_model_is_400_naming_the_loaded_ones(v2):
    response = v2.post(URL, {"images": [item("goldfish")], "model": "vgg_nonexistent"}, format="json")
    assert response.status_code == 400 and response.json()["code"] == "unknown_model"
    assert "resnet18" in response.json()["detail"]


def test_a_model_still_loading_is_503_and_spends_no_quota(v2, install_slot):
    install_slot(Slot(source=SECOND_SOURCE))
    response = v2.post(URL, {"images": [item("goldfish")], "model": SECOND_MODEL}, format="json")
    assert response.status_code == 503 and response.json()["code"] == "model_unavailable"
    assert not RateLimitEvent.objects.exists()


def test_a_batch_costs_one_unit_per_image(client, make_key):
    v2 = keyed_client(client, make_key, rate_limit=10)
    response = v2.post(URL, {"images": [item("goldfish")] * 4}, format="json")
    assert response.status_code == 200
    assert response["X-RateLimit-Limit"] == "10" and response["X-RateLimit-Remaining"] == "6"
    v1 = v2.post("/api/v1/classify", {"image": b64(picture("goldfish"))}, format="json")
    assert v1["X-RateLimit-Remaining"] == "5"
    assert RequestLog.objects.get(endpoint=URL).images == 4


def test_a_batch_larger_than_the_remaining_quota_is_refused_whole_until_it_fits(client, make_key, clock):
    v2 = keyed_client(client, make_key, rate_limit=4, rate_window_seconds=60)
    assert v2.post(URL, {"images": [item("goldfish")] * 2}, format="json").status_code == 200
    clock[0] += 10
    assert v2.post(URL, {"images": [item("goldfish")] * 2}, format="json").status_code == 200
    clock[0] += 10
    refused = v2.post(URL, {"images": [item("goldfish")] * 3}, format="json")
    assert refused.status_code == 429 and refused.json()["code"] == "throttled"
    # Three units fit only once both earlier batches have left the window (at +60 and +70).
    assert refused["Retry-After"] == "50"
    assert refused["X-RateLimit-Remaining"] == "0"
    clock[0] += 49
    assert v2.post(URL, {"images": [item("goldfish")] * 3}, format="json").status_code == 429
    clock[0] += 1
    assert v2.post(URL, {"images": [item("goldfish")] * 3}, format="json").status_code == 200


@pytest.mark.usefixtures("database_windows")
def test_a_batch_larger_than_the_whole_limit_is_400_not_429_and_costs_one_unit(client, make_key):
    v2 = keyed_client(client, make_key, rate_limit=3)
    response = v2.post(URL, {"images": [item("goldfish")] * 4}, format="json")
    assert response.status_code == 400 and response.json()["code"] == "batch_exceeds_limit"
    assert "3" in response.json()["detail"] and "Retry-After" not in response
    assert charged() == [1]
    answers = [v2.post(URL, {"images": [item("goldfish")] * 4}, format="json").status_code for _ in range(3)]
    assert answers == [400, 400, 429] and charged() == [1, 1, 1]


def test_request_id_is_echoed_and_logged(v2):
    response = v2.post(URL, {"images": [item("goldfish")]}, format="json", HTTP_X_REQUEST_ID="client-42.a")
    assert response["X-Request-ID"] == "client-42.a" and response.json()["id"] == "client-42.a"
    assert RequestLog.objects.get(endpoint=URL).request_id == "client-42.a"


@pytest.mark.parametrize("sent", [None, "x" * 65, "has spaces", "<script>"])
def test_request_id_is_generated_when_missing_or_unusable(v2, sent):
    extra = {"HTTP_X_REQUEST_ID": sent} if sent else {}
    response = v2.post(URL, {"images": [item("goldfish")]}, format="json", **extra)
    generated = response["X-Request-ID"]
    assert generated and generated != sent and len(generated) <= 64
    assert RequestLog.objects.get(endpoint=URL).request_id == generated


@pytest.mark.parametrize("path", ["/api/v2/classify", "/api/v2/models", "/api/v2/usage", "/api/v2/nowhere"])
def test_every_v2_answer_carries_a_request_id_even_errors(client, path):
    assert client.get(path).has_header("X-Request-ID")


def test_v1_answers_are_unchanged_and_carry_no_request_id(v2):
    response = v2.post("/api/v1/classify", {"image": b64(picture("goldfish"))}, format="json")
    assert set(response.json()) == {"model", "model_version", "predictions"} and not response.has_header("X-Request-ID")


def test_v2_classify_requires_a_key(client):
    response = client.post(URL, {"images": [item("goldfish")]}, format="json")
    assert response.status_code == 401 and response.has_header("WWW-Authenticate")


def test_a_batchs_images_share_forward_passes(v2, loaded_model):
    stats = loaded_model.slot().batcher.stats
    before_batches, before_images = stats.batches, stats.images
    count = 2 * settings.CLASSIFIER_MAX_BATCH_SIZE
    response = v2.post(URL, {"images": [item("goldfish")] * count}, format="json")
    assert response.status_code == 200
    assert stats.images - before_images == count
    assert stats.batches - before_batches == 2  # whole batches, not one forward pass per image
