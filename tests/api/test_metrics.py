import base64
import re

import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Permission
from django.test import override_settings

from tests.model_weights import picture

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("loaded_model")]
TOKEN = "scrape-token-for-tests"


def sample(text: str, name: str, **labels) -> float:
    """The value of one sample of the exposition text (0 when absent)."""
    for line in text.splitlines():
        match = re.match(rf"^{name}\{{(.*)\}} (\S+)$", line)
        if match and all(f'{key}="{value}"' in match.group(1) for key, value in labels.items()):
            return float(match.group(2))
    return 0.0


def scrape(client) -> str:
    response = client.get("/metrics", HTTP_AUTHORIZATION=f"Bearer {TOKEN}")
    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/plain")
    return response.content.decode()


def test_metrics_are_not_public(client):
    assert client.get("/metrics").status_code == 404


@override_settings(METRICS_TOKEN=TOKEN)
def test_wrong_token_is_refused(client):
    assert client.get("/metrics", HTTP_AUTHORIZATION="Bearer not-the-token").status_code == 404


def test_staff_session_with_the_log_view_permission_may_read_metrics(client):
    staff = get_user_model().objects.create_user("ops", password="pw-for-tests", is_staff=True)
    staff.user_permissions.add(Permission.objects.get(content_type__app_label="accounts", codename="view_requestlog"))
    client.force_login(staff)
    assert client.get("/metrics").status_code == 200


def test_superuser_session_may_read_metrics(client):
    client.force_login(get_user_model().objects.create_superuser("root", "root@example.com", "pw-for-tests"))
    assert client.get("/metrics").status_code == 200


def test_staff_session_without_the_log_view_permission_is_refused(client):
    client.force_login(get_user_model().objects.create_user("ops", password="pw-for-tests", is_staff=True))
    assert client.get("/metrics").status_code == 404


@override_settings(METRICS_TOKEN=TOKEN)
@pytest.mark.parametrize("header", [TOKEN, f"Basic {TOKEN}", f"Token {TOKEN}", f"Bearer{TOKEN}", f"Bearer  {TOKEN}x"])
def test_the_token_is_read_only_with_the_bearer_scheme(client, header):
    assert client.get("/metrics", HTTP_AUTHORIZATION=header).status_code == 404


@override_settings(METRICS_TOKEN=TOKEN)
def test_the_bearer_scheme_is_case_insensitive(client):
    assert client.get("/metrics", HTTP_AUTHORIZATION=f"bearer {TOKEN}").status_code == 200


@override_settings(METRICS_TOKEN=TOKEN)
def test_requests_batches_and_inference_are_counted(client, auth_client):
    before = scrape(client)
    auth_client.post("/api/v1/classify", {"image": base64.b64encode(picture("goldfish")).decode()}, format="json")
    auth_client.post("/api/v1/classify", {"image": "bm90IGFuIGltYWdl"}, format="json")
    client.get("/api/v1/nowhere")
    after = scrape(client)

    def grew(name, **labels):
        return sample(after, name, **labels) - sample(before, name, **labels)

    assert grew("aiserver_requests_total", endpoint="/api/v1/classify", method="POST", status="200") == 1
    assert grew("aiserver_requests_total", endpoint="/api/v1/classify", method="POST", status="400") == 1
    assert grew("aiserver_requests_total", endpoint="unmatched", method="GET", status="404") == 1
    assert grew("aiserver_request_duration_seconds_count", endpoint="/api/v1/classify", status="200") == 1
    assert grew("aiserver_batch_size_count", model="resnet18") == 1
    assert grew("aiserver_batch_size_sum", model="resnet18") == 1
    assert grew("aiserver_inference_duration_seconds_count", model="resnet18") == 1
    assert 'aiserver_queue_depth{model="resnet18"} 0.0' in after
