"""The compiling child's sandbox (classifier.runtime.sandbox), for real: a child process is started each time."""

import os
import subprocess
import sys

import pytest

from classifier.runtime.registry import Runtime, validate_folder
from classifier.runtime.sandbox import PASSED_ENVIRONMENT, PROJECT_ROOT, SandboxLimits, run_in_sandbox
from classifier.runtime_settings import runtime_config

SECRETS = {"DJANGO_SECRET_KEY": "sekrit", "DATABASE_URL": "postgresql://u:p@db/x", "METRICS_TOKEN": "tok"}


@pytest.fixture
def probed(tmp_path, monkeypatch):
    for name, value in SECRETS.items():
        monkeypatch.setenv(name, value)
    outside = tmp_path / "project" / "planted.pth"
    outside.parent.mkdir()
    result = run_in_sandbox({"probe": str(outside), "threads": 1}, limits=SandboxLimits(memory_bytes=3 << 30))
    return result.report, outside


def test_the_compiling_child_gets_no_secret_and_no_write_outside_its_directory(probed):
    report, outside = probed
    assert not set(SECRETS) & set(report["environment"])
    allowed = set(PASSED_ENVIRONMENT) | {"HOME", "TMPDIR", "PYTHONPATH", "PYTHONDONTWRITEBYTECODE", "HF_HUB_OFFLINE"}
    allowed |= {"TRANSFORMERS_OFFLINE", "OMP_NUM_THREADS", "LC_CTYPE"}
    assert set(report["environment"]) <= allowed
    assert report["write_outside_refused"] is True and not outside.exists()
    assert report["cwd"] != os.getcwd() and "aiserver-compile-" in report["cwd"]


def test_the_compiling_child_runs_under_its_resource_limits(probed):
    report, _ = probed
    assert report["address_space"] == 3 << 30
    assert report["open_files"] == SandboxLimits().open_files


def test_the_gate_compiles_in_the_sandbox_and_activation_then_only_loads(flower_folders, settings, tmp_path):
    settings.CLASSIFIER_ENGINE_CACHE_DIR = tmp_path / "compiled"
    report = validate_folder(flower_folders["state_dict"], runtime_config())
    assert report["passed"], report["summary"]
    assert report["sandbox"] == {"landlock": True}
    assert (tmp_path / "compiled" / report["artifact_key"] / "manifest.json").is_file()
    settings.CLASSIFIER_MODELS = {"flowers": str(flower_folders["state_dict"])}
    settings.CLASSIFIER_MODEL = "flowers"
    runtime = Runtime(runtime_config)
    slot = runtime.load_slot(runtime.sources()[0])
    assert slot.status == "loaded" and slot.model.provenance == "loaded compiled"
    assert slot.model.artifact_key == report["artifact_key"]


EXITS_MID_COMPILE = """
import os, sys, tempfile, threading
from classifier.runtime import sandbox

started = threading.Event()

def compiling(*args, **kwargs):  # the child never finishes: the process exits while it runs
    started.set()
    threading.Event().wait()

sandbox.subprocess.run = compiling
threading.Thread(target=sandbox.run_in_sandbox, args=({},), kwargs={"limits": sandbox.SandboxLimits()}, daemon=True).start()
started.wait(60)
print(len(os.listdir(tempfile.gettempdir())))  # its scratch folder
sys.exit(0)
"""


def test_a_process_that_exits_mid_compile_leaves_no_scratch_folder(tmp_path):
    temporary = tmp_path / "tmp"
    temporary.mkdir()
    environment = {**os.environ, "TMPDIR": str(temporary), "PYTHONPATH": str(PROJECT_ROOT)}
    finished = subprocess.run(
        [sys.executable, "-c", EXITS_MID_COMPILE], env=environment, cwd=PROJECT_ROOT, capture_output=True, text=True
    )
    assert finished.returncode == 0 and finished.stdout.strip() == "1", finished.stderr  # it was compiling
    assert not list(temporary.iterdir())
