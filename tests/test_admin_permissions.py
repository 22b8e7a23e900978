"""Every action and custom view of the project's admins declares the permission it needs, and a staff user
without it can neither see the action nor change anything through it or the view.

The walk covers every ModelAdmin registered for a project app: a new admin, action or custom view is checked
without a new test (a new model only needs a row in ROWS).
"""

import datetime as dt

import pytest
from django.contrib import admin
from django.contrib.auth.models import Permission, User
from django.core import serializers
from django.test import Client, RequestFactory
from django.urls import reverse
from django.utils import timezone

from accounts.models import AnonymousRequestCount, ApiKey, Plan, RepeatedThrottleCount, RequestLog
from accounts.services import api_key_create
from classifier.models import ModelLoadStatus, ModelVersion
from tests.classifier.factories import version_row

pytestmark = pytest.mark.django_db
PROJECT_APPS = {"accounts", "classifier"}
DEFAULT_VIEWS = {"changelist", "add", "history", "delete", "change"}  # Django's own, checked by Django

ROWS = {  # one row of each project model, for the actions and views to act on
    ApiKey: lambda: api_key_create(name="customer")[0],
    RequestLog: lambda: RequestLog.objects.create(
        endpoint="/api/v1/classify", method="POST", status_code=200, response_time_ms=1.0
    ),
    AnonymousRequestCount: lambda: AnonymousRequestCount.objects.create(
        minute=timezone.now().replace(second=0, microsecond=0), client="127.0.0.1", route="/healthz", status_code=200
    ),
    RepeatedThrottleCount: lambda: RepeatedThrottleCount.objects.create(
        minute=timezone.now().replace(second=0, microsecond=0), endpoint="/api/v1/classify", repeats=3
    ),
    Plan: lambda: Plan.objects.create(name="pro", monthly_images=1000),
    ModelVersion: lambda: version_row(version="1"),
    ModelLoadStatus: lambda: ModelLoadStatus.objects.create(worker="w1", name="flowers", version="1", outcome="loaded"),
}


def project_admins() -> list[tuple[type, admin.ModelAdmin]]:
    return [(model, ma) for model, ma in admin.site._registry.items() if model._meta.app_label in PROJECT_APPS]


def staff_without(model, permissions) -> User:
    """A staff user with every permission on ``model`` except ``permissions`` (e.g. ("change",))."""
    user = User.objects.create_user(f"staff-{User.objects.count()}", is_staff=True)
    lacking = {f"{permission}_{model._meta.model_name}" for permission in permissions}
    granted = Permission.objects.filter(
        content_type__app_label=model._meta.app_label, content_type__model=model._meta.model_name
    ).exclude(codename__in=lacking)
    user.user_permissions.set(granted)
    return User.objects.get(pk=user.pk)  # without the permission cache


def snapshot(model) -> str:
    return serializers.serialize("json", model.objects.order_by("pk"))


def custom_views(model_admin) -> list:
    model = model_admin.model._meta
    defaults = {f"{model.app_label}_{model.model_name}_{view}" for view in DEFAULT_VIEWS}
    return [url for url in model_admin.get_urls() if url.name and url.name not in defaults]


@pytest.fixture
def rows(db):
    return {model: make() for model, make in ROWS.items()}


def test_every_project_model_in_the_admin_has_a_row_for_the_walk():
    assert {model for model, _ in project_admins()} <= set(ROWS)


def test_every_action_declares_its_permission_and_is_refused_without_it(rows):
    superuser = User.objects.create_superuser("root", "root@example.com", "pw-for-tests-only")
    walked = []
    for model, model_admin in project_admins():
        request = RequestFactory().get("/admin/")
        request.user = superuser
        for name, (action, _, _) in model_admin.get_actions(request).items():
            permissions = getattr(action, "allowed_permissions", ())
            assert permissions, f"{model.__name__} admin action {name} declares no permission"
            user = staff_without(model, permissions)
            request.user = user
            assert name not in model_admin.get_actions(request), f"{name} is offered to a user without {permissions}"
            client = Client()
            client.force_login(user)
            before = snapshot(model)
            changelist = reverse(f"admin:{model._meta.app_label}_{model._meta.model_name}_changelist")
            client.post(changelist, {"action": name, "_selected_action": [rows[model].pk], "post": "yes"})
            assert snapshot(model) == before, f"{name} changed {model.__name__} for a user without {permissions}"
            walked.append(name)
    assert {"activate_version", "retire_versions", "validate_again", "revoke_keys"} <= set(walked)


def test_every_custom_admin_view_declares_its_permission_and_is_refused_without_it(rows):
    walked = []
    for model, model_admin in project_admins():
        for url in custom_views(model_admin):
            permissions = getattr(url.callback, "allowed_permissions", ())
            assert permissions, f"{model.__name__} admin view {url.name} declares no permission"
            client = Client()
            client.force_login(staff_without(model, permissions))
            before = snapshot(model)
            kwargs = dict.fromkeys(url.pattern.converters, rows[model].pk)
            response = client.post(reverse(f"admin:{url.name}", kwargs=kwargs))
            assert response.status_code == 403, f"{url.name}: {response.status_code}"
            assert snapshot(model) == before
            walked.append(url.name)
    assert "classifier_modelversion_activate" in walked


def test_a_version_is_deleted_only_with_the_delete_permission(rows):
    version = rows[ModelVersion]
    client = Client()
    client.force_login(staff_without(ModelVersion, ("delete",)))
    delete_page = f"/admin/classifier/modelversion/{version.pk}/delete/"
    assert client.post(delete_page, {"post": "yes"}).status_code == 403
    assert ModelVersion.objects.filter(pk=version.pk).exists()

    client.force_login(User.objects.create_superuser("root", "root@example.com", "pw-for-tests-only"))
    assert client.post(delete_page, {"post": "yes"}).status_code == 302
    assert not ModelVersion.objects.filter(pk=version.pk).exists()


def test_the_active_version_is_not_deleted_even_with_the_permission(rows):
    version = version_row(version="2", status="active", activated_at=timezone.now() - dt.timedelta(minutes=1))
    client = Client()
    client.force_login(User.objects.create_superuser("root", "root@example.com", "pw-for-tests-only"))
    assert client.post(f"/admin/classifier/modelversion/{version.pk}/delete/", {"post": "yes"}).status_code == 403
    assert ModelVersion.objects.filter(pk=version.pk).exists()
