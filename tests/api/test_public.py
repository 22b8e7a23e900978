import pytest
from django.db import connection

from classifier.runtime.registry import Loading
from classifier.serving import process_runtime

pytestmark = pytest.mark.django_db


@pytest.mark.usefixtures("loaded_model")
def test_model_info_is_public_and_describes_the_loaded_model(client):
    body = client.get("/api/v1/model/info").json()
    assert body["name"] == "resnet18" and body["status"] == "loaded"
    assert body["num_labels"] == 1000 and body["input_size"] == 224
    assert body["weights"].startswith("file:") and "/" not in body["weights"]


def test_healthz_is_always_200(client):
    assert client.get("/healthz").status_code == 200


@pytest.mark.usefixtures("loaded_model")
def test_readyz_is_200_when_model_and_database_answer(client):
    assert client.get("/readyz").json() == {"status": "ready"}


@pytest.mark.usefixtures("loaded_model")
def test_readyz_is_503_while_loading(client, monkeypatch):
    monkeypatch.setattr(process_runtime().slot(), "state", Loading())
    response = client.get("/readyz")
    assert response.status_code == 503 and response.json()["code"] == "model_unavailable"


@pytest.mark.usefixtures("loaded_model")
def test_readyz_is_503_when_the_database_fails(client, monkeypatch):
    def broken(*args, **kwargs):
        from django.db import OperationalError

        raise OperationalError("connection refused")

    monkeypatch.setattr(connection, "ensure_connection", broken)
    response = client.get("/readyz")
    assert response.status_code == 503 and response.json()["code"] == "database_unavailable"


def test_openapi_schema_documents_endpoints_and_both_auth_schemes(client):
    schema = client.get("/api/schema/?format=json").json()
    assert {"/api/v1/classify", "/api/v1/usage", "/api/v1/model/info"} <= set(schema["paths"])
    schemes = schema["components"]["securitySchemes"]
    assert schemes["BearerAuth"]["scheme"] == "bearer"
    assert schemes["ApiKeyAuth"] == {
        "type": "apiKey",
        "in": "header",
        "name": "X-API-Key",
        "description": "X-API-Key: <key>",
    }
    classify = schema["paths"]["/api/v1/classify"]["post"]
    assert {"application/json", "multipart/form-data"} <= set(classify["requestBody"]["content"])
    assert {"200", "400", "401", "413", "415", "429", "503"} <= set(classify["responses"])
    assert classify["security"] == [{"BearerAuth": []}, {"ApiKeyAuth": []}]  # either one, not both


@pytest.mark.parametrize("url", ["/api/docs/", "/api/redoc/"])
def test_docs_pages_load_assets_locally(client, url):
    html = client.get(url).content.decode()
    assert "/static/drf_spectacular_sidecar/" in html
    assert "cdn." not in html and "unpkg" not in html


def test_landing_page_links_docs_and_admin(client):
    html = client.get("/").content.decode()
    assert "/api/docs/" in html and "/admin/" in html and "curl" in html


@pytest.mark.django_db
def test_operations_do_not_show_a_base_class_docstring_as_their_description(client):
    schema = client.get("/api/schema/?format=json").json()
    descriptions = [op.get("description", "") for path in schema["paths"].values() for op in path.values()]
    assert descriptions and not any("Base of the API views" in text for text in descriptions)


@pytest.mark.usefixtures("loaded_model")
def test_readyz_is_503_when_redis_the_window_store_is_down(client, monkeypatch):
    from accounts.windows import RedisWindowStore
    from classifier.api.throttling import SlidingWindowThrottle
    from tests.services import unreachable_redis_url

    monkeypatch.setattr(SlidingWindowThrottle, "store", RedisWindowStore(unreachable_redis_url()))
    response = client.get("/readyz")
    assert response.status_code == 503 and response.json()["code"] == "rate_limiter_unavailable"
    assert response.headers["Retry-After"] == "1"


@pytest.mark.usefixtures("loaded_model")
def test_readyz_is_200_when_redis_the_window_store_answers(client, monkeypatch):
    from accounts.windows import RedisWindowStore
    from classifier.api.throttling import SlidingWindowThrottle
    from tests.services import require_redis

    monkeypatch.setattr(SlidingWindowThrottle, "store", RedisWindowStore(require_redis()))
    assert client.get("/readyz").json() == {"status": "ready"}


@pytest.mark.usefixtures("loaded_model")
def test_readyz_while_loading_logs_no_error(client, monkeypatch, caplog):
    monkeypatch.setattr(process_runtime().slot(), "state", Loading())
    with caplog.at_level("INFO"):
        assert client.get("/readyz").status_code == 503
    assert [record for record in caplog.records if record.levelname == "ERROR"] == []
