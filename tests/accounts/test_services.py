import datetime as dt

import pytest
from django.core.exceptions import ValidationError
from django.db import IntegrityError, connection
from django.utils import timezone

from accounts import crypto
from accounts.models import ApiKey, RequestLog
from accounts.services import (
    KeyGenerationFailed,
    api_key_assign_secret,
    api_key_authenticate,
    api_key_create,
    api_key_revoke,
    request_log_create,
)

pytestmark = pytest.mark.django_db


def test_create_returns_plaintext_once_and_stores_only_its_hash():
    api_key, raw_key = api_key_create(name="alice")
    assert api_key_authenticate(raw_key=raw_key) == api_key
    with connection.cursor() as cursor:
        cursor.execute("SELECT * FROM accounts_apikey")
        stored = [str(value) for row in cursor.fetchall() for value in row]
    assert all(raw_key not in value for value in stored)
    assert api_key.hashed_key != raw_key and api_key.prefix in raw_key


def test_create_uses_default_limits_from_settings(settings):
    settings.ACCOUNTS_DEFAULT_RATE_LIMIT = 7
    settings.ACCOUNTS_DEFAULT_RATE_WINDOW_SECONDS = 11
    api_key, _ = api_key_create(name="defaults")
    assert (api_key.rate_limit, api_key.rate_window_seconds) == (7, 11)


def test_create_rejects_duplicate_name_and_zero_limit():
    api_key_create(name="dup")
    with pytest.raises(ValidationError):
        api_key_create(name="dup")
    with pytest.raises(ValidationError):
        api_key_create(name="zero", rate_limit=0)


def test_revoked_key_is_rejected_and_stays_revoked_after_edit():
    api_key, raw_key = api_key_create(name="bob")
    api_key_revoke(api_key=api_key)
    assert api_key_authenticate(raw_key=raw_key) is None
    stale = ApiKey.objects.get(pk=api_key.pk)
    stale.revoked_at = None  # an edit that tries to clear the revocation
    stale.save()
    assert ApiKey.objects.get(pk=api_key.pk).revoked_at is not None
    assert api_key_authenticate(raw_key=raw_key) is None


def test_expired_key_is_rejected():
    _, raw_key = api_key_create(name="old", expires_at=timezone.now() - dt.timedelta(seconds=1))
    assert api_key_authenticate(raw_key=raw_key) is None


def test_wrong_secret_with_known_prefix_is_rejected():
    api_key, raw_key = api_key_create(name="carol")
    forged = raw_key[:-4] + ("AAAA" if not raw_key.endswith("AAAA") else "BBBB")
    assert api_key_authenticate(raw_key=forged) is None


def test_authenticate_records_last_use():
    api_key, raw_key = api_key_create(name="dave")
    assert api_key.last_used_at is None
    api_key_authenticate(raw_key=raw_key)
    assert ApiKey.objects.get(pk=api_key.pk).last_used_at is not None


@pytest.mark.parametrize(
    "client_ip,stored",
    [
        ("203.0.113.9", "203.0.113.9"),
        ("2001:db8::1", "2001:db8::1"),
        ("testclient", None),  # what an ASGI test client, or a forged X-Forwarded-For, may make the client address
        ("", None),
        (None, None),
    ],
)
def test_request_log_stores_the_client_address_only_when_it_is_one(client_ip, stored):
    request_log_create(
        api_key_id=None,
        endpoint="/api/v1/classify",
        method="POST",
        status_code=200,
        response_time_ms=1.0,
        client_ip=client_ip,
    )
    assert RequestLog.objects.get().client_ip == stored


def test_request_log_stores_the_model_name_and_version_blank_by_default():
    request_log_create(
        api_key_id=None,
        endpoint="/api/v2/classify",
        method="POST",
        status_code=200,
        response_time_ms=1.0,
        client_ip=None,
        model_name="flowers",
        model_version="3",
    )
    request_log_create(
        api_key_id=None,
        endpoint="/api/v2/models",
        method="GET",
        status_code=200,
        response_time_ms=1.0,
        client_ip=None,
    )
    rows = list(RequestLog.objects.order_by("id").values_list("model_name", "model_version"))
    assert rows == [("flowers", "3"), ("", "")]


def test_a_new_key_may_use_every_model_unless_it_names_some():
    everything, _ = api_key_create(name="all")
    some, _ = api_key_create(name="some", allowed_models=["flowers", "resnet18"])
    assert ApiKey.objects.get(pk=everything.pk).allowed_models == []
    assert ApiKey.objects.get(pk=some.pk).allowed_models == ["flowers", "resnet18"]
    assert everything.may_use_model("anything") and some.may_use_model("flowers")
    assert not some.may_use_model("vit_b_16")


@pytest.mark.parametrize("names", [["has space"], ["flowers@2"], [""], ["flowers", "flowers"], ["x" * 65]])
def test_create_refuses_allowed_models_that_are_not_model_names(names):
    with pytest.raises(ValidationError) as caught:
        api_key_create(name="bad-models", allowed_models=names)
    assert "allowed_models" in caught.value.message_dict
    assert not ApiKey.objects.filter(name="bad-models").exists()


@pytest.fixture
def clashing_generator(monkeypatch):
    """crypto.generate_key answers first with the prefix of an existing key, then with fresh keys."""
    taken, _ = api_key_create(name="first")
    real = crypto.generate_key
    clash = crypto.GeneratedKey(raw_key=f"ais_{taken.prefix}.{'x' * 43}", prefix=taken.prefix, hashed_key="0" * 64)
    answers = iter([clash])
    monkeypatch.setattr(crypto, "generate_key", lambda: next(answers, None) or real())
    return taken


def test_create_retries_when_the_generated_prefix_is_taken(clashing_generator):
    api_key, raw_key = api_key_create(name="second")
    assert api_key.prefix != clashing_generator.prefix and raw_key.startswith(f"ais_{api_key.prefix}.")
    assert api_key_authenticate(raw_key=raw_key) == api_key
    assert ApiKey.objects.count() == 2


def test_assigning_a_secret_retries_when_the_generated_prefix_is_taken(clashing_generator):
    api_key = ApiKey(name="from-admin")
    raw_key = api_key_assign_secret(api_key=api_key)
    assert api_key.prefix != clashing_generator.prefix
    assert api_key_authenticate(raw_key=raw_key) == api_key


def test_create_gives_up_after_the_named_number_of_clashes(monkeypatch):
    taken, _ = api_key_create(name="first")
    clash = crypto.GeneratedKey(raw_key="unused", prefix=taken.prefix, hashed_key="0" * 64)
    calls = []
    monkeypatch.setattr(crypto, "generate_key", lambda: calls.append(1) or clash)
    with pytest.raises(KeyGenerationFailed):
        api_key_create(name="second")
    assert len(calls) == crypto.KEY_GENERATION_ATTEMPTS
    assert not ApiKey.objects.filter(name="second").exists()


def test_a_name_clash_is_not_retried_as_a_prefix_clash(monkeypatch):
    api_key_create(name="taken")
    calls = []
    real = crypto.generate_key
    monkeypatch.setattr(crypto, "generate_key", lambda: calls.append(1) or real())
    with pytest.raises(IntegrityError):
        api_key_assign_secret(api_key=ApiKey(name="taken"))
    assert len(calls) == 1
