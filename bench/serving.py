"""What a serving process costs with its model compiled: resident memory per worker for 1, 2 and 4 workers, the
time from start to ready, and a management command's start-up (``python -m bench.serving``).

Each run uses its own SQLite database and artifact store; the model is compiled once first (``compile_models``),
as a deployment's deploy step does, so the servers only load the artifact. Prints one JSON line per measurement
and a Markdown table (docs/benchmarks.md, "Serving processes").
"""

import argparse
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil
import requests

ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def environment(scratch: Path, weights: str) -> dict:
    return {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "aiserver.settings",
        "DJANGO_SECRET_KEY": "bench-secret",
        "DJANGO_DEBUG": "false",
        "DJANGO_ALLOWED_HOSTS": "127.0.0.1",
        "DATABASE_URL": f"sqlite:///{scratch / 'db.sqlite3'}",
        "CLASSIFIER_WEIGHTS": weights,
        "CLASSIFIER_ENGINE_CACHE_DIR": str(scratch / "compiled"),
        "DJANGO_STATIC_ROOT": str(scratch / "static"),
    }


def manage(env: dict, *args: str) -> float:
    """Run a management command; return its wall-clock seconds."""
    started = time.perf_counter()
    subprocess.run([sys.executable, "manage.py", *args], cwd=ROOT, env=env, check=True, capture_output=True)
    return time.perf_counter() - started


def serve(env: dict, workers: int, timeout: float = 180.0) -> dict:
    """Start uvicorn with ``workers``; wait until every worker answers /readyz; measure, stop."""
    port = free_port()
    started = time.perf_counter()
    process = subprocess.Popen(
        [sys.executable, "-m", "uvicorn", "aiserver.asgi:application", "--port", str(port), "--workers", str(workers)],
        cwd=ROOT,
        env={**env, "WEB_CONCURRENCY": str(workers)},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        streak = 0
        while streak < 6 * workers:
            if time.perf_counter() - started > timeout:
                raise RuntimeError("the server did not become ready")
            try:
                ok = requests.get(f"http://127.0.0.1:{port}/readyz", timeout=5).status_code == 200
            except requests.ConnectionError:
                ok = False
            streak = streak + 1 if ok else 0
            if not ok:
                time.sleep(0.05)
        ready = time.perf_counter() - started
        time.sleep(1.0)  # let the heap settle after loading
        children = [
            child
            for child in psutil.Process(process.pid).children()
            if "resource_tracker" not in " ".join(child.cmdline())
        ]
        rss = sorted(round(child.memory_info().rss / 2**20) for child in children)
        torch = any("libtorch" in Path(f"/proc/{child.pid}/maps").read_text() for child in children)
        return {"workers": workers, "ready_seconds": round(ready, 2), "worker_rss_mb": rss, "torch_mapped": torch}
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(60)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--weights", default="random", help="CLASSIFIER_WEIGHTS (random: no download)")
    parser.add_argument("--workers", default="1,2,4")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-serving-") as scratch:
        env = environment(Path(scratch), args.weights)
        manage(env, "migrate", "--noinput")
        manage(env, "collectstatic", "--noinput")
        compile_seconds = manage(env, "compile_models")
        command_seconds = manage(env, "create_api_key", "--name", "bench")
        rows = [serve(env, int(count)) for count in args.workers.split(",")]
    print(
        json.dumps(
            {"compile_models_seconds": round(compile_seconds, 1), "create_api_key_seconds": round(command_seconds, 2)}
        )
    )
    for row in rows:
        print(json.dumps(row))
    print("\n| workers | ready after start (s) | RSS per worker (MB) | torch in a worker |\n|---:|---:|---|---|")
    for row in rows:
        rss = ", ".join(str(value) for value in row["worker_rss_mb"])
        print(f"| {row['workers']} | {row['ready_seconds']} | {rss} | {'yes' if row['torch_mapped'] else 'no'} |")
    print(
        f"\n`create_api_key` start to finish: {command_seconds:.2f} s; `compile_models` (once): {compile_seconds:.1f} s"
    )


if __name__ == "__main__":
    main()
