"""Documented behaviour when a dependency fails, and recovery without a restart."""

import base64
import datetime as dt
import subprocess
import sys
from io import StringIO

import pytest
from django.core.management import call_command
from django.db import OperationalError
from django.utils import timezone

from accounts.models import AnonymousRequestCount, RequestLog
from accounts.windows import RedisWindowStore
from classifier import services
from classifier.api.throttling import SlidingWindowThrottle, UsageThrottle
from classifier.runtime.budget import PixelBudget
from classifier.serving import process_runtime
from tests.live.server import ROOT
from tests.model_weights import picture
from tests.services import require_redis

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("loaded_model")]
URL = "/api/v1/classify"
BODY = {"image": base64.b64encode(picture("goldfish")).decode()}


def test_unreachable_redis_fails_closed_with_503_then_limits_are_exact_again(client, make_key, monkeypatch):
    _, raw = make_key(rate_limit=2)
    client.credentials(HTTP_X_API_KEY=raw)
    monkeypatch.setattr(SlidingWindowThrottle, "store", RedisWindowStore("redis://127.0.0.1:1/0"))
    down = client.post(URL, BODY, format="json")
    assert down.status_code == 503 and down.json()["code"] == "rate_limiter_unavailable"
    assert down["Retry-After"] == "1"
    monkeypatch.setattr(SlidingWindowThrottle, "store", RedisWindowStore(require_redis()))
    assert [client.post(URL, BODY, format="json").status_code for _ in range(3)] == [200, 200, 429]


def test_usage_report_with_unreachable_redis_is_a_503_not_a_500(client, make_key, monkeypatch):
    _, raw = make_key()
    monkeypatch.setattr(SlidingWindowThrottle, "store", RedisWindowStore("redis://127.0.0.1:1/0"))
    response = client.get("/api/v2/usage", HTTP_X_API_KEY=raw)
    assert response.status_code == 503 and response.json()["code"] == "rate_limiter_unavailable"
    assert response["Retry-After"] == "1"


@pytest.mark.parametrize("url", ["/api/v1/usage", "/api/v2/usage"])
def test_usage_with_its_own_window_store_unreachable_is_a_503_not_a_500(client, make_key, monkeypatch, url):
    _, raw = make_key()
    monkeypatch.setattr(
        UsageThrottle, "store", RedisWindowStore("redis://127.0.0.1:1/0", prefix="aiserver:usage-window:")
    )
    response = client.get(url, HTTP_X_API_KEY=raw)
    assert response.status_code == 503 and response.json()["code"] == "rate_limiter_unavailable"
    assert response["Retry-After"] == "1"


def test_database_failure_is_a_json_503_not_an_html_500(client, api_key, monkeypatch):
    def down(**kwargs):
        raise OperationalError("could not connect to server")

    monkeypatch.setattr("classifier.api.authentication.api_key_authenticate", down)
    response = client.post(URL, BODY, format="json", HTTP_X_API_KEY=api_key[1])
    assert response.status_code == 503
    assert response.json() == {"detail": "The database is unavailable; retry shortly.", "code": "database_unavailable"}
    monkeypatch.undo()
    assert client.post(URL, BODY, format="json", HTTP_X_API_KEY=api_key[1]).status_code == 200


def test_model_failure_fails_only_that_batch_with_a_json_500(auth_client, monkeypatch):
    slot = process_runtime().get()
    model = slot.model
    real = model.run_batch
    calls = []

    def flaky(images):
        calls.append(len(images))
        if len(calls) == 1:
            raise RuntimeError("CUDA out of memory")
        return real(images)

    monkeypatch.setattr(model, "run_batch", flaky)
    monkeypatch.setattr(slot.batcher, "_run_batch", flaky)
    failed = auth_client.post(URL, BODY, format="json")
    assert failed.status_code == 500 and failed.json()["code"] == "inference_failed"
    assert "Traceback" not in failed.content.decode()
    assert auth_client.post(URL, BODY, format="json").status_code == 200
    assert RequestLog.objects.filter(status_code=500).count() == 1


def test_prune_request_logs_deletes_only_old_rows():
    old = RequestLog.objects.create(endpoint=URL, method="POST", status_code=200, response_time_ms=1)
    RequestLog.objects.filter(pk=old.pk).update(created_at=timezone.now() - dt.timedelta(days=40))
    recent = RequestLog.objects.create(endpoint=URL, method="POST", status_code=200, response_time_ms=1)
    now = timezone.now().replace(second=0, microsecond=0)
    for minute in (now - dt.timedelta(days=40), now - dt.timedelta(days=31), now):
        AnonymousRequestCount.objects.create(
            minute=minute, client="203.0.113.9", route="unmatched", status_code=404, count=5
        )
    out = StringIO()
    call_command("prune_request_logs", "--older-than", "30", stdout=out)
    assert list(RequestLog.objects.values_list("pk", flat=True)) == [recent.pk]
    assert list(AnonymousRequestCount.objects.values_list("minute", flat=True)) == [now]
    assert "Deleted 1 request log row(s), 0 repeated-429 count row(s) and 2 anonymous count row(s)" in out.getvalue()


def test_check_deploy_passes_with_production_settings(static_manifest_root):
    env = {
        "PATH": "/usr/bin:/bin",
        "DJANGO_STATIC_ROOT": str(static_manifest_root),  # collectstatic done (classifier.checks)
        "DJANGO_SETTINGS_MODULE": "aiserver.settings",
        "DJANGO_DEBUG": "false",
        "DJANGO_SECRET_KEY": "Zq8" + "x7Kp2Lm9Qr4Tv6Wy1Bn3Cd5Ef8Gh0Jk2Mn4Pq6Rs8Tu0Vw2Xy4Za6",
        "DJANGO_ALLOWED_HOSTS": "api.example.com",
        "DJANGO_SECURE_SSL_REDIRECT": "true",
        "DJANGO_SECURE_HSTS_SECONDS": "31536000",
        "DJANGO_SECURE_HSTS_INCLUDE_SUBDOMAINS": "true",
        "DJANGO_SECURE_HSTS_PRELOAD": "true",
        "DJANGO_SECURE_PROXY_SSL_HEADER": "true",
    }
    result = subprocess.run(
        [sys.executable, "manage.py", "check", "--deploy", "--fail-level", "WARNING"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_production_server_refuses_to_start_without_a_secret(tmp_path):
    env = {
        "PATH": "/usr/bin:/bin",
        "DJANGO_SETTINGS_MODULE": "aiserver.settings",
        "DJANGO_DEBUG": "false",
        "DATABASE_URL": f"sqlite:///{tmp_path / 'db.sqlite3'}",
    }
    result = subprocess.run(
        [sys.executable, "manage.py", "serve", "--port", "1"], cwd=ROOT, env=env, capture_output=True, text=True
    )
    assert result.returncode != 0 and "DJANGO_SECRET_KEY must be set" in result.stderr
    assert "Traceback" not in result.stderr


def test_the_readme_key_line_works_without_debug_or_a_secret(tmp_path):
    """`create_api_key` as the README and `make run` print it: no DJANGO_DEBUG, no DJANGO_SECRET_KEY."""
    env = {
        "PATH": "/usr/bin:/bin",
        "DJANGO_SETTINGS_MODULE": "aiserver.settings",
        "DATABASE_URL": f"sqlite:///{tmp_path / 'db.sqlite3'}",
    }
    manage = [sys.executable, "manage.py"]
    subprocess.run([*manage, "migrate", "--noinput", "-v0"], cwd=ROOT, env=env, check=True, capture_output=True)
    result = subprocess.run(
        [*manage, "create_api_key", "--name", "me"], cwd=ROOT, env=env, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().splitlines()[-1].startswith("ais_") and result.stderr == ""


def test_cors_is_off_by_default_and_allows_listed_origins(client, settings):
    preflight = {"HTTP_ORIGIN": "https://app.example.com", "HTTP_ACCESS_CONTROL_REQUEST_METHOD": "POST"}
    assert "access-control-allow-origin" not in client.options(URL, **preflight).headers
    settings.CORS_ALLOWED_ORIGINS = ["https://app.example.com"]
    allowed = client.options(URL, **preflight)
    assert allowed.headers["access-control-allow-origin"] == "https://app.example.com"


def test_an_image_that_finds_no_decode_budget_in_time_is_503_overloaded_then_served(auth_client, monkeypatch, settings):
    budget = PixelBudget(settings.CLASSIFIER_MAX_IMAGE_PIXELS)
    monkeypatch.setattr(services, "decode_budget", budget)
    settings.CLASSIFIER_DECODE_BUDGET_WAIT_MS = 50
    budget.acquire(budget.capacity, timeout=0)  # other requests are decoding all it holds
    refused = auth_client.post(URL, BODY, format="json")
    assert refused.status_code == 503 and refused.json()["code"] == "overloaded"
    assert int(refused["Retry-After"]) >= 1
    budget.release(budget.capacity)
    assert auth_client.post(URL, BODY, format="json").status_code == 200
    assert budget.in_use == 0


def test_decode_budget_is_given_back_after_good_and_unreadable_images(auth_client, monkeypatch, settings):
    budget = PixelBudget(settings.CLASSIFIER_MAX_IMAGE_PIXELS)
    monkeypatch.setattr(services, "decode_budget", budget)
    images = [{"image": BODY["image"]}, {"image": base64.b64encode(picture("goldfish")[:200]).decode()}]
    response = auth_client.post("/api/v2/classify", {"images": images}, format="json")
    assert response.status_code == 200 and "error" in response.json()["results"][1]
    assert budget.in_use == 0


def test_settings_refuse_a_decode_budget_smaller_than_the_largest_image():
    env = {
        "PATH": "/usr/bin:/bin",
        "DJANGO_SETTINGS_MODULE": "aiserver.settings",
        "DJANGO_DEBUG": "true",
        "CLASSIFIER_MAX_IMAGE_PIXELS": "40000000",
        "CLASSIFIER_DECODE_BUDGET_MEGAPIXELS": "39",
    }
    result = subprocess.run([sys.executable, "manage.py", "check"], cwd=ROOT, env=env, capture_output=True, text=True)
    assert result.returncode != 0 and "CLASSIFIER_DECODE_BUDGET_MEGAPIXELS" in result.stderr
