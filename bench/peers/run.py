"""The peers, side by side: ``python -m bench.peers.run`` (``make bench-peers``).

The same ResNet-18 (ONNX Runtime fp32 on the graph aiserver exports), the same JSON base64 body, the same wrk
load at one concurrency, on: a minimal FastAPI server (bench.peers.fastapi_app: no auth, no limits, no log),
LitServe with its batching (bench.peers.litserve_app) and aiserver with its defaults. A single run moves by
+-15% on a shared machine, so the servers take turns: each round starts every server in turn, warms it, measures
it and stops it, and the table gives each server's median over the rounds. Prints a markdown table and writes the
rounds to docs/benchmark-peers.json.
"""

import argparse
import base64
import contextlib
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import psutil
import requests

from bench.images import photo_jpeg
from bench.run import ROOT, start_server, tree_cpu_seconds, wrk
from tests.live.server import free_port

SERVERS = ("fastapi", "litserve", "aiserver")
TITLES = {
    "fastapi": "a minimal FastAPI server (no auth, no limits, no log)",
    "litserve": "LitServe (batching, max 16)",
    "aiserver": "aiserver, default",
    "aiserver-django": "aiserver, every request through Django (`API_LEAN_PATH=false`)",
    "aiserver-delay2": "aiserver, batcher waits 2 ms (`CLASSIFIER_MAX_BATCH_DELAY_MS=2`)",
    "aiserver-queued": "aiserver, every image handed to a batch worker (`CLASSIFIER_MAX_BATCH_DELAY_MS=0.001`)",
}
# aiserver's variants (--servers aiserver-django,...): the one step measured on its own against the default.
VARIANTS = {
    "aiserver": {},
    "aiserver-django": {"API_LEAN_PATH": "false"},
    "aiserver-delay2": {"CLASSIFIER_MAX_BATCH_DELAY_MS": "2"},
    # Any wait at all turns off running a lone image in its request thread (MicroBatcher.run_now).
    "aiserver-queued": {"CLASSIFIER_MAX_BATCH_DELAY_MS": "0.001"},
}


@dataclass
class Round:
    server: str
    round: int
    requests_per_s: float
    p50_ms: float
    p99_ms: float
    errors: int
    server_cpu_ms_per_request: float


class Peer:
    """A peer server in its own process group, started with $PEER_ONNX pointing at the exported graph."""

    def __init__(self, name: str, graph: Path):
        self.port = free_port()
        command = {
            "fastapi": [
                sys.executable,
                "-m",
                "uvicorn",
                "bench.peers.fastapi_app:app",
                "--port",
                str(self.port),
                "--log-level",
                "warning",
                "--no-access-log",
            ],
            "litserve": [sys.executable, "-m", "bench.peers.litserve_app", "--port", str(self.port)],
        }[name]
        self.process = subprocess.Popen(
            command,
            cwd=ROOT,
            env={**os.environ, "PEER_ONNX": str(graph)},
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        self.url = f"http://127.0.0.1:{self.port}/classify"
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"the {name} peer exited ({self.process.returncode})")
            try:
                if requests.get(f"http://127.0.0.1:{self.port}/health", timeout=2).ok:
                    return
            except requests.ConnectionError:
                pass
            time.sleep(0.5)
        self.stop()
        raise RuntimeError(f"the {name} peer did not become healthy")

    def stop(self) -> None:
        """Stop the server and every process it started (LitServe's workers outlived their parent and kept a
        core busy into the next server's round), whatever group they are in."""
        try:
            tree = [psutil.Process(self.process.pid), *psutil.Process(self.process.pid).children(recursive=True)]
        except psutil.NoSuchProcess:
            tree = []
        os.killpg(self.process.pid, signal.SIGTERM)
        for process in tree[1:]:
            with contextlib.suppress(psutil.NoSuchProcess):
                process.terminate()
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()
        _, alive = psutil.wait_procs(tree, timeout=15)
        for process in alive:
            with contextlib.suppress(psutil.NoSuchProcess):
                process.kill()
        psutil.wait_procs(alive, timeout=15)


def wait_for_quiet(*, busy_percent: float = 25.0, patience_s: float = 60.0) -> float:
    """Wait (at most ``patience_s``) until the machine's CPU is mostly idle over a second, so that what the last
    server left running does not weigh on the next one's round; returns the last second's CPU percent."""
    deadline = time.monotonic() + patience_s
    busy = psutil.cpu_percent(interval=1.0)
    while busy > busy_percent and time.monotonic() < deadline:
        busy = psutil.cpu_percent(interval=1.0)
    return busy


def variant_env(name: str) -> dict[str, str]:
    """The settings of an aiserver variant: a named one (VARIANTS), or ``aiserver+NAME=VALUE+...`` for a trial
    (``WEB_CONCURRENCY`` among them sets the number of worker processes)."""
    base, *pairs = name.split("+")
    return {**VARIANTS[base], **dict(pair.split("=", 1) for pair in pairs)}


def export_graph(path: Path) -> Path:
    """ResNet-18 (random weights: the pretrained ones' compute) as aiserver exports it."""
    from classifier.runtime.artifacts import load_artifact
    from classifier.runtime.sources import ModelSource
    from classifier.runtime.torch_engines import export_onnx

    artifact = load_artifact(ModelSource(name="resnet18", architecture="resnet18", weights="random"))
    path.write_bytes(export_onnx(artifact))
    return path


def measure(
    name: str, number: int, *, workdir: Path, graph: Path, body_path: Path, concurrency: int, seconds: float
) -> Round:
    idle = wait_for_quiet()
    if idle > 25.0:
        print(f"  the machine is still {idle:.0f}% busy before {name}'s round {number}", flush=True)
    if name.startswith("aiserver"):
        settings = variant_env(name)
        workers = int(settings.pop("WEB_CONCURRENCY", "1"))  # aiserver+WEB_CONCURRENCY=2: worker processes
        server, key = start_server(workdir, workers=workers, weights="random", extra_env=settings)
        assert server.process is not None  # started
        url, pid, stop = f"{server.url}/api/v1/classify", server.process.pid, server.stop
    else:
        peer = Peer(name, graph)
        key, url, pid, stop = "none", peer.url, peer.process.pid, peer.stop
    try:
        wrk(url, key=key, body_path=body_path, concurrency=concurrency, seconds=2)  # warm the connections
        cpu_before = tree_cpu_seconds(pid)
        summary, _ = wrk(url, key=key, body_path=body_path, concurrency=concurrency, seconds=seconds)
        cpu = tree_cpu_seconds(pid) - cpu_before
    finally:
        stop()
    answered = max(summary["requests"], 1)
    return Round(
        server=name,
        round=number,
        requests_per_s=summary["requests"] / (summary["duration_us"] / 1e6),
        p50_ms=summary["p50_us"] / 1000.0,
        p99_ms=summary["p99_us"] / 1000.0,
        errors=summary["status_errors"] + summary["socket_errors"],
        server_cpu_ms_per_request=1000.0 * cpu / answered,
    )


def table(rounds: list[Round], concurrency: int) -> str:
    lines = [
        f"| server (median of {max(r.round for r in rounds)} interleaved rounds, concurrency {concurrency}) | "
        "requests/s | p50 / p99 ms | server CPU ms/request | errors | every round's requests/s |",
        "|---|---:|---:|---:|---:|---|",
    ]
    for name in dict.fromkeys([*TITLES, *(r.server for r in rounds)]):
        mine = [r for r in rounds if r.server == name]
        if not mine:
            continue

        def median(field: str, rows: list[Round] = mine) -> float:
            return statistics.median(getattr(r, field) for r in rows)

        lines.append(
            f"| {TITLES.get(name, name)} | {median('requests_per_s'):.1f} | {median('p50_ms'):.0f} / {median('p99_ms'):.0f} | "
            f"{median('server_cpu_ms_per_request'):.1f} | {sum(r.errors for r in mine)} | "
            f"{', '.join(f'{r.requests_per_s:.1f}' for r in mine)} |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=15.0)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--servers", type=lambda v: v.split(","), default=list(SERVERS))
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "benchmark-peers.json")
    args = parser.parse_args()
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "aiserver.settings")
    os.environ.setdefault("DJANGO_DEBUG", "true")
    rounds = []
    with tempfile.TemporaryDirectory(prefix="aiserver-peers-") as tmp:
        workdir = Path(tmp)
        graph = export_graph(workdir / "resnet18.onnx")
        body_path = workdir / "body.json"
        body_path.write_text(json.dumps({"image": base64.b64encode(photo_jpeg()).decode(), "filename": "photo.jpg"}))
        for number in range(1, args.rounds + 1):
            for name in args.servers:
                rounds.append(
                    measure(
                        name,
                        number,
                        workdir=workdir,
                        graph=graph,
                        body_path=body_path,
                        concurrency=args.concurrency,
                        seconds=args.seconds,
                    )
                )
                print(f"  {rounds[-1]}", flush=True)
    args.out.write_text(json.dumps([asdict(r) for r in rounds], indent=2) + "\n")
    print(table(rounds, args.concurrency))


if __name__ == "__main__":
    main()
