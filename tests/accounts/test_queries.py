import datetime as dt
from decimal import Decimal

import pytest
from django.utils import timezone

from accounts.models import ApiKey, Plan, RequestLog
from accounts.queries import PreparedQuery
from accounts.selectors import api_key_by_prefix
from accounts.services import api_key_create, api_key_revoke, plan_create, request_log_create

pytestmark = pytest.mark.django_db


def test_prepared_key_lookup_returns_what_the_orm_returns():
    api_key, _ = api_key_create(name="erin", expires_at=timezone.now() + dt.timedelta(days=1))
    found = api_key_by_prefix(prefix=api_key.prefix)
    stored = ApiKey.objects.get(pk=api_key.pk)
    assert {f.attname: getattr(found, f.attname) for f in ApiKey._meta.concrete_fields} == {
        f.attname: getattr(stored, f.attname) for f in ApiKey._meta.concrete_fields
    }
    assert timezone.is_aware(found.created_at) and found._state.adding is False


def test_prepared_key_lookup_sees_a_revocation_at_once_and_unknown_prefixes_find_nothing():
    api_key, _ = api_key_create(name="frank")
    assert api_key_by_prefix(prefix=api_key.prefix).revoked_at is None
    api_key_revoke(api_key=api_key)
    assert api_key_by_prefix(prefix=api_key.prefix).revoked_at is not None  # nothing cached between calls
    assert api_key_by_prefix(prefix="00000000") is None


def test_prepared_key_lookup_joins_the_plan_as_it_is_now_in_one_query(django_assert_num_queries):
    plan = plan_create(name="pro", monthly_images=10, price_per_1000_images="1.50", allowed_models=["flowers"])
    api_key, _ = api_key_create(name="on-plan", plan=plan)
    plain, _ = api_key_create(name="plain")
    with django_assert_num_queries(1):
        found = api_key_by_prefix(prefix=api_key.prefix)
        assert found.plan.name == "pro" and found.plan.allowed_models == ["flowers"]
        assert found.plan.price_per_1000_images == Decimal("1.50")
    with django_assert_num_queries(1):
        assert api_key_by_prefix(prefix=plain.prefix).plan is None
    Plan.objects.filter(pk=plan.pk).update(monthly_images=20)
    assert api_key_by_prefix(prefix=api_key.prefix).plan.monthly_images == 20  # nothing cached between calls


def test_prepared_query_refuses_a_queryset_it_cannot_rebuild_rows_from():
    with pytest.raises(ValueError):
        PreparedQuery(lambda name: ApiKey.objects.filter(name=name).values("pk")).fetch("x")
    with pytest.raises(ValueError):
        PreparedQuery(lambda name: ApiKey.objects.filter(name=name, prefix=name)).fetch("x")


def test_request_log_row_holds_what_was_passed():
    api_key, _ = api_key_create(name="gina")
    request_log_create(
        api_key_id=api_key.pk,
        endpoint="/api/v1/classify",
        method="POST",
        status_code=201,
        response_time_ms=1.23456,
        client_ip="::ffff:127.0.0.1",
        request_id="r-1",
        images=3,
    )
    request_log_create(
        api_key_id=None, endpoint="/api/x", method="GET", status_code=404, response_time_ms=0.5, client_ip=None
    )
    first, second = RequestLog.objects.order_by("id")
    assert (
        first.api_key_id,
        first.endpoint,
        first.method,
        first.status_code,
        first.response_time_ms,
        first.request_id,
        first.images,
    ) == (api_key.pk, "/api/v1/classify", "POST", 201, 1.235, "r-1", 3)
    assert first.client_ip == "::ffff:127.0.0.1" and timezone.now() - first.created_at < dt.timedelta(minutes=1)
    assert (second.api_key_id, second.client_ip, second.request_id, second.images) == (None, None, "", 0)
