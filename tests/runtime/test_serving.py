"""The model loads in serving processes only: started by the entry points, never by importing the app."""

import importlib
import os
import subprocess
import sys

import pytest
from django.conf import settings

from classifier import serving


@pytest.fixture
def recorded_starts(monkeypatch):
    """start_serving() as if in a fresh process, with the registry's and the watcher's starts recorded."""
    from classifier.watcher import VersionWatcher

    starts = []
    monkeypatch.setattr(serving, "_started", False)
    monkeypatch.setattr(
        serving.process_runtime(), "start", lambda **kwargs: starts.append(("registry", kwargs["then"].__name__))
    )
    monkeypatch.setattr(VersionWatcher, "start", lambda self: starts.append(("watcher", None)))
    return starts


def test_start_serving_starts_the_registry_and_the_watcher_once(recorded_starts):
    assert serving.start_serving() is True
    assert serving.start_serving() is False
    assert recorded_starts == [("registry", "sync_safely"), ("watcher", None)]


@pytest.mark.parametrize("entry_point", ["aiserver.wsgi", "aiserver.asgi"])
def test_the_serving_entry_points_start_serving(recorded_starts, monkeypatch, entry_point):
    monkeypatch.delitem(sys.modules, entry_point, raising=False)
    monkeypatch.setattr("classifier.checks.run_start_checks", lambda: None)
    importlib.import_module(entry_point)
    assert [name for name, _ in recorded_starts] == ["registry", "watcher"]
    monkeypatch.delitem(sys.modules, entry_point)


def test_setting_up_django_as_any_command_does_loads_no_model():
    """What migrate, create_api_key and the rest do: django.setup() (app ready() included) starts nothing."""
    program = (
        "import django; django.setup()\n"
        "import sys; from classifier import serving\n"
        "print(serving._started, serving.process_runtime()._started, 'torch' in sys.modules)\n"
    )
    environment = {**os.environ, "DJANGO_SETTINGS_MODULE": "tests.settings"}
    answer = subprocess.run(
        [sys.executable, "-c", program],
        capture_output=True,
        text=True,
        env=environment,
        cwd=settings.BASE_DIR,
        timeout=120,
        check=True,
    )
    assert answer.stdout.split() == ["False", "False", "False"]  # no model, and no torch imported
