import re

import pytest
from django.contrib.auth.models import User
from django.contrib.messages.storage.cookie import CookieStorage
from django.http import HttpRequest
from django.test import Client

from accounts.models import AnonymousRequestCount, ApiKey, RequestLog
from accounts.services import api_key_authenticate, api_key_create

pytestmark = pytest.mark.django_db


@pytest.fixture
def staff_client():
    user = User.objects.create_superuser("admin", "admin@example.com", "pw-for-tests-only")
    client = Client()
    client.force_login(user)
    return client


def test_issuing_a_key_in_the_admin_shows_it_once(staff_client):
    response = staff_client.post(
        "/admin/accounts/apikey/add/",
        {"name": "from-admin", "rate_limit": 10, "rate_window_seconds": 60},
        follow=True,
    )
    assert response.status_code == 200
    match = re.search(r"(ais_[0-9a-f]{8}\.[A-Za-z0-9_-]+)", response.content.decode())
    assert match, "the new key is shown after saving"
    raw_key = match.group(1)
    api_key = ApiKey.objects.get(name="from-admin")
    assert api_key_authenticate(raw_key=raw_key) == api_key
    change_page = staff_client.get(f"/admin/accounts/apikey/{api_key.pk}/change/").content.decode()
    listing = staff_client.get("/admin/accounts/apikey/").content.decode()
    assert raw_key not in change_page and raw_key not in listing
    assert api_key.prefix in listing


def test_the_new_key_is_kept_server_side_not_in_a_cookie_of_the_redirect(staff_client):
    redirect = staff_client.post(
        "/admin/accounts/apikey/add/", {"name": "from-admin", "rate_limit": 10, "rate_window_seconds": 60}
    )
    assert redirect.status_code == 302
    page = staff_client.get(redirect["Location"])
    assert "no-store" in page["Cache-Control"]  # the page that shows the key is not kept by the browser
    raw_key = re.search(r"(ais_[0-9a-f]{8}\.[A-Za-z0-9_-]+)", page.content.decode()).group(1)
    assert api_key_authenticate(raw_key=raw_key) == ApiKey.objects.get(name="from-admin")

    assert "messages" not in redirect.cookies
    for morsel in redirect.cookies.values():
        decoded = CookieStorage(HttpRequest())._decode(morsel.value)  # the signed, compressed form, read back
        assert raw_key not in morsel.value and raw_key not in str(decoded)
    assert raw_key not in staff_client.get(redirect["Location"]).content.decode(), "shown once"


def test_bulk_revoke_action(staff_client):
    keys = [api_key_create(name=f"k{i}") for i in range(3)]
    response = staff_client.post(
        "/admin/accounts/apikey/",
        {"action": "revoke_keys", "_selected_action": [k.pk for k, _ in keys[:2]]},
        follow=True,
    )
    assert response.status_code == 200
    assert [api_key_authenticate(raw_key=raw) is None for _, raw in keys] == [True, True, False]


def test_editing_limits_in_the_admin_keeps_the_secret(staff_client):
    api_key, raw_key = api_key_create(name="edit-me")
    staff_client.post(
        f"/admin/accounts/apikey/{api_key.pk}/change/",
        {"name": "edit-me", "rate_limit": 3, "rate_window_seconds": 5},
    )
    refreshed = api_key_authenticate(raw_key=raw_key)
    assert (refreshed.rate_limit, refreshed.rate_window_seconds) == (3, 5)


def test_allowed_models_are_typed_as_one_line_of_names_in_the_admin(staff_client):
    staff_client.post(
        "/admin/accounts/apikey/add/",
        {"name": "limited", "rate_limit": 10, "rate_window_seconds": 60, "allowed_models": "flowers, resnet18"},
    )
    api_key = ApiKey.objects.get(name="limited")
    assert api_key.allowed_models == ["flowers", "resnet18"]
    change_page = staff_client.get(f"/admin/accounts/apikey/{api_key.pk}/change/").content.decode()
    assert 'name="allowed_models"' in change_page and 'value="flowers, resnet18"' in change_page
    assert "Empty: the key may use every model" in change_page
    assert "flowers, resnet18" in staff_client.get("/admin/accounts/apikey/").content.decode()
    staff_client.post(
        f"/admin/accounts/apikey/{api_key.pk}/change/",
        {"name": "limited", "rate_limit": 10, "rate_window_seconds": 60, "allowed_models": ""},
    )
    api_key.refresh_from_db()
    assert api_key.allowed_models == []


def test_a_bad_model_name_in_the_admin_is_a_form_error(staff_client):
    response = staff_client.post(
        "/admin/accounts/apikey/add/",
        {"name": "bad", "rate_limit": 10, "rate_window_seconds": 60, "allowed_models": "flowers, not a name"},
    )
    assert response.status_code == 200
    assert "Not a model name: &#x27;not a name&#x27;" in response.content.decode()
    assert not ApiKey.objects.filter(name="bad").exists()


def test_request_log_admin_shows_the_model_and_version(staff_client):
    RequestLog.objects.create(
        endpoint="/api/v2/classify",
        method="POST",
        status_code=200,
        response_time_ms=1.0,
        model_name="flowers",
        model_version="7",
    )
    listing = staff_client.get("/admin/accounts/requestlog/?model_name=flowers").content.decode()
    assert "flowers" in listing and ">7<" in listing


def test_request_log_admin_is_read_only(staff_client):
    log = RequestLog.objects.create(endpoint="/api/v1/classify", method="POST", status_code=200, response_time_ms=1.0)
    assert staff_client.get("/admin/accounts/requestlog/add/").status_code == 403
    assert staff_client.get("/admin/accounts/requestlog/?status=2xx").status_code == 200
    staff_client.post(f"/admin/accounts/requestlog/{log.pk}/delete/", {"post": "yes"})
    assert RequestLog.objects.filter(pk=log.pk).exists()


def log_rows(api_key, statuses_and_endpoints):
    for status, endpoint in statuses_and_endpoints:
        RequestLog.objects.create(
            api_key=api_key, endpoint=endpoint, method="POST", status_code=status, response_time_ms=1.0
        )


def test_request_log_list_filters_have_fixed_choices_and_its_queries_do_not_grow(
    staff_client, django_assert_max_num_queries
):
    api_key, _ = api_key_create(name="listed")
    log_rows(api_key, [(200, "/api/v1/classify"), (429, "/api/v1/classify"), (500, "/api/v2/classify")])
    with django_assert_max_num_queries(6) as few:
        html = staff_client.get("/admin/accounts/requestlog/").content.decode()
    log_rows(api_key, [(200, f"/api/v1/route-{i}") for i in range(50)])
    with django_assert_max_num_queries(len(few.captured_queries)):
        staff_client.get("/admin/accounts/requestlog/")

    assert "endpoint__exact" not in html and "status_code__exact" not in html
    assert all(f"?status={choice}" in html for choice in ("2xx", "4xx", "429", "5xx"))
    assert not any("DISTINCT" in query["sql"] for query in few.captured_queries)
    throttled = staff_client.get("/admin/accounts/requestlog/?status=429").content.decode()
    assert '<td class="field-status_code">429</td>' in throttled
    assert (
        '<td class="field-status_code">500</td>' not in throttled
        and '<td class="field-status_code">200</td>' not in throttled
    )


def test_anonymous_counts_admin_lists_and_is_read_only(staff_client, client):
    client.get("/api/v1/nowhere")
    count = AnonymousRequestCount.objects.get()
    listing = staff_client.get("/admin/accounts/anonymousrequestcount/")
    assert listing.status_code == 200 and "unmatched" in listing.content.decode()
    assert staff_client.get("/admin/accounts/anonymousrequestcount/add/").status_code == 403
    staff_client.post(f"/admin/accounts/anonymousrequestcount/{count.pk}/delete/", {"post": "yes"})
    assert AnonymousRequestCount.objects.filter(pk=count.pk).exists()


def test_admin_is_for_staff_only():
    User.objects.create_user("plain", password="pw-for-tests-only")
    client = Client()
    client.login(username="plain", password="pw-for-tests-only")
    response = client.get("/admin/accounts/apikey/")
    assert response.status_code == 302 and "/admin/login/" in response["Location"]
