"""classifier.checks: with DJANGO_DEBUG off the server refuses to start until static files are collected."""

import json
import subprocess
import sys
from pathlib import Path

import pytest
from django.core.exceptions import ImproperlyConfigured
from django.core.management import call_command
from django.core.management.base import SystemCheckError
from django.test import override_settings

from classifier.checks import run_start_checks, static_files_collected

ROOT = Path(__file__).resolve().parents[2]
MANIFEST_STORAGE = {"staticfiles": {"BACKEND": "whitenoise.storage.CompressedManifestStaticFilesStorage"}}


def production_static(root: Path):
    """The production static storage (settings with DJANGO_DEBUG off) over ``root``."""
    return override_settings(STORAGES=MANIFEST_STORAGE, STATIC_ROOT=root, WHITENOISE_USE_FINDERS=False)


def test_uncollected_static_files_are_an_error_naming_collectstatic(tmp_path):
    with production_static(tmp_path):
        [error] = static_files_collected()
        with pytest.raises(ImproperlyConfigured, match="collectstatic"):
            run_start_checks()

    assert error.id == "classifier.E001" and "staticfiles.json" in error.msg and "collectstatic" in error.hint


def test_a_manifest_older_than_the_static_files_is_an_error(static_manifest_root, tmp_path):
    manifest = json.loads((static_manifest_root / "staticfiles.json").read_text())
    del manifest["paths"]["classifier/try.js"]  # added to the app after collectstatic ran
    (tmp_path / "staticfiles.json").write_text(json.dumps(manifest))
    with production_static(tmp_path):
        [error] = static_files_collected()

    assert error.id == "classifier.E002" and "classifier/try.js" in error.msg


def test_collected_static_files_pass(static_manifest_root):
    with production_static(static_manifest_root):
        assert static_files_collected() == []
        run_start_checks()  # raises nothing


def test_debug_storage_needs_no_collectstatic(tmp_path):
    with override_settings(STATIC_ROOT=tmp_path):  # tests' settings: the plain storage, as with DJANGO_DEBUG on
        assert static_files_collected() == []


def test_check_deploy_runs_the_check(tmp_path):
    with production_static(tmp_path), pytest.raises(SystemCheckError, match="classifier.E001"):
        call_command("check", "--deploy", "--tag", "static_files_collected")


def test_the_asgi_application_refuses_to_start_without_collected_static_files(tmp_path):
    env = {
        "PATH": "/usr/bin:/bin",
        "DJANGO_SETTINGS_MODULE": "aiserver.settings",
        "DJANGO_DEBUG": "false",
        "DJANGO_SECRET_KEY": "check-test-secret",
        "DJANGO_STATIC_ROOT": str(tmp_path),
    }
    result = subprocess.run(
        [sys.executable, "-c", "import aiserver.asgi"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120
    )

    assert result.returncode != 0
    assert "Static files have not been collected" in result.stderr and "collectstatic --noinput" in result.stderr
