"""Plans in the admin: created and listed there, keys put on them from the key form."""

import pytest
from django.contrib.auth.models import User
from django.test import Client

from accounts.models import ApiKey, Plan
from accounts.services import api_key_create, plan_create

pytestmark = pytest.mark.django_db


@pytest.fixture
def admin_client():
    client = Client()
    client.force_login(User.objects.create_superuser("admin", "admin@example.com", "pw-for-tests-only"))
    return client


PLAN_FORM = {
    "name": "free",
    "rate_limit": 60,
    "rate_window_seconds": 60,
    "monthly_images": 1000,
    "allowed_models": "flowers, resnet18",
    "overage": "block",
    "price_per_1000_images": "0",
    "price_per_1000_overage_images": "0",
}


def test_a_plan_is_created_in_the_admin_with_its_models_on_one_line(admin_client):
    response = admin_client.post("/admin/accounts/plan/add/", PLAN_FORM)
    assert response.status_code == 302, response.content.decode()[:2000]
    plan = Plan.objects.get(name="free")
    assert plan.allowed_models == ["flowers", "resnet18"] and plan.monthly_images == 1000
    listing = admin_client.get("/admin/accounts/plan/").content.decode()
    assert "flowers, resnet18" in listing


def test_a_negative_allowance_is_a_form_error_not_a_500(admin_client):
    response = admin_client.post("/admin/accounts/plan/add/", {**PLAN_FORM, "monthly_images": -1})
    assert response.status_code == 200 and "errornote" in response.content.decode()
    assert not Plan.objects.exists()


def test_a_key_put_on_a_plan_in_the_admin_with_empty_limits_takes_the_plans(admin_client):
    plan = plan_create(name="pro", monthly_images=10, rate_limit=33, rate_window_seconds=30)
    response = admin_client.post(
        "/admin/accounts/apikey/add/", {"name": "on-pro", "plan": plan.pk, "rate_limit": "", "rate_window_seconds": ""}
    )
    assert response.status_code == 302
    api_key = ApiKey.objects.get(name="on-pro")
    assert (api_key.effective_rate_limit, api_key.effective_rate_window_seconds) == (33, 30)


def test_a_key_on_no_plan_with_empty_limits_keeps_the_defaults_as_before(admin_client, settings):
    response = admin_client.post(
        "/admin/accounts/apikey/add/", {"name": "plain", "rate_limit": "", "rate_window_seconds": ""}
    )
    assert response.status_code == 302
    api_key = ApiKey.objects.get(name="plain")
    assert (api_key.rate_limit, api_key.rate_window_seconds) == (
        settings.ACCOUNTS_DEFAULT_RATE_LIMIT,
        settings.ACCOUNTS_DEFAULT_RATE_WINDOW_SECONDS,
    )


def test_a_plan_with_keys_cannot_be_deleted(admin_client):
    plan = plan_create(name="free", monthly_images=10)
    api_key_create(name="holder", plan=plan)
    admin_client.post(f"/admin/accounts/plan/{plan.pk}/delete/", {"post": "yes"})
    assert Plan.objects.filter(pk=plan.pk).exists()


def test_the_key_list_shows_and_filters_by_plan(admin_client):
    plan = plan_create(name="pro", monthly_images=10)
    api_key_create(name="on-pro", plan=plan)
    api_key_create(name="no-plan")
    listing = admin_client.get("/admin/accounts/apikey/", {"plan__id__exact": plan.pk}).content.decode()
    assert "on-pro" in listing and "no-plan" not in listing
