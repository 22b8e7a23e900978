"""The browser-facing pages through Django's test client: landing, try-it, staff dashboard, docs, favicon."""

import datetime as dt
import json
import re
from pathlib import Path

import pytest
from django.contrib.auth.models import Permission, User
from django.test import Client
from django.utils import timezone

from accounts.models import RequestLog
from classifier.runtime.registry import Loading
from classifier.serving import process_runtime

pytestmark = pytest.mark.django_db
DASHBOARD_PERMISSIONS = ("accounts.view_requestlog", "accounts.view_apikey")
EXTERNAL_URL = re.compile(r"""(?:src|href)=["']?(?:https?:)?//""")


def staff_user(name="staff", *, permissions=DASHBOARD_PERMISSIONS):
    """A staff user (not a superuser) holding ``permissions`` ("app_label.codename")."""
    user = User.objects.create_user(name, password="pw-for-tests-only", is_staff=True)
    for permission in permissions:
        app_label, codename = permission.split(".")
        user.user_permissions.add(Permission.objects.get(content_type__app_label=app_label, codename=codename))
    return user


def logged_in(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


@pytest.fixture
def staff_client():
    """Staff allowed to read the dashboard: the two view permissions, nothing else."""
    return logged_in(staff_user())


def json_script(html: str, element_id: str):
    match = re.search(rf'<script id="{element_id}" type="application/json">(.*?)</script>', html, re.S)
    assert match, f"no json_script #{element_id}"
    return json.loads(match.group(1))


@pytest.mark.usefixtures("loaded_model")
def test_landing_page_shows_models_readiness_links_and_a_curl_example(client):
    html = client.get("/", HTTP_HOST="localhost:8123").content.decode()

    assert 'id="server-status">ready<' in html
    assert re.search(r'data-model="resnet18">.*?model-status">loaded<', html, re.S)
    assert re.search(r'data-model="resnet18">.*?model-engine">onnxruntime fp32, 1000 labels<', html, re.S)
    for link in ('href="/try/"', 'href="/api/docs/"', 'href="/api/redoc/"', 'href="/admin/"'):
        assert link in html
    assert "curl -s http://localhost:8123/api/v2/classify" in html
    assert not EXTERNAL_URL.search(html)


@pytest.mark.usefixtures("loaded_model")
def test_landing_page_says_not_ready_while_the_model_loads(client, monkeypatch):
    monkeypatch.setattr(process_runtime().slot(), "state", Loading())
    html = client.get("/").content.decode()
    assert 'id="server-status">not ready<' in html and 'model-status">loading<' in html


@pytest.mark.usefixtures("loaded_model")
def test_try_page_loads_its_script_and_calls_the_public_v2_api(client, settings):
    html = client.get("/try/").content.decode()

    assert '<script src="/static/classifier/try.js" defer>' in html
    assert json_script(html, "try-config") == {
        "classify_url": "/api/v2/classify",
        "max_batch_images": settings.CLASSIFIER_MAX_BATCH_IMAGES,
    }
    assert f'max="{settings.CLASSIFIER_MAX_TOP_K}"' in html and '<option value="resnet18" selected>' in html
    assert not EXTERNAL_URL.search(html)


def test_try_script_keeps_the_key_in_session_storage_only():
    script = (Path(__file__).parents[2] / "classifier/static/classifier/try.js").read_text()
    assert "sessionStorage" in script and "localStorage" not in script and "document.cookie" not in script


@pytest.mark.parametrize("user", [None, "plain"])
def test_usage_dashboard_sends_anyone_but_staff_to_the_admin_login(user):
    client = Client()
    if user:
        client.force_login(User.objects.create_user(user, password="pw-for-tests-only"))
    response = client.get("/staff/usage/")
    assert response.status_code == 302 and response["Location"].startswith("/admin/login/?next=/staff/usage/")


def test_admin_index_links_to_the_usage_dashboard(staff_client):
    html = staff_client.get("/admin/").content.decode()
    assert 'id="usage-dashboard-link"' in html and 'href="/staff/usage/"' in html


@pytest.mark.parametrize("permissions", [(), ("accounts.view_requestlog",), ("accounts.view_apikey",)])
def test_usage_dashboard_is_403_for_staff_without_both_view_permissions(permissions):
    client = logged_in(staff_user(permissions=permissions))
    response = client.get("/staff/usage/")
    assert response.status_code == 403
    assert (
        b"staff-usage" not in response.content
        and 'id="usage-dashboard-link"' not in client.get("/admin/").content.decode()
    )


def test_usage_dashboard_answers_staff_with_both_view_permissions_and_superusers(staff_client):
    superuser = logged_in(User.objects.create_superuser("root", "root@example.com", "pw-for-tests-only"))
    assert staff_client.get("/staff/usage/").status_code == 200
    assert superuser.get("/staff/usage/").status_code == 200


def test_usage_dashboard_renders_chart_data_tiles_and_top_keys(staff_client, make_key):
    alpha, _ = make_key("alpha")
    now = timezone.now()
    for status, ms in [(200, 10.0), (200, 30.0), (429, 2.0)]:
        RequestLog.objects.create(
            api_key=alpha,
            endpoint="/api/v2/classify",
            method="POST",
            status_code=status,
            response_time_ms=ms,
            created_at=now - dt.timedelta(minutes=5),
        )
    RequestLog.objects.create(
        endpoint="/api/v2/classify",
        method="POST",
        status_code=401,
        response_time_ms=1.0,
        created_at=now - dt.timedelta(days=3),
    )  # outside the default 24 hours

    response = staff_client.get("/staff/usage/")

    html = response.content.decode()
    assert response.status_code == 200
    data = json_script(html, "usage-data")
    assert data["bucket"] == "hour" and len(data["starts"]) in (24, 25)
    assert [(s["label"], sum(s["counts"])) for s in data["series"]] == [("alpha", 3)]
    assert data["status_mix"] == {"200": 2, "429": 1}
    assert data["latency_ms"] == {"p50": 10.0, "p95": 30.0, "p99": 30.0}
    assert 'id="total-requests">3<' in html and 'id="throttled-requests">1<' in html
    assert re.search(r'<table id="top-keys">.*?alpha</a>', html, re.S)
    assert '<script src="/static/classifier/vendor/chartjs/chart.umd.js" defer>' in html
    assert not EXTERNAL_URL.search(html)


def test_usage_dashboard_filters_by_key_and_period(staff_client, make_key):
    alpha, _ = make_key("alpha")
    beta, _ = make_key("beta")
    now = timezone.now()
    for api_key, age in [(alpha, dt.timedelta(hours=1)), (beta, dt.timedelta(hours=2)), (beta, dt.timedelta(days=3))]:
        RequestLog.objects.create(
            api_key=api_key,
            endpoint="/api/v1/classify",
            method="POST",
            status_code=200,
            response_time_ms=5.0,
            created_at=now - age,
        )

    week_of_beta = json_script(
        staff_client.get(f"/staff/usage/?key={beta.pk}&period=7d").content.decode(), "usage-data"
    )
    day_of_all = json_script(staff_client.get("/staff/usage/?period=24h").content.decode(), "usage-data")

    assert week_of_beta["bucket"] == "day" and len(week_of_beta["starts"]) == 8
    assert [(s["label"], sum(s["counts"])) for s in week_of_beta["series"]] == [("beta", 2)]
    assert sorted((s["label"], sum(s["counts"])) for s in day_of_all["series"]) == [("alpha", 1), ("beta", 1)]


def test_an_invalid_dashboard_filter_says_so_and_shows_the_default(staff_client):
    response = staff_client.get("/staff/usage/?key=999999&period=forever")
    html = response.content.decode()
    assert response.status_code == 200 and 'class="errornote"' in html
    assert json_script(html, "usage-data")["bucket"] == "hour"


def test_openapi_security_accepts_either_header_not_both(client):
    schema = client.get("/api/schema/?format=json").json()
    for path, method in [("/api/v1/classify", "post"), ("/api/v2/classify", "post"), ("/api/v2/usage", "get")]:
        assert schema["paths"][path][method]["security"] == [{"BearerAuth": []}, {"ApiKeyAuth": []}]


@pytest.mark.parametrize("url", ["/api/docs/", "/api/redoc/"])
def test_docs_pages_reference_nothing_outside_this_server(client, url):
    html = client.get(url).content.decode()
    assert "/static/drf_spectacular_sidecar/" in html
    assert not EXTERNAL_URL.search(html) and "fonts.googleapis" not in html


def test_favicon_is_served_so_browsers_log_no_404(client):
    response = client.get("/favicon.ico")
    assert response.status_code == 200 and response["Content-Type"] in ("image/x-icon", "image/vnd.microsoft.icon")
    assert b"".join(response.streaming_content if response.streaming else [response.content])[:4] == b"\x00\x00\x01\x00"


def test_usage_dashboard_shows_the_requests_without_a_key(staff_client, client):
    for _ in range(3):
        client.post("/api/v1/classify", {}, format="json")
    client.get("/api/v1/nowhere")

    html = staff_client.get("/staff/usage/").content.decode()

    section = re.search(r'<section class="module" id="anonymous-usage">.*?</section>', html, re.S).group(0)
    assert "Requests without a key: 4<" in section
    assert re.search(r"<td>401</td><td>3</td>", section) and re.search(r"<td>404</td><td>1</td>", section)
    assert re.search(r"<code>/api/v1/classify</code></td><td>3</td>", section)
    assert re.search(r"<code>127\.0\.0\.1</code></td><td>4</td>", section)
    assert not RequestLog.objects.exists()


def test_swagger_ui_does_not_persist_pasted_keys_in_local_storage(client):
    html = client.get("/api/docs/").content.decode()
    script_url = re.search(r'<script src="([^"]*script[^"]*)"', html)
    script = client.get(script_url.group(1).replace("&amp;", "&")).content.decode() if script_url else html
    assert '"persistAuthorization": false' in script
