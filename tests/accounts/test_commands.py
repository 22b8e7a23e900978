from io import StringIO

import pytest
from django.core.management import CommandError, call_command

from accounts.models import ApiKey
from accounts.services import api_key_authenticate, api_key_create

pytestmark = pytest.mark.django_db


def test_create_api_key_prints_the_key_alone_on_the_last_line():
    out = StringIO()
    call_command(
        "create_api_key", "--name", "cli", "--rate-limit", "5", "--window", "30", "--expires-days", "2", stdout=out
    )
    raw_key = out.getvalue().strip().splitlines()[-1]
    api_key = api_key_authenticate(raw_key=raw_key)
    assert api_key is not None and api_key.name == "cli"
    assert (api_key.rate_limit, api_key.rate_window_seconds) == (5, 30)
    assert api_key.expires_at is not None


def test_create_api_key_limits_the_key_to_the_models_named():
    out = StringIO()
    call_command("create_api_key", "--name", "limited", "--models", "flowers, resnet18,flowers", stdout=out)
    api_key = api_key_authenticate(raw_key=out.getvalue().strip().splitlines()[-1])
    assert api_key.allowed_models == ["flowers", "resnet18"]
    assert "models: flowers, resnet18" in out.getvalue()


def test_create_api_key_without_models_allows_every_model():
    out = StringIO()
    call_command("create_api_key", "--name", "unlimited", stdout=out)
    assert ApiKey.objects.get(name="unlimited").allowed_models == []
    assert "models: all" in out.getvalue()


def test_create_api_key_refuses_a_bad_model_name():
    with pytest.raises(CommandError, match="allowed_models"):
        call_command("create_api_key", "--name", "bad", "--models", "flowers@2", stdout=StringIO())
    assert not ApiKey.objects.filter(name="bad").exists()


def test_create_api_key_refuses_a_taken_name():
    call_command("create_api_key", "--name", "taken", stdout=StringIO())
    with pytest.raises(CommandError):
        call_command("create_api_key", "--name", "taken", stdout=StringIO())


@pytest.mark.parametrize("by", ["name", "prefix"])
def test_revoke_api_key_by_name_or_prefix(by):
    out = StringIO()
    call_command("create_api_key", "--name", "victim", stdout=out)
    raw_key = out.getvalue().strip().splitlines()[-1]
    api_key = ApiKey.objects.get(name="victim")
    call_command("revoke_api_key", f"--{by}", getattr(api_key, by), stdout=StringIO())
    assert api_key_authenticate(raw_key=raw_key) is None


def test_revoke_api_key_unknown_is_an_error():
    with pytest.raises(CommandError):
        call_command("revoke_api_key", "--name", "nobody")


@pytest.fixture
def clashing_keys():
    """Key ``target`` and a newer key whose name is ``target``'s prefix: (target, its raw key, clash, its raw key)."""
    target, target_raw = api_key_create(name="target")
    clash, clash_raw = api_key_create(name=target.prefix)
    return target, target_raw, clash, clash_raw


def test_revoke_api_key_by_prefix_revokes_that_key_not_one_named_like_it(clashing_keys):
    target, target_raw, clash, clash_raw = clashing_keys
    call_command("revoke_api_key", "--prefix", target.prefix, stdout=StringIO())
    assert api_key_authenticate(raw_key=target_raw) is None
    assert api_key_authenticate(raw_key=clash_raw) == clash


def test_revoke_api_key_by_name_revokes_the_key_with_that_name(clashing_keys):
    target, target_raw, clash, clash_raw = clashing_keys
    call_command("revoke_api_key", "--name", target.prefix, stdout=StringIO())
    assert api_key_authenticate(raw_key=clash_raw) is None
    assert api_key_authenticate(raw_key=target_raw) == target


def test_revoke_api_key_refuses_an_ambiguous_name_or_prefix_and_revokes_nothing(clashing_keys):
    target, target_raw, clash, clash_raw = clashing_keys
    with pytest.raises(CommandError, match="--name or --prefix"):
        call_command("revoke_api_key", target.prefix, stdout=StringIO())
    assert api_key_authenticate(raw_key=target_raw) == target
    assert api_key_authenticate(raw_key=clash_raw) == clash


def test_revoke_api_key_takes_a_name_or_a_prefix_not_both():
    with pytest.raises(CommandError):
        call_command("revoke_api_key", "--name", "a", "--prefix", "b", stdout=StringIO())
