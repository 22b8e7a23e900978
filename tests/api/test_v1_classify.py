import base64
import io
import threading

import pytest
from PIL import Image

from accounts.models import AnonymousRequestCount, RequestLog
from accounts.services import api_key_revoke
from classifier.runtime.registry import Unavailable
from classifier.serving import process_runtime
from tests.model_weights import PICTURES, picture

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("loaded_model")]
URL = "/api/v1/classify"


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


@pytest.mark.parametrize("label", PICTURES)
@pytest.mark.parametrize("fmt", ["JPEG", "PNG", "WEBP", "GIF", "BMP", "TIFF"])
def test_json_classification_returns_the_known_label(auth_client, label, fmt):
    response = auth_client.post(URL, {"image": b64(picture(label, fmt=fmt)), "filename": "x"}, format="json")
    assert response.status_code == 200, response.content
    body = response.json()
    assert body["model"] == "resnet18"
    assert body["predictions"][0]["label"] == label
    assert len(body["predictions"]) == 5


def test_an_idle_servers_image_runs_in_its_request_thread(auth_client, monkeypatch):
    batcher = process_runtime().get().batcher
    real, passes = batcher._run_batch, []

    def spy(images):
        passes.append((threading.current_thread(), len(images)))
        return real(images)

    monkeypatch.setattr(batcher, "_run_batch", spy)
    label = next(iter(PICTURES))
    answered = auth_client.post(URL, {"image": b64(picture(label)), "filename": "x"}, format="json")
    assert answered.status_code == 200 and answered.json()["predictions"][0]["label"] == label
    assert passes == [(threading.current_thread(), 1)]  # no hand-off to a batch worker and back


def test_predictions_are_sorted_probabilities_rounded_to_four_places(auth_client):
    body = auth_client.post(URL, {"image": b64(picture("goldfish"))}, format="json").json()
    confidences = [p["confidence"] for p in body["predictions"]]
    assert confidences == sorted(confidences, reverse=True)
    assert all(0.0 <= c <= 1.0 and round(c, 4) == c for c in confidences)
    assert confidences[0] > 0.9


def test_data_url_prefix_is_accepted(auth_client):
    image = "data:image/png;base64," + b64(picture("tree frog", fmt="PNG"))
    response = auth_client.post(URL, {"image": image}, format="json")
    assert response.json()["predictions"][0]["label"] == "tree frog"


def test_multipart_upload_in_field_file(auth_client):
    upload = io.BytesIO(picture("jellyfish"))
    upload.name = "jelly.jpg"
    response = auth_client.post(URL, {"file": upload}, format="multipart")
    assert response.status_code == 200
    assert response.json()["predictions"][0]["label"] == "jellyfish"


def test_x_api_key_header_works(client, api_key):
    response = client.post(URL, {"image": b64(picture("goldfish"))}, format="json", HTTP_X_API_KEY=api_key[1])
    assert response.status_code == 200


@pytest.mark.parametrize(
    "payload,code",
    [
        ({"image": "!!!not base64!!!"}, "invalid_base64"),
        ({"image": ""}, "blank"),
        ({"image": b64(b"hello, not an image")}, "invalid_image"),
        ({"image": b64(picture("goldfish", fmt="PNG")[:200])}, "invalid_image"),
        ({}, "missing_image"),
        ({"image": ["a", "list"]}, "invalid"),
        ({"image": {"nested": 1}}, "invalid"),
    ],
)
def test_bad_input_is_400_with_a_code(auth_client, payload, code):
    response = auth_client.post(URL, payload, format="json")
    assert response.status_code == 400
    assert response.json()["code"] == code and response.json()["detail"]


def test_malformed_json_is_400(auth_client):
    response = auth_client.post(URL, data='{"image": ', content_type="application/json")
    assert response.status_code == 400 and response.json()["code"] == "parse_error"


def test_json_that_is_not_an_object_is_400(auth_client):
    response = auth_client.post(URL, data="[1, 2]", content_type="application/json")
    assert response.status_code == 400


def test_multipart_without_file_is_400(auth_client):
    response = auth_client.post(URL, {"other": "x"}, format="multipart")
    assert response.status_code == 400 and response.json()["code"] == "missing_image"


def test_unsupported_content_type_is_415(auth_client):
    response = auth_client.post(URL, data="image", content_type="text/plain")
    assert response.status_code == 415 and response.json()["code"] == "unsupported_media_type"


def test_body_over_the_limit_is_413(auth_client, settings):
    settings.API_MAX_BODY_BYTES = 1000
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 1000
    response = auth_client.post(URL, {"image": b64(picture("goldfish", size=(300, 300), fmt="PNG")) * 5}, format="json")
    assert response.status_code == 413 and response.json()["code"] == "payload_too_large"


def test_json_over_djangos_parse_limit_is_413_not_plain_400(auth_client, settings):
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 1000  # the body limit itself stays large
    response = auth_client.post(URL, {"image": "A" * 4000}, format="json")
    assert response.status_code == 413 and response["Content-Type"] == "application/json"


def test_decompression_bomb_is_413_and_the_next_request_succeeds(auth_client, settings):
    settings.CLASSIFIER_MAX_IMAGE_PIXELS = 1_000_000
    buffer = io.BytesIO()
    Image.new("1", (4000, 4000)).save(buffer, format="PNG")  # 16 MP in a few KB
    response = auth_client.post(URL, {"image": b64(buffer.getvalue())}, format="json")
    assert response.status_code == 413 and response.json()["code"] == "image_too_large"
    assert auth_client.post(URL, {"image": b64(picture("goldfish"))}, format="json").status_code == 200


def test_wrong_method_is_405_and_spends_no_quota(client, make_key):
    api_key, raw = make_key(rate_limit=1)
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {raw}")
    assert client.get(URL).status_code == 405
    assert client.post(URL, {"image": b64(picture("goldfish"))}, format="json").status_code == 200


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"HTTP_AUTHORIZATION": "Bearer ais_00000000.aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"},
        {"HTTP_AUTHORIZATION": "Bearer"},
        {"HTTP_AUTHORIZATION": "Basic dXNlcjpwYXNz"},
        {"HTTP_X_API_KEY": "x" * 100_000},
    ],
    ids=["missing", "unknown", "empty-bearer", "basic", "absurd-length"],
)
def test_missing_or_unknown_key_is_401_with_www_authenticate(client, headers):
    response = client.post(URL, {"image": "x"}, format="json", **headers)
    assert response.status_code == 401
    assert response["WWW-Authenticate"].startswith("Bearer")
    assert response.json()["code"] in ("not_authenticated", "invalid_api_key")


def test_unknown_prefix_and_wrong_secret_get_the_same_answer(client, api_key):
    _, raw = api_key
    wrong_secret = raw[:-3] + ("xyz" if not raw.endswith("xyz") else "abc")
    unknown_prefix = "ais_ffffffff" + raw[12:]
    answers = [client.post(URL, {}, format="json", HTTP_X_API_KEY=k) for k in (wrong_secret, unknown_prefix)]
    assert [a.status_code for a in answers] == [401, 401]
    assert answers[0].json() == answers[1].json()


def test_key_in_query_string_is_ignored(client, api_key):
    response = client.post(f"{URL}?api_key={api_key[1]}&key={api_key[1]}", {"image": "x"}, format="json")
    assert response.status_code == 401


def test_revoked_key_is_rejected_on_next_request(auth_client, api_key):
    assert auth_client.post(URL, {"image": b64(picture("goldfish"))}, format="json").status_code == 200
    api_key_revoke(api_key=api_key[0])
    assert auth_client.post(URL, {"image": b64(picture("goldfish"))}, format="json").status_code == 401


def test_rate_limit_answers_429_with_retry_after_and_quota_headers(client, make_key):
    _, raw = make_key(rate_limit=2, rate_window_seconds=30)
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {raw}")
    body = {"image": b64(picture("goldfish"))}
    first, second, third = (client.post(URL, body, format="json") for _ in range(3))
    assert [first.status_code, second.status_code, third.status_code] == [200, 200, 429]
    assert first["X-RateLimit-Limit"] == "2" and first["X-RateLimit-Remaining"] == "1"
    assert first["RateLimit-Policy"] == '"sliding";q=2;w=30'
    assert first["RateLimit"] == '"sliding";r=1;t=30'
    assert 1 <= int(third["Retry-After"]) <= 30
    assert third["X-RateLimit-Remaining"] == "0"
    assert third.json()["code"] == "throttled"


def test_model_unavailable_is_503_with_reason_and_spends_no_quota(client, make_key, monkeypatch):
    _, raw = make_key(rate_limit=1)
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {raw}")
    monkeypatch.setattr(
        process_runtime().slot(), "state", Unavailable("Could not load the pretrained weights; set CLASSIFIER_WEIGHTS.")
    )
    response = client.post(URL, {"image": b64(picture("goldfish"))}, format="json")
    assert response.status_code == 503
    assert response.json() == {
        "detail": f"Model resnet18: {process_runtime().slot().reason}",
        "code": "model_unavailable",
    }
    monkeypatch.undo()
    assert client.post(URL, {"image": b64(picture("goldfish"))}, format="json").status_code == 200


def test_every_request_is_accounted_for_keyed_ones_as_rows_the_rest_as_counts(client, api_key):
    raw = api_key[1]
    client.post(URL, {"image": b64(picture("goldfish"))}, format="json", HTTP_X_API_KEY=raw)
    client.post(URL, {"image": "!!"}, format="json", HTTP_X_API_KEY=raw)
    client.post(URL, {"image": "x"}, format="json", HTTP_X_API_KEY="nope")
    client.get("/api/v1/nowhere")
    client.delete("/api/nowhere")
    client.delete("/api/nowhere")
    client.get("/api/schema/")
    client.get("/api/v1/nowhere", HTTP_X_API_KEY=raw)  # unknown paths identify no key: counted
    rows = list(RequestLog.objects.order_by("id").values_list("api_key_id", "endpoint", "status_code", "method"))
    key_id = api_key[0].pk
    assert rows == [(key_id, URL, 200, "POST"), (key_id, URL, 400, "POST")]
    assert all(log.response_time_ms > 0 for log in RequestLog.objects.all())
    counted = AnonymousRequestCount.objects.values_list("client", "route", "status_code", "count")
    assert sorted(counted) == [
        ("127.0.0.1", "/api/schema/", 200, 1),  # the test client's address
        ("127.0.0.1", URL, 401, 1),
        ("127.0.0.1", "unmatched", 404, 4),
    ]


def test_logs_store_the_matched_route_never_the_path_sent(auth_client, api_key):
    auth_client.get("/api/v1/usage?since=" + "x" * 300)
    auth_client.get("/api/v1/" + "spam" * 60)
    assert list(RequestLog.objects.values_list("endpoint", flat=True)) == ["/api/v1/usage"]
    assert list(AnonymousRequestCount.objects.values_list("route", flat=True)) == ["unmatched"]


def test_usage_counts_this_keys_classification_requests(client, make_key):
    api_key, raw = make_key(name="usage", rate_limit=100)
    other, other_raw = make_key(name="other", rate_limit=100)
    for payload in [{"image": b64(picture("goldfish"))}] * 3 + [{"image": "!!"}]:
        client.post(URL, payload, format="json", HTTP_X_API_KEY=raw)
    client.post(URL, {"image": b64(picture("goldfish"))}, format="json", HTTP_X_API_KEY=other_raw)
    body = client.get("/api/v1/usage", HTTP_X_API_KEY=raw).json()
    assert body["total_requests"] == 4 and body["successful_requests"] == 3
    assert body["success_rate"] == 75.0
    assert body["avg_response_time_ms"] > 0
    assert body["key"]["name"] == "usage" and body["key"]["prefix"] == api_key.prefix
    assert raw not in str(body)


def test_usage_requires_a_key(client):
    assert client.get("/api/v1/usage").status_code == 401
