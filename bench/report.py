"""Turn one benchmark run into docs/benchmarks.md (tables) and docs/benchmark.png (the chart)."""

import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402 - after choosing the headless backend


def write_report(run: dict, out: Path) -> str:
    """Write the markdown, the chart and the run's raw JSON under ``out``; return the markdown."""
    out.mkdir(parents=True, exist_ok=True)
    reference = best_exact(run["raw"])["images_per_s"]
    markdown = "\n".join(
        [
            *_header(run),
            *_raw_table(run, reference),
            *_served_table(run, reference),
            *_comparison(
                run, reference, "one_batch_worker", "one batch worker using every core (`CLASSIFIER_BATCH_WORKERS=1`)"
            ),
            *_comparison(
                run,
                reference,
                "bf16_served",
                "torch bf16, served (`CLASSIFIER_ENGINE=torch CLASSIFIER_PRECISION=bf16`; inexact)",
            ),
            *_fast_modes(run, reference),
            *_overhead(run),
            "",
            *_draft_sections(out),
        ]
    )
    (out / "benchmarks.md").write_text(markdown)
    (out / "benchmark.json").write_text(json.dumps(run, indent=2) + "\n")
    _chart(run, reference, out / "benchmark.png")
    return markdown


def _draft_sections(out: Path) -> list[str]:
    """bench.draft's sections (draft decoding, library models), kept from its last ``--write``."""
    saved = out / "benchmark-draft.json"
    if not saved.is_file():
        return []
    from .draft import markdown

    return markdown(json.loads(saved.read_text()))


def best_exact(raw: list[dict]) -> dict:
    """The fastest raw row whose answers equal eager fp32's (within 1e-4): the reference "of raw" is against."""
    return max((r for r in raw if r.get("exact", True)), key=lambda r: r["images_per_s"])


def _header(run: dict) -> list[str]:
    m = run["machine"]
    return [
        "# Benchmarks",
        "",
        "Written by `make bench` (`python -m bench.run`); every number below comes from one run on one machine.",
        "How to read it, and the design choices it supports: [How it works and performance](performance.md).",
        "",
        f"- Machine: {m['cpu']}, {m['cores']} cores, {_gpu(m)}; Python {m['python']}, torch {m['torch']}; {m['date']}.",
        f"- Input: a {run['jpeg_bytes'] // 1000} KB 500x375 JPEG sent as JSON base64 ({run['body_bytes'] // 1000} KB body) "
        "to `POST /api/v1/classify`; ResNet-18 (random weights: same compute as the pretrained ones); result cache off.",
        f"- Server: uvicorn with {run['workers']} worker process(es), SQLite (WAL), the default engine "
        f"(`CLASSIFIER_ENGINE=auto`, which measured the exact engines when compiling and serves {_engine(run)}), "
        "default batching (one batch worker thread per core "
        "of the process, one engine thread each), "
        f"settings {run['settings']}; load from `wrk` (one thread) on the same machine; {run['seconds']:.0f} s per point.",
        "",
    ]


def _engine(run: dict) -> str:
    engines = sorted({row.get("engine") or "?" for row in run["served"]})
    return " and ".join(engines)


def _gpu(machine: dict) -> str:
    gpu = machine.get("gpu")
    return f"GPU {gpu} (model on CUDA, half precision)" if gpu else "no GPU (none was lent to this run)"


def _raw_table(run: dict, reference: float) -> list[str]:
    best = best_exact(run["raw"])
    rows = [
        f"| {r['name']} | {'yes' if r.get('exact', True) else '**no**'} | {r['images_per_s']:.1f} | "
        f"{r['cpu_ms_per_image']:.1f} | {_measured_agreement(run, r)} |"
        for r in sorted(run["raw"], key=lambda r: -r["images_per_s"])
    ]
    return [
        "## Raw pipelines (the physical reference)",
        "",
        "decode + preprocess + engine + top-5 in-process, no server, on every engine this machine has, fastest "
        "first. *Exact* engines agree with eager fp32 torch within 1e-4 (see *Agreement*); the reference is the "
        "fastest exact row, whatever the engine (onnxruntime or OpenVINO), the layout or the batch size. A fast "
        "mode's agreement is measured where it means something (*Agreement*: the fitted shapes CNN for OpenVINO, "
        "the known-answer pictures for torch bf16); ResNet-18 here has random weights, so only its speed counts.",
        "",
        "| pipeline | exact | images/s | CPU ms per image | top-1 agreement with fp32 |",
        "|---|---|---:|---:|---:|",
        *rows,
        "",
        f"**Reference: {reference:.1f} images/s ({best['name']}).**",
        "",
        *_agreement(run),
    ]


def _measured_agreement(run: dict, raw: dict) -> str:
    """The top-1 agreement measured for a raw row's engine and precision (bench.agreement), on the fixture where
    the fast modes mean most: the fitted shapes CNN, else the known-answer pictures."""
    if raw.get("exact", True):
        return "exact"
    found = [a for a in run.get("agreement", []) if a["engine"] == raw["engine"] and a["precision"] == raw["precision"]]
    if not found:
        return "-"
    best = next((a for a in found if a["fixture"].startswith("coloured shapes")), found[0])
    return f"{100 * best['top1_agreement']:.1f}% ({best['fixture'].split(',')[0]})"


def _agreement(run: dict) -> list[str]:
    if not run.get("agreement"):
        return []
    return [
        "### Agreement with eager fp32 torch",
        "",
        "On the test fixtures (`bench.agreement`): the known-answer pictures on the test weights, and the reference "
        "comparison's asymmetric pictures on the probe weights; and for the fast modes, a small CNN fitted in the "
        "run to coloured shapes (`tests/runtime/shapes.py`), int8 calibrated on 64 shape pictures and, deliberately "
        "poorly, on flat grey ones. With 4 classes the top-5 overlap is always 100%.",
        "",
        "| fixture | engine | images | top-1 agreement | top-5 overlap | largest confidence difference |",
        "|---|---|---:|---:|---:|---:|",
        *[
            f"| {a['fixture']} | {a['engine']} {a['precision']} | {a['images']} | {100 * a['top1_agreement']:.1f}% | "
            f"{100 * a.get('top5_overlap', 1.0):.0f}% | {a['max_confidence_difference']:.2g} |"
            for a in run["agreement"]
        ],
        "",
    ]


def _comparison(run: dict, reference: float, key: str, title: str) -> list[str]:
    """One served comparison run (``run[key]``) as its own table, when the run has it."""
    if not run.get(key):
        return []
    return [f"### For comparison: {title}", "", *_LOAD_HEADER, *_load_rows(run[key], reference), ""]


_LOAD_HEADER = [
    "| concurrency | requests/s | of raw | p50 ms | p95 ms | p99 ms | p99/p50 | errors | mean batch | "
    "server CPU ms/request | wrk's CPU share |",
    "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
]


def _load_rows(results: list[dict], reference: float) -> list[str]:
    return [
        f"| {r['concurrency']} | {r['requests_per_s']:.1f} | {100 * r['requests_per_s'] / reference:.0f}% | "
        f"{r['p50_ms']:.0f} | {r['p95_ms']:.0f} | {r['p99_ms']:.0f} | {r['p99_ms'] / r['p50_ms']:.2f} | {r['errors']} | "
        f"{r['mean_batch']:.2f} | {r['server_cpu_ms_per_request']:.1f} | {100 * r['wrk_cpu_share']:.1f}% |"
        for r in results
    ]


def _served_table(run: dict, reference: float) -> list[str]:
    at16 = next((r for r in run["served"] if r["concurrency"] == 16), None)
    verdict = (
        f"At concurrency 16: {100 * at16['requests_per_s'] / reference:.0f}% of the best exact raw pipeline "
        f"(target: at least 90%), p99 {at16['p99_ms'] / at16['p50_ms']:.2f}x p50 (target: under 3x), "
        f"{at16['errors']} errors (target: 0)."
        if at16
        else "Concurrency 16 was not measured in this run."
    )
    return [
        "## Served over HTTP",
        "",
        verdict,
        "",
        *_LOAD_HEADER,
        *_load_rows(run["served"], reference),
        "",
        "![throughput and p99 latency against concurrency](benchmark.png)",
        "",
    ]


def _fast_modes(run: dict, reference: float) -> list[str]:
    """Each fast mode served at concurrency 16: against its own best raw pipeline and the exact served rate, with
    what its compile gate measured."""
    rows = run.get("fast_modes_served")
    if not rows:
        return []
    exact = next((r for r in run["served"] if r["concurrency"] == 16), None)
    lines = []
    for row in rows:
        served, gate = row["served"], row.get("gate") or {}
        own = [r for r in run["raw"] if r["engine"] == "openvino" and r["precision"] == row["precision"]]
        own_best = max((r["images_per_s"] for r in own), default=0.0)
        agreement = gate.get("agreement", {})
        lines.append(
            f"| openvino {row['precision']} | {served['requests_per_s']:.1f} | {own_best:.1f} | "
            f"{100 * served['requests_per_s'] / own_best:.0f}% | "
            f"{served['requests_per_s'] / exact['requests_per_s']:.2f}x | "
            f"{100 * served['requests_per_s'] / reference:.0f}% | {served['p50_ms']:.0f} / {served['p99_ms']:.0f} | "
            f"{served['errors']} | {100 * agreement.get('top1', 0):.1f}% / {100 * agreement.get('top5_overlap', 0):.0f}% / "
            f"{agreement.get('max_confidence_difference', 0):.2g} on {gate.get('images', '-')} |"
            if own_best and exact
            else f"| openvino {row['precision']} | {served['requests_per_s']:.1f} | - | - | - | - | - | - | - |"
        )
    return [
        "### Fast modes, served (OpenVINO, inexact)",
        "",
        "Each mode served by one worker at concurrency 16, against its own best raw pipeline (the same engine and "
        "precision, any layout and batch size) and against the exact default served above (*x exact*), with what "
        "its compile gate measured against fp32 (top-1 agreement / top-5 overlap / largest confidence difference, "
        "and on which images). ResNet-18 has random weights here, so the gate's agreement on it is no guide: "
        "*Agreement* above has the fast modes on a fitted model. int8 is calibrated on 48 photo-like JPEGs in the "
        "model folder's calibration/ (its threshold off for this run); bf16 measures on the gate's generated pictures.",
        "",
        "| mode | requests/s | own raw images/s | of own raw | x exact served | of exact raw | p50 / p99 ms | errors | "
        "gate: top-1 / top-5 / largest difference |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---|",
        *lines,
        "",
    ]


def _overhead(run: dict) -> list[str]:
    trivial = run["trivial"][0]
    components = run["components"]["components_cpu_ms"]
    profile = run["components"]["profile"]
    return [
        "## The service's own cost (trivial model)",
        "",
        *_overhead_targets(run["components"].get("targets")),
        f"With `CLASSIFIER_WEIGHTS=trivial` (a 3x1000 linear layer in place of ResNet-18) at concurrency "
        f"{trivial['concurrency']}: {trivial['requests_per_s']:.0f} requests/s, "
        f"{trivial['server_cpu_ms_per_request']:.2f} ms of server CPU per request "
        f"(wrk took {100 * trivial['wrk_cpu_share']:.1f}% of the CPU), p50 {trivial['p50_ms']:.1f} ms, "
        f"p99 {trivial['p99_ms']:.1f} ms, {trivial['errors']} errors.",
        "",
        "Per component, in-process (CPU ms per call):",
        "",
        "| component | CPU ms |",
        "|---|---:|",
        *[f"| {name} | {ms:.3f} |" for name, ms in components.items()],
        "",
        "Where a whole request's time goes (cProfile, own time per request, top functions):",
        "",
        "| function | own ms | cumulative ms | calls |",
        "|---|---:|---:|---:|",
        *[
            f"| `{row['function']}` | {row['own_ms']:.3f} | {row['cumulative_ms']:.3f} | {row['calls']:.1f} |"
            for row in profile
        ],
        "",
    ]


def _overhead_targets(targets: dict | None) -> list[str]:
    """The two held-to figures of bench.overhead: least of its rounds, median in brackets."""
    if not targets:
        return []

    def row(label: str, name: str, target: float, unit: str) -> str:
        least, median = targets[name], targets[f"{name}_median"]
        hot, hot_median = targets[f"{name}_hot_loop_references"], targets[f"{name}_hot_loop_references_median"]
        met = "met" if least <= target else "not met"
        return f"| {label} | **{least:.3f}** ({median:.3f}) | {target} {unit} | {met} | {hot:.3f} ({hot_median:.3f}) |"

    return [
        "Held to (`bench.overhead`, in-process through the ASGI application, the lean path in front of Django: the "
        "CPU of every thread less the CPU those requests spent in decoding, preprocessing and the trivial model's "
        "forward passes, measured where it ran; least of its rounds, median in brackets; the last column subtracts "
        "references timed apart in hot loops instead, as before):",
        "",
        "| figure | CPU ms | target | | against hot-loop references |",
        "|---|---:|---:|---|---:|",
        row("a v1 request", "v1_overhead_ms", targets["v1_target_ms"], "ms"),
        row("an image of a v2 batch of 16", "v2_overhead_ms_per_image", targets["v2_target_ms_per_image"], "ms"),
        "",
    ]


def _chart(run: dict, reference: float, path: Path) -> None:
    served = run["served"]
    concurrency = [r["concurrency"] for r in served]
    figure, throughput = plt.subplots(figsize=(7, 4), dpi=120)
    throughput.plot(
        concurrency, [r["requests_per_s"] for r in served], "o-", color="tab:blue", label="served requests/s"
    )
    throughput.axhline(reference, color="tab:blue", linestyle="--", label=f"best exact raw pipeline {reference:.1f}/s")
    throughput.set_xscale("log", base=2)
    throughput.set_xticks(concurrency, [str(c) for c in concurrency])
    throughput.set_xlabel("concurrent connections (wrk)")
    throughput.set_ylabel("requests/s", color="tab:blue")
    throughput.set_ylim(bottom=0)
    latency = throughput.twinx()
    latency.plot(concurrency, [r["p99_ms"] for r in served], "s-", color="tab:red", label="p99 latency")
    latency.set_ylabel("p99 ms", color="tab:red")
    latency.set_ylim(bottom=0)
    lines = throughput.get_legend_handles_labels()[0] + latency.get_legend_handles_labels()[0]
    figure.legend(lines, [line.get_label() for line in lines], loc="upper left", bbox_to_anchor=(0.12, 0.88))
    throughput.set_title(f"aiserver, ResNet-18 on {run['machine']['cores']} CPU cores, {run['workers']} worker(s)")
    figure.tight_layout()
    figure.savefig(path)
    plt.close(figure)


if __name__ == "__main__":  # re-render from a saved run: python -m bench.report docs/benchmark.json
    import sys

    saved = Path(sys.argv[1])
    print(write_report(json.loads(saved.read_text()), saved.parent))
