"""A serving worker with its model compiled holds no torch (read from the worker's own memory map, not mocked),
is a fraction of the size of one that imports torch, and is ready within seconds; management commands start
without torch. The numbers are printed for docs/benchmarks.md; the asserts are about what was loaded."""

import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest
import requests

from tests.live.server import ROOT, LiveServer
from tests.model_weights import picture

pytestmark = pytest.mark.live


def serving_workers(server: LiveServer) -> list[psutil.Process]:
    children = psutil.Process(server.process.pid).children()
    return [child for child in children if "resource_tracker" not in " ".join(child.cmdline())]


def maps_torch(process: psutil.Process) -> bool:
    """Whether torch's native library is mapped into the process (it is from its import on)."""
    return "libtorch" in Path(f"/proc/{process.pid}/maps").read_text()


@pytest.mark.timeout(600)
def test_workers_serving_a_compiled_model_never_import_torch(tmp_path, weights_path):
    store = tmp_path / "compiled"
    server = LiveServer(
        database_url=f"sqlite:///{tmp_path / 'db.sqlite3'}",
        weights=str(weights_path),
        workers=2,
        extra_env={"CLASSIFIER_ENGINE_CACHE_DIR": str(store), "CLASSIFIER_MAX_BATCH_DELAY_MS": "0"},
    )
    server.manage("migrate", "--noinput")
    server.manage("compile_models")  # what a deployment runs once (the container's migrate step does)
    started = time.monotonic()
    server.start()
    ready_seconds = time.monotonic() - started
    try:
        workers = serving_workers(server)
        assert len(workers) == 2 and not any(maps_torch(worker) for worker in workers)
        key = server.create_key("compiled", rate_limit=1000)
        for _ in range(4):  # both workers answer ...
            answer = requests.post(
                f"{server.url}/api/v1/classify",
                headers={"Authorization": f"Bearer {key}"},
                timeout=30,
                files={"file": ("goldfish.jpg", picture("goldfish"), "image/jpeg")},
            )
            assert answer.status_code == 200 and answer.json()["predictions"][0]["label"] == "goldfish"
        model = requests.get(f"{server.url}/api/v2/models", timeout=10).json()["models"][0]
        assert model["compiled"]["provenance"] == "loaded compiled"
        assert model["engine"] in ("onnxruntime", "openvino") and model["exact"]  # auto: the exact engine it measured
        assert not any(maps_torch(worker) for worker in serving_workers(server))  # ... and still holds no torch
        rss = sorted(round(worker.memory_info().rss / 2**20) for worker in serving_workers(server))
        print(f"\ncompiled model: ready in {ready_seconds:.1f} s (migrate and start included); worker RSS MB {rss}")
    finally:
        server.stop()


def test_a_management_command_starts_without_torch():
    program = (
        "import sys, time\n"
        "started = time.perf_counter()\n"
        "import django, os\n"
        "os.environ.setdefault('DJANGO_SETTINGS_MODULE', 'aiserver.settings')\n"
        "django.setup()\n"
        "from django.core.management import call_command\n"
        "call_command('check')\n"
        "print('torch' in sys.modules, round(time.perf_counter() - started, 2))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", program],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env={"PATH": "/usr/bin:/bin", "DJANGO_DEBUG": "true"},
        check=True,
    )
    torch_imported, seconds = result.stdout.split()[-2:]
    print(f"\ndjango.setup() and check: {seconds} s")
    assert torch_imported == "False"
