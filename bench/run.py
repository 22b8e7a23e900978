"""The benchmark, in one run on one machine: ``python -m bench.run`` (``make bench``).

1. The raw in-process pipeline (decode + preprocess + model + top-5 of a 500x375 JPEG) on every engine
   (onnxruntime fp32, OpenVINO fp32/bf16/int8, torch fp32/bf16), as one stream using every core and as one
   stream per core, one image and batches per forward pass; the best exact row (onnxruntime or OpenVINO, any
   layout and batch size) is the reference. ``--raw-only`` measures these rows alone.
2. The real server (uvicorn, the configured workers) driven over HTTP by wrk at several
   concurrencies: requests/s, p50/p95/p99, errors, mean batch size (from /metrics), the
   server's and wrk's CPU, and served / raw.
3. The same server with the trivial benchmark model (CLASSIFIER_WEIGHTS=trivial): the
   service's own CPU per request, and (bench.overhead) its cost per component.

It prints the tables and writes docs/benchmarks.md and docs/benchmark.png.
"""

import argparse
import base64
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import psutil
import requests

from tests.live.server import LiveServer

from .images import photo_jpeg
from .raw import RAW_ONLY
from .report import write_report

ROOT = Path(__file__).resolve().parents[1]
METRICS_TOKEN = "benchmark-metrics-token"


@dataclass
class RawResult:
    name: str
    engine: str
    precision: str
    exact: bool
    streams: int
    threads: int
    batch: int
    images_per_s: float
    cpu_ms_per_image: float


@dataclass
class LoadResult:
    concurrency: int
    requests: int
    requests_per_s: float
    p50_ms: float
    p95_ms: float
    p99_ms: float
    errors: int
    mean_batch: float
    server_cpu_ms_per_request: float
    wrk_cpu_share: float  # of all the CPU time used by server and wrk together
    engine: str = ""  # what served the default model, as /api/v2/models says (e.g. "openvino fp32")


def run_raw(*, engine: str, precision: str, streams: int, threads: int, seconds: float, batch: int) -> RawResult:
    """``streams`` concurrent ``bench.raw`` processes; their images/s added up."""
    command = [
        sys.executable,
        "-m",
        "bench.raw",
        "--engine",
        engine,
        "--precision",
        precision,
        "--threads",
        str(threads),
        "--seconds",
        str(seconds),
        "--batch",
        str(batch),
    ]
    processes = [subprocess.Popen(command, cwd=ROOT, stdout=subprocess.PIPE, text=True) for _ in range(streams)]
    outputs = [json.loads(p.communicate()[0].strip().splitlines()[-1]) for p in processes]
    name = (
        f"{RAW_ONLY.get(engine, engine)} {precision}, "
        + (
            f"one stream, {threads} threads"
            if streams == 1
            else f"{streams} streams (one per core), {threads} thread each"
        )
        + (", one image per pass" if batch == 1 else f", batches of {batch}")
    )
    if any(p.returncode for p in processes):
        raise RuntimeError(f"raw pipeline stream failed: {name}")
    images = sum(o["images"] for o in outputs)
    return RawResult(
        name=name,
        engine=outputs[0]["engine"],
        precision=outputs[0]["precision"],
        exact=outputs[0]["exact"],
        streams=streams,
        threads=threads,
        batch=batch,
        images_per_s=sum(o["images"] / o["seconds"] for o in outputs),
        cpu_ms_per_image=1000.0 * sum(o["cpu_seconds"] for o in outputs) / images,
    )


EXACT_BATCHES = (1, 4, 8, 16)  # the exact engines that can be the reference: every batch size the batcher uses
FAST_BATCHES = (1, 8)


def raw_engines(*, bf16: bool, openvino_bf16: bool) -> list[tuple[str, str, tuple[int, ...]]]:
    """(engine, precision, batch sizes) of the raw reference: the two fastest exact engines (onnxruntime and
    OpenVINO fp32) with every batch size, eager torch, the fast modes (torch bf16, OpenVINO bf16 where the CPU
    has it natively, OpenVINO int8) and the ways to run torch the service does not offer (bench.raw.RAW_ONLY)."""
    engines = [
        ("onnxruntime", "fp32", EXACT_BATCHES),
        ("openvino", "fp32", EXACT_BATCHES),
        ("torch", "fp32", FAST_BATCHES),
    ]
    engines += [("torch", "bf16", FAST_BATCHES)] if bf16 else []
    engines += [("openvino", "bf16", FAST_BATCHES)] if openvino_bf16 else []
    engines += [("openvino", "int8", FAST_BATCHES)]
    return engines + [(engine, "fp32", FAST_BATCHES) for engine in RAW_ONLY]


def raw_reference(
    cores: int, seconds: float, *, bf16: bool, openvino_bf16: bool, only: tuple[str, ...] = ()
) -> list[RawResult]:
    """Every engine of ``raw_engines`` (those named in ``only``, when given), each as one stream on every core
    and as one stream per core, with each of its batch sizes. The best exact row, whatever its engine, layout
    or batch size, is the reference."""
    engines = [e for e in raw_engines(bf16=bf16, openvino_bf16=openvino_bf16) if not only or e[0] in only]
    layouts = [(1, cores)] + ([(cores, 1)] if cores > 1 else [])
    results = []
    for engine, precision, batches in engines:
        for streams, threads in layouts:
            for batch in batches:
                results.append(
                    run_raw(
                        engine=engine,
                        precision=precision,
                        streams=streams,
                        threads=threads,
                        seconds=seconds,
                        batch=batch,
                    )
                )
                print(f"  {results[-1]}", flush=True)
    return results


def tree_cpu_seconds(pid: int) -> float:
    """CPU seconds used so far by a process and its living children."""
    parent = psutil.Process(pid)
    total = 0.0
    for process in [parent, *parent.children(recursive=True)]:
        try:
            times = process.cpu_times()
        except psutil.NoSuchProcess:
            continue
        total += times.user + times.system
    return total


def batch_totals(server: LiveServer) -> tuple[float, float]:
    """(images, forward passes) so far, summed over the server's workers."""
    text = requests.get(f"{server.url}/metrics", headers={"Authorization": f"Bearer {METRICS_TOKEN}"}, timeout=10).text

    def value(name: str) -> float:
        return sum(float(m) for m in re.findall(rf"^{name}\{{[^}}]*\}} (\S+)$", text, flags=re.M))

    return value("aiserver_batch_size_sum"), value("aiserver_batch_size_count")


def wrk(server: LiveServer | str, *, key: str, body_path: Path, concurrency: int, seconds: float) -> tuple[dict, float]:
    """Run wrk against v1 classify (or against the URL given); return its summary and its own CPU seconds."""
    url = server if isinstance(server, str) else f"{server.url}/api/v1/classify"
    command = [
        "wrk",
        "-t1",
        f"-c{concurrency}",
        f"-d{max(1, round(seconds))}s",
        "--timeout",
        "30s",
        "-s",
        str(ROOT / "bench" / "wrk_post.lua"),
        url,
    ]
    process = subprocess.Popen(
        command, stdout=subprocess.PIPE, text=True, env={**os.environ, "BENCH_KEY": key, "BENCH_BODY": str(body_path)}
    )
    output = process.stdout.read()
    _, status, usage = os.wait4(process.pid, 0)
    process.returncode = os.waitstatus_to_exitcode(status)
    if process.returncode:
        raise RuntimeError(f"wrk failed: {output}")
    line = next(line for line in output.splitlines() if line.startswith("BENCH_JSON "))
    return json.loads(line.removeprefix("BENCH_JSON ")), usage.ru_utime + usage.ru_stime


def drive(server: LiveServer, *, key: str, body_path: Path, concurrency: int, seconds: float) -> LoadResult:
    wrk(server, key=key, body_path=body_path, concurrency=concurrency, seconds=2)  # warm the connections
    images_before, batches_before = batch_totals(server)
    cpu_before = tree_cpu_seconds(server.process.pid)
    summary, wrk_cpu = wrk(server, key=key, body_path=body_path, concurrency=concurrency, seconds=seconds)
    server_cpu = tree_cpu_seconds(server.process.pid) - cpu_before
    images_after, batches_after = batch_totals(server)
    batches = batches_after - batches_before
    answered = max(summary["requests"], 1)
    return LoadResult(
        concurrency=concurrency,
        requests=summary["requests"],
        requests_per_s=summary["requests"] / (summary["duration_us"] / 1e6),
        p50_ms=summary["p50_us"] / 1000.0,
        p95_ms=summary["p95_us"] / 1000.0,
        p99_ms=summary["p99_us"] / 1000.0,
        errors=summary["status_errors"] + summary["socket_errors"],
        mean_batch=(images_after - images_before) / batches if batches else 0.0,
        server_cpu_ms_per_request=1000.0 * server_cpu / answered,
        wrk_cpu_share=wrk_cpu / (wrk_cpu + server_cpu) if server_cpu else 0.0,
        engine=served_engine(server, key),
    )


def served_engine(server: LiveServer, key: str) -> str:
    """The engine and precision of the server's default model (``auto``'s choice where it chose)."""
    answer = requests.get(f"{server.url}/api/v2/models", headers={"Authorization": f"Bearer {key}"}, timeout=10)
    model = next(model for model in answer.json()["models"] if model["default"])
    return f"{model['engine']} {model['precision']}"


def calibrated_resnet18(workdir: Path, *, images: int = 48) -> Path:
    """ResNet-18 (random weights, seeded) as a model folder with a calibration/ folder of ``images`` photo-like
    JPEGs (bench.images, one seed each): what int8 needs to compile (its calibration) and to be measured."""
    import torch
    import torchvision

    folder = workdir / "resnet18-calibrated"
    (folder / "calibration").mkdir(parents=True)
    torch.manual_seed(0)
    torch.save(torchvision.models.resnet18(weights=None).state_dict(), folder / "model.pt")
    (folder / "config.json").write_text(json.dumps({"architecture": "resnet18"}))
    (folder / "labels.json").write_text(json.dumps([f"class {index}" for index in range(1000)]))
    for seed in range(images):
        (folder / "calibration" / f"{seed:03d}.jpg").write_bytes(photo_jpeg(seed=seed + 1))
    return folder


# The fast modes served (OpenVINO): each one's settings. int8 compiles from a model folder with calibration images;
# on random weights the gate's agreement says nothing (bench.agreement measures it on a fitted model), so the
# threshold is off for it here and its measured numbers are reported as they are.
FAST_MODES = {
    "bf16": {"CLASSIFIER_ENGINE": "openvino", "CLASSIFIER_PRECISION": "bf16"},
    "int8": {"CLASSIFIER_ENGINE": "openvino", "CLASSIFIER_PRECISION": "int8", "CLASSIFIER_MIN_TOP1_AGREEMENT": "0"},
}


def fast_modes_served(
    workdir: Path, body_path: Path, *, workers: int, seconds: float, extra_env: dict, modes: list[str]
) -> list[dict]:
    """Each fast mode served at concurrency 16, with what its compile gate measured (/api/v2/models)."""
    rows = []
    for mode in modes:
        env = {**extra_env, **FAST_MODES[mode]}
        if mode == "int8":
            env["CLASSIFIER_MODELS"] = f"resnet18={calibrated_resnet18(workdir)}"
        server, key = start_server(workdir, workers=workers, weights="random", extra_env=env)
        try:
            load = drive(server, key=key, body_path=body_path, concurrency=16, seconds=seconds)
            described = requests.get(
                f"{server.url}/api/v2/models", headers={"Authorization": f"Bearer {key}"}, timeout=10
            ).json()["models"][0]
        finally:
            server.stop()
        print(f"  openvino {mode} c=16: {load}", flush=True)
        rows.append({"precision": mode, "served": asdict(load), "gate": described["compiled"].get("fast_mode")})
    return rows


def start_server(workdir: Path, *, workers: int, weights: str, extra_env: dict) -> tuple[LiveServer, str]:
    """A fresh server (its own database and metrics directory) with a key that is never throttled."""
    run_dir = Path(tempfile.mkdtemp(prefix=f"server-{weights}-", dir=workdir))
    metrics_dir = run_dir / "metrics"
    metrics_dir.mkdir()
    server = LiveServer(
        database_url=f"sqlite:///{run_dir / 'bench.sqlite3'}",
        weights=weights,
        workers=workers,
        extra_env={
            "CLASSIFIER_TORCH_THREADS": "0",  # the default: the process's cores / its batch workers
            "WEB_CONCURRENCY": str(workers),
            "CLASSIFIER_RESULT_CACHE_SECONDS": "0",  # every request runs the model: one image, sent again and again
            "METRICS_TOKEN": METRICS_TOKEN,
            "PROMETHEUS_MULTIPROC_DIR": str(metrics_dir),
            **extra_env,
        },
    ).start()
    return server, server.create_key("benchmark", rate_limit=10_000_000, window=60)


def serve_and_drive(
    workdir: Path, body_path: Path, *, workers: int, weights: str, concurrencies, seconds: float, extra_env: dict
) -> list[LoadResult]:
    server, key = start_server(workdir, workers=workers, weights=weights, extra_env=extra_env)
    try:
        results = []
        for concurrency in concurrencies:
            results.append(drive(server, key=key, body_path=body_path, concurrency=concurrency, seconds=seconds))
            print(f"  {weights} c={concurrency}: {results[-1]}", flush=True)
        return results
    finally:
        server.stop()


def agreement() -> list[dict]:
    """bench.agreement in its own process: each engine against eager fp32 on the test fixtures."""
    output = subprocess.run(
        [sys.executable, "-m", "bench.agreement"], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout
    return json.loads(output.strip().splitlines()[-1])["agreement"]


def component_costs(workdir: Path) -> dict:
    """bench.overhead in its own process (its own database, trivial model)."""
    env = {**os.environ, "DATABASE_URL": f"sqlite:///{workdir / 'overhead.sqlite3'}"}
    output = subprocess.run(
        [sys.executable, "-m", "bench.overhead"], cwd=ROOT, env=env, capture_output=True, text=True, check=True
    ).stdout
    return json.loads(output.strip().splitlines()[-1])


def machine() -> dict:
    import torch

    cpu = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        ),
        platform.processor(),
    )
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "gpu": gpu,
        "python": platform.python_version(),
        "torch": torch.__version__,
        "date": time.strftime("%Y-%m-%d"),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=15.0, help="per measurement")
    parser.add_argument("--workers", type=int, default=int(os.environ.get("WEB_CONCURRENCY", "1")))
    parser.add_argument("--concurrency", type=lambda v: [int(c) for c in v.split(",")], default=[1, 2, 4, 8, 16, 32])
    parser.add_argument("--batch-delay-ms", default=os.environ.get("CLASSIFIER_MAX_BATCH_DELAY_MS", "0"))
    parser.add_argument("--out", type=Path, default=ROOT / "docs")
    parser.add_argument("--raw-only", action="store_true", help="measure the raw pipelines only, print them")
    parser.add_argument(
        "--raw-engines",
        type=lambda v: v.split(","),
        default=[],
        help="only these raw engines, e.g. onnxruntime,openvino",
    )
    args = parser.parse_args()
    if not shutil.which("wrk") and not args.raw_only:
        sys.exit("wrk is not installed: apt-get install wrk (Debian/Ubuntu) or brew install wrk")
    cores = os.cpu_count() or 1
    extra_env = {"CLASSIFIER_MAX_BATCH_DELAY_MS": str(args.batch_delay_ms)}

    with tempfile.TemporaryDirectory(prefix="aiserver-bench-") as tmp:
        workdir = Path(tmp)
        body_path = workdir / "body.json"
        jpeg = photo_jpeg()
        body = json.dumps({"image": base64.b64encode(jpeg).decode(), "filename": "photo.jpg"})
        body_path.write_text(body)
        print(f"raw pipelines, every engine ({args.seconds:.0f} s each) ...", flush=True)
        import torch

        from classifier.runtime.openvino_engine import bf16_native
        from classifier.runtime.torch_engines import bf16_supported

        raw = raw_reference(
            cores,
            min(args.seconds, 10.0),
            bf16=bf16_supported(torch.device("cpu")),
            openvino_bf16=bf16_native(),
            only=tuple(args.raw_engines),
        )
        if args.raw_only:
            print(json.dumps({"raw": [asdict(r) for r in raw]}, indent=2))
            return
        print(
            f"served (default engine): {args.workers} worker(s), wrk at concurrency {args.concurrency} ...", flush=True
        )
        served = serve_and_drive(
            workdir,
            body_path,
            workers=args.workers,
            weights="random",
            concurrencies=args.concurrency,
            seconds=args.seconds,
            extra_env=extra_env,
        )
        print("comparison: one batch worker using every core ...", flush=True)
        one_worker = serve_and_drive(
            workdir,
            body_path,
            workers=args.workers,
            weights="random",
            concurrencies=[c for c in (1, 8, 16) if c in args.concurrency],
            seconds=args.seconds,
            extra_env={**extra_env, "CLASSIFIER_BATCH_WORKERS": "1"},
        )
        print("comparison: torch bf16 (inexact) ...", flush=True)
        bf16 = serve_and_drive(
            workdir,
            body_path,
            workers=args.workers,
            weights="random",
            concurrencies=[c for c in (16,) if c in args.concurrency],
            seconds=args.seconds,
            extra_env={**extra_env, "CLASSIFIER_ENGINE": "torch", "CLASSIFIER_PRECISION": "bf16"},
        )
        print("service overhead: trivial model ...", flush=True)
        trivial = serve_and_drive(
            workdir,
            body_path,
            workers=args.workers,
            weights="trivial",
            concurrencies=[8],
            seconds=args.seconds,
            extra_env=extra_env,
        )
        print("fast modes, served (OpenVINO) ...", flush=True)
        fast = fast_modes_served(
            workdir,
            body_path,
            workers=args.workers,
            seconds=args.seconds,
            extra_env=extra_env,
            modes=[mode for mode in FAST_MODES if mode != "bf16" or bf16_native()],
        )
        components = component_costs(workdir)
        agreements = agreement()

    run = {
        "machine": machine(),
        "workers": args.workers,
        "seconds": args.seconds,
        "jpeg_bytes": len(jpeg),
        "body_bytes": len(body),
        "settings": extra_env,
        "raw": [asdict(r) for r in raw],
        "served": [asdict(r) for r in served],
        "one_batch_worker": [asdict(r) for r in one_worker],
        "bf16_served": [asdict(r) for r in bf16],
        "fast_modes_served": fast,
        "trivial": [asdict(r) for r in trivial],
        "components": components,
        "agreement": agreements,
    }
    print(write_report(run, args.out))


if __name__ == "__main__":
    main()
