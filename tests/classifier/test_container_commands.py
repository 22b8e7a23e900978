"""The commands a container runs: `serve` (the production command line) and `wait_for_services`."""

import sys
from io import StringIO

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from classifier.management.commands import serve
from tests.services import unreachable_redis_url

pytestmark = pytest.mark.django_db


def test_serve_runs_uvicorn_with_the_slow_client_flags_and_passes_the_rest_on():
    command = serve.uvicorn_command(host="0.0.0.0", port=8000, extra=["--workers", "2"])
    assert command[:4] == [sys.executable, "-m", "uvicorn", "aiserver.asgi:application"]
    assert command[4:8] == ["--host", "0.0.0.0", "--port", "8000"]
    flags = command[8:]
    assert flags[: len(flags) - 2] == ["--timeout-graceful-shutdown", "35", *serve.UVICORN_FLAGS]
    assert flags[-2:] == ["--workers", "2"]


def test_serve_writes_a_secret_key_file_once_when_no_secret_is_given(tmp_path, settings, monkeypatch):
    monkeypatch.delenv("DJANGO_SECRET_KEY", raising=False)
    settings.DJANGO_SECRET_KEY_FILE = str(tmp_path / "secret_key")
    assert serve.ensure_secret_key_file()
    first = (tmp_path / "secret_key").read_text().strip()
    assert len(first) > 40 and (tmp_path / "secret_key").stat().st_mode & 0o777 == 0o600
    assert not serve.ensure_secret_key_file() and (tmp_path / "secret_key").read_text().strip() == first
    assert [path.name for path in tmp_path.iterdir()] == ["secret_key"]


def test_wait_for_services_returns_when_the_database_answers_and_migrations_are_applied():
    out = StringIO()
    call_command("wait_for_services", "--migrated", "--timeout", "5", stdout=out)
    assert out.getvalue().strip() == "services ready"


def test_wait_for_services_gives_up_naming_redis_when_it_is_down(settings):
    settings.REDIS_URL = unreachable_redis_url()
    with pytest.raises(CommandError, match="Redis"):
        call_command("wait_for_services", "--timeout", "0", stderr=StringIO())
