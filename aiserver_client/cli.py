"""``python -m aiserver_client classify|usage|models``: the v2 API from a terminal.

Exit status: 0 all done, 1 some images failed, 2 the run could not be done (bad arguments,
bad key, server unreachable).
"""

import argparse
import json
import os
import sys

from .client import ApiError, Client, FileResult, collect_files

URL_ENV, KEY_ENV = "AISERVER_URL", "AISERVER_API_KEY"


def build_parser() -> argparse.ArgumentParser:
    server = argparse.ArgumentParser(add_help=False)
    server.add_argument("--url", default=os.environ.get(URL_ENV), help=f"server URL (default: ${URL_ENV})")
    server.add_argument("--key", default=os.environ.get(KEY_ENV), help=f"API key (default: ${KEY_ENV})")
    server.add_argument("--json", action="store_true", help="print JSON instead of a table")
    server.add_argument("--max-retries", type=int, default=5, help="retries of a 429/503 answer (default 5)")

    parser = argparse.ArgumentParser(
        prog="python -m aiserver_client", description="The aiserver v2 API from a terminal."
    )
    commands = parser.add_subparsers(dest="command", required=True)
    classify = commands.add_parser("classify", parents=[server], help="classify image files and folders")
    classify.add_argument("paths", nargs="+", help="image files, or folders to search for images")
    classify.add_argument("--top-k", type=int, default=5, help="predictions per image (default 5)")
    classify.add_argument("--model", help="a model name from `models` (default: the server's first)")
    classify.add_argument("--batch-size", type=int, help="images per request (default: the server's maximum)")
    classify.add_argument("--no-progress", action="store_true", help="no progress bar")
    usage = commands.add_parser("usage", parents=[server], help="this key's usage and limit")
    usage.add_argument("--days", type=int, help="the last N days")
    usage.add_argument("--since", help="ISO-8601 start")
    usage.add_argument("--until", help="ISO-8601 end")
    commands.add_parser("models", parents=[server], help="the server's models")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if not args.url:
        return _fail(f"no server URL: pass --url or set {URL_ENV}")
    if not args.key and args.command != "models":
        return _fail(f"no API key: pass --key or set {KEY_ENV}")
    client = Client(args.url, args.key, max_retries=args.max_retries)
    try:
        if args.command == "classify":
            return run_classify(client, args)
        body = (
            client.usage(days=args.days, since=args.since, until=args.until)
            if args.command == "usage"
            else client.models()
        )
    except (ApiError, FileNotFoundError) as exc:
        return _fail(str(exc))
    print(
        json.dumps(body, indent=2)
        if args.json
        else (format_usage(body) if args.command == "usage" else format_models(body))
    )
    return 0


def run_classify(client: Client, args) -> int:
    from tqdm import tqdm  # noqa: PLC0415 - only the CLI draws progress bars

    files = collect_files(args.paths)
    if not files:
        return _fail("no image files found")
    results: list[FileResult] = []
    with tqdm(total=len(files), unit="img", file=sys.stderr, disable=True if args.no_progress else None) as bar:
        for result in client.classify_files(files, top_k=args.top_k, model=args.model, batch_size=args.batch_size):
            results.append(result)
            bar.update(1)
    failed = sum(not r.ok for r in results)
    if args.json:
        print(json.dumps([{k: v for k, v in r.__dict__.items() if v is not None} for r in results], indent=2))
    else:
        print(format_table(results))
    print(
        f"{len(results)} images: {len(results) - failed} classified, {failed} failed"
        f" ({client.retries} retries after 429/503)",
        file=sys.stderr,
    )
    return 1 if failed else 0


def format_table(results: list[FileResult]) -> str:
    rows = [("FILE", "LABEL", "CONFIDENCE", "NEXT")]
    for r in results:
        if r.ok:
            top, *rest = r.predictions
            others = ", ".join(f"{p['label']} {p['confidence']:.4f}" for p in rest)
            rows.append((r.path, top["label"], f"{top['confidence']:.4f}", others))
        else:
            rows.append((r.path, f"ERROR {r.error['code']}", "", r.error["detail"]))
    return _columns(rows)


def format_usage(body: dict) -> str:
    limit, latency = body["limit"], body["latency_ms"]
    lines = [
        f"key {body['key']['name']} ({body['key']['prefix']}), {body['since'] or 'start'} .. {body['until']}",
        f"requests {body['requests']}, images {body['images']}, throttled {body['throttled']}",
        f"latency ms p50 {latency['p50']}, p95 {latency['p95']}, p99 {latency['p99']}",
        f"limit {limit['limit']} per {limit['window_seconds']}s, remaining {limit['remaining']}, "
        f"reset in {limit['reset_seconds']}s",
        "",
        _columns(
            [("ENDPOINT", "REQUESTS", "IMAGES")]
            + [(e["endpoint"], e["requests"], e["images"]) for e in body["by_endpoint"]]
        ),
        "",
        _columns(
            [("MODEL", "VERSION", "REQUESTS", "IMAGES")]
            + [(m["name"], m["version"] or "-", m["requests"], m["images"]) for m in body.get("by_model", [])]
        ),
        "",
        _columns([("STATUS", "REQUESTS")] + list(body["by_status"].items())),
        "",
        _columns([("DATE", "REQUESTS", "IMAGES")] + [(d["date"], d["requests"], d["images"]) for d in body["daily"]]),
    ]
    return "\n".join(lines)


def format_models(body: dict) -> str:
    rows = [("NAME", "STATUS", "WEIGHTS", "LABELS", "INPUT", "DEVICE")]
    rows += [
        (
            m["name"] + (" (default)" if m["default"] else ""),
            m["status"],
            m["weights"],
            m["num_labels"],
            m["input_size"],
            m["device"],
        )
        for m in body["models"]
    ]
    return _columns(rows) + f"\n\nup to {body['max_batch_images']} images per request, top_k up to {body['max_top_k']}"


def _columns(rows: list[tuple]) -> str:
    cells = [[("" if c is None else str(c)) for c in row] for row in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(cells[0]))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip() for row in cells)


def _fail(message: str) -> int:
    print(f"error: {message}", file=sys.stderr)
    return 2
