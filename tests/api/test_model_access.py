"""Per-key model access: a key limited to some models is refused the others with 403, before any quota."""

import base64
import dataclasses
from types import SimpleNamespace

import pytest

from accounts.models import ApiKey, RateLimitEvent, RequestLog
from classifier.api.exceptions import ModelNotAllowed
from classifier.api.permissions import ModelIsAllowed
from classifier.runtime.registry import Ready, Slot, Unavailable
from classifier.runtime.sources import ModelSource
from classifier.serving import process_runtime
from tests.model_weights import picture

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("loaded_model", "database_windows")]
V1, V2, MODELS = "/api/v1/classify", "/api/v2/classify", "/api/v2/models"
SECOND = "second"
SECOND_VERSION = "3"


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def batch(model: str | None = None, images: int = 1) -> dict:
    body = {"images": [{"image": b64(picture("goldfish"))}] * images}
    return {**body, "model": model} if model else body


@pytest.fixture
def second_model(install_slot, loaded_model):
    """A second loaded model, version 3: the default's real engine and batcher under another name."""
    default = process_runtime().slot()
    model = dataclasses.replace(default.model, name=SECOND, version=SECOND_VERSION)
    source = ModelSource(name=SECOND, architecture="resnet18", weights="random")
    return install_slot(Slot(source=source, state=Ready(model, default.batcher)))


@pytest.fixture
def keyed(client, make_key):
    def keyed(allowed_models, rate_limit=10):
        api_key, raw = make_key(rate_limit=rate_limit, rate_window_seconds=60, allowed_models=allowed_models)
        client.credentials(HTTP_AUTHORIZATION=f"Bearer {raw}")
        return client

    return keyed


def assert_not_allowed(response, model: str) -> None:
    assert response.status_code == 403, response.content
    assert response.json()["code"] == "model_not_allowed"
    assert repr(model) in response.json()["detail"]
    assert "X-RateLimit-Remaining" not in response


@pytest.mark.usefixtures("second_model")
def test_a_model_the_key_may_not_use_is_403_and_spends_no_quota(keyed):
    client = keyed([SECOND])
    refused = client.post(V2, batch("resnet18"), format="json")
    assert_not_allowed(refused, "resnet18")
    assert refused.json()["detail"] == f"This API key may not use model 'resnet18'; it may use {SECOND}."
    assert_not_allowed(client.post(V2, batch(), format="json"), "resnet18")  # no model: the default
    assert not RateLimitEvent.objects.exists()
    allowed = client.post(V2, batch(SECOND, images=2), format="json")
    assert allowed.status_code == 200 and allowed.json()["model"] == SECOND
    assert allowed["X-RateLimit-Remaining"] == "8"
    assert_not_allowed(client.post(V2, batch("resnet18", images=4), format="json"), "resnet18")
    assert client.post(V2, batch(SECOND), format="json")["X-RateLimit-Remaining"] == "7"
    assert list(RateLimitEvent.objects.order_by("pk").values_list("cost", flat=True)) == [2, 1]


@pytest.mark.usefixtures("second_model")
def test_v1_is_refused_when_the_key_may_not_use_the_default_model(keyed, make_key, client):
    limited = keyed([SECOND])
    assert_not_allowed(limited.post(V1, {"image": b64(picture("goldfish"))}, format="json"), "resnet18")
    assert not RateLimitEvent.objects.exists()
    _, raw = make_key(name="default-only", rate_limit=10, allowed_models=["resnet18"])
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {raw}")
    response = client.post(V1, {"image": b64(picture("goldfish"))}, format="json")
    assert response.status_code == 200 and response["X-RateLimit-Remaining"] == "9"


@pytest.mark.usefixtures("second_model")
def test_an_empty_list_allows_every_model(keyed):
    client = keyed([])
    assert client.post(V2, batch("resnet18"), format="json").status_code == 200
    assert client.post(V2, batch(SECOND), format="json").status_code == 200
    assert client.post(V1, {"image": b64(picture("goldfish"))}, format="json").status_code == 200


def test_access_is_refused_before_readiness_is_told(keyed, install_slot):
    install_slot(Slot(source=ModelSource(name="loading", architecture="resnet18", weights="random")))
    client = keyed(["resnet18"])
    assert_not_allowed(client.post(V2, batch("loading"), format="json"), "loading")


@pytest.mark.usefixtures("second_model")
def test_a_malformed_request_is_charged_and_answered_400_not_403(keyed):
    client = keyed([SECOND])
    response = client.post(V2, {"images": [], "model": SECOND}, format="json")
    assert response.status_code == 400 and response.json()["code"] == "no_images"
    response = client.post(V2, {"images": [{"image": b64(picture("goldfish"))}], "top_k": 0}, format="json")
    assert response.status_code == 400 and response.json()["code"] == "invalid_top_k"
    assert list(RateLimitEvent.objects.values_list("cost", flat=True)) == [1, 1]


@pytest.mark.parametrize("asked,allowed", [("flowers@2", True), ("resnet18@2", False), ("flowers", True)])
def test_name_at_version_is_judged_by_the_name(asked, allowed):
    request = SimpleNamespace(auth=ApiKey(allowed_models=["flowers"]))  # unsaved: no plan, its own list
    view = SimpleNamespace(requested_model=asked, malformed=None)
    if allowed:
        assert ModelIsAllowed().has_permission(request, view)
    else:
        with pytest.raises(ModelNotAllowed):
            ModelIsAllowed().has_permission(request, view)


@pytest.mark.usefixtures("second_model")
def test_models_lists_only_what_the_key_may_use(keyed, client):
    assert [m["name"] for m in client.get(MODELS).json()["models"]] == ["resnet18", SECOND]  # no key: all
    limited = keyed([SECOND])
    assert [m["name"] for m in limited.get(MODELS).json()["models"]] == [SECOND]
    client.credentials(HTTP_AUTHORIZATION="Bearer ais_00000000.wrong")
    assert client.get(MODELS).status_code == 401


@pytest.mark.usefixtures("second_model")
def test_every_key_without_a_list_sees_every_model(keyed):
    assert [m["name"] for m in keyed([]).get(MODELS).json()["models"]] == ["resnet18", SECOND]


@pytest.mark.usefixtures("second_model")
def test_each_classification_logs_the_model_and_version_that_answered(keyed):
    client = keyed([], rate_limit=3)  # every model: an unknown name is 400 (a limited key gets 403, see below)
    client.post(V1, {"image": b64(picture("goldfish"))}, format="json")
    client.post(V2, batch(SECOND), format="json")
    client.post(V2, batch("vgg_nonexistent"), format="json")  # 400: no model answered
    client.post(V2, batch(SECOND), format="json")  # 429
    client.get(MODELS)
    rows = list(RequestLog.objects.order_by("id").values_list("endpoint", "status_code", "model_name", "model_version"))
    assert rows == [
        (V1, 200, "resnet18", "settings"),  # a CLASSIFIER_MODELS model answers as version "settings"
        (V2, 200, SECOND, SECOND_VERSION),
        (V2, 400, "", ""),
        (V2, 429, "", ""),
        (MODELS, 200, "", ""),
    ]


@pytest.mark.usefixtures("second_model")
def test_a_refused_model_is_logged_403_with_no_model(keyed):
    keyed([SECOND]).post(V2, batch("resnet18"), format="json")
    assert list(RequestLog.objects.values_list("status_code", "model_name", "images")) == [(403, "", 0)]


def test_the_schema_documents_the_403_on_both_classify_endpoints(client):
    import yaml  # noqa: PLC0415 - drf-spectacular depends on PyYAML

    schema = yaml.safe_load(client.get("/api/schema/").content)
    for path in (V1, V2):
        response = schema["paths"][path]["post"]["responses"]["403"]
        assert "model_not_allowed" in response["description"]
        (example,) = response["content"]["application/json"]["examples"].values()
        assert example["value"]["code"] == "model_not_allowed"
    usage = schema["components"]["schemas"]["UsageReportOutput"]
    assert "by_model" in usage["properties"] and "by_model" in usage["required"]


@pytest.mark.usefixtures("second_model")
def test_a_model_error_names_only_the_models_the_key_may_use(keyed, make_key):
    """A limited key cannot tell a model it may not use from one that does not exist: both are 403, naming only
    its own models; a key that may use every model hears every name in its 400."""
    client = keyed(["resnet18"])
    existing, missing = client.post(V2, batch(SECOND), format="json"), client.post(V2, batch("nothing"), format="json")
    assert_not_allowed(existing, SECOND)
    assert_not_allowed(missing, "nothing")
    assert existing.json()["detail"].replace(SECOND, "X") == missing.json()["detail"].replace("nothing", "X")
    assert SECOND not in missing.json()["detail"]

    _, raw = make_key(name="every-model")
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {raw}")
    unknown = client.post(V2, batch("nothing"), format="json")
    assert unknown.status_code == 400 and unknown.json()["code"] == "unknown_model"
    assert "resnet18" in unknown.json()["detail"] and SECOND in unknown.json()["detail"]


def test_every_version_is_listed_only_to_a_key_or_staff(keyed, client, install_slot):
    from django.contrib.auth.models import Permission, User

    from tests.classifier.factories import version_row

    version_row(name="secret", version="1", status="staged")
    version_row(name="resnet18", version="2", status="retired")
    anonymous = client.get(f"{MODELS}?all=true")
    assert anonymous.status_code == 401 and anonymous.json()["code"] == "not_authenticated"
    assert client.get(MODELS).status_code == 200  # the served models stay public

    staff = User.objects.create_user("ops", is_staff=True)
    client.force_login(staff)
    assert client.get(f"{MODELS}?all=true").status_code == 401  # staff without the permission to see versions
    staff.user_permissions.add(Permission.objects.get(codename="view_modelversion"))
    client.force_login(User.objects.get(pk=staff.pk))
    assert {v["name"] for v in client.get(f"{MODELS}?all=true").json()["versions"]} == {"secret", "resnet18"}
    client.logout()

    listed = keyed(["resnet18"]).get(f"{MODELS}?all=true")
    assert [(v["name"], v["version"]) for v in listed.json()["versions"]] == [("resnet18", "2")]


@pytest.mark.usefixtures("second_model")
def test_readyz_for_a_named_model_says_only_ready_or_not(client, install_slot):
    failed = ModelSource(name="failed", architecture="resnet18", weights="random")
    install_slot(Slot(source=failed, state=Unavailable("weights.pt: UnpicklingError at /srv/models")))
    assert client.get("/readyz", {"model": SECOND}).status_code == 200
    not_ready, missing = client.get("/readyz", {"model": "failed"}), client.get("/readyz", {"model": "nothing"})
    assert not_ready.status_code == missing.status_code == 503
    assert not_ready.json() == missing.json() == {"detail": "Not ready.", "code": "model_unavailable"}
