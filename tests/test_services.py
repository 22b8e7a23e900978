"""tests.services: under CI a missing service fails the test; elsewhere it skips it."""

import pytest

from tests import services
from tests.services import under_ci

UNREACHABLE_REDIS_URL = "redis://127.0.0.1:1/0"  # nothing listens on port 1


@pytest.mark.parametrize("value", ["1", "true", "True", "TRUE", "yes", "Yes", "on", "ON", " true "])
def test_the_usual_truthy_values_mean_ci(value):
    assert under_ci({"CI": value})


@pytest.mark.parametrize("value", ["", "0", "false", "no", "off", "ci", "2"])
def test_other_values_and_no_value_do_not_mean_ci(value):
    assert not under_ci({"CI": value})


def test_no_ci_variable_does_not_mean_ci():
    assert not under_ci({})


def outcome(check) -> str:
    """What ``check()`` makes of the calling test: "fail", "skip" or "pass" (caught here, so that a
    skip where a failure belongs fails this test instead of skipping it)."""
    try:
        check()
    except pytest.fail.Exception:
        return "fail"
    except pytest.skip.Exception:
        return "skip"
    return "pass"


@pytest.mark.parametrize("value", ["1", "true", "yes", "on"])
def test_an_unreachable_service_fails_the_test_under_ci(monkeypatch, value):
    monkeypatch.setenv("CI", value)
    monkeypatch.setattr(services, "REDIS_URL", UNREACHABLE_REDIS_URL)
    assert outcome(services.require_redis) == "fail"


@pytest.mark.parametrize("value", [None, "0", "false"])
def test_an_unreachable_service_skips_the_test_outside_ci(monkeypatch, value):
    if value is None:
        monkeypatch.delenv("CI", raising=False)
    else:
        monkeypatch.setenv("CI", value)
    monkeypatch.setattr(services, "REDIS_URL", UNREACHABLE_REDIS_URL)
    assert outcome(services.require_redis) == "skip"
