"""The compose stack checked from outside (.ci/containers brings it up): everything through nginx, commands in the
admin container as an operator would run them. Exits non-zero on the first failed check; prints each check's time.

1. the stack becomes ready (nginx answers /readyz from both replicas);
2. a key made in the admin container classifies through v1 and v2;
3. a model version registered and activated in the admin container is answered by both replicas;
4. /api/v2/usage adds up what both replicas answered;
5. one replica stopped in the middle of a stream of requests: every request is answered 200 (nginx retries what the
   stopping replica refused), and the request log has exactly one row per answered request.
"""

import argparse
import io
import json
import subprocess
import sys
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor

import requests
from PIL import Image

FLOWERS_FOLDER = """
import json, os, torch, torchvision
os.makedirs("/tmp/flowers", exist_ok=True)
torch.manual_seed(0)
model = torchvision.models.mobilenet_v3_small(num_classes=3)
torch.save(model.state_dict(), "/tmp/flowers/model.pt")
json.dump(["daisy", "rose", "tulip"], open("/tmp/flowers/labels.json", "w"))
json.dump({"architecture": "mobilenet_v3_small"}, open("/tmp/flowers/config.json", "w"))
"""
LOG_COUNTS = """
import json
from django.db.models import Count
from accounts.models import RequestLog
rows = RequestLog.objects.filter(api_key__name={name!r}).values_list("endpoint", "status_code").annotate(n=Count("id"))
print(json.dumps([[endpoint, status, n] for endpoint, status, n in rows]))
"""


class Stack:
    def __init__(self, url: str, project: str):
        self.url = url
        self.project = project
        self.session = requests.Session()
        self.sent: Counter = Counter()  # (route, status) of every request sent with the key
        self.lock = threading.Lock()
        self.key = ""

    def container(self, service: str) -> str:
        return f"{self.project}_{service}_1"

    def manage(self, service: str, *args: str) -> str:
        """A management command in a running container; its stdout."""
        result = subprocess.run(
            ["podman", "exec", self.container(service), "python3", "manage.py", *args],
            capture_output=True,
            text=True,
            timeout=600,
        )
        if result.returncode != 0:
            raise AssertionError(f"manage.py {' '.join(args)} in {service}: {result.stderr[-2000:]}")
        return result.stdout

    def in_container(self, service: str, code: str) -> str:
        result = subprocess.run(
            ["podman", "exec", self.container(service), "python3", "-c", code], capture_output=True, text=True
        )
        if result.returncode != 0:
            raise AssertionError(f"python in {service}: {result.stderr[-2000:]}")
        return result.stdout

    def request(self, method: str, route: str, **kwargs) -> requests.Response:
        headers = {"Authorization": f"Bearer {self.key}"}
        response = requests.request(method, self.url + route, headers=headers, timeout=90, **kwargs)
        with self.lock:
            self.sent[route, response.status_code] += 1
        return response


def jpeg(color: tuple[int, int, int]) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (96, 96), color).save(out, format="JPEG")
    return out.getvalue()


def check(name: str):
    def wrap(function):
        def run(*args, **kwargs):
            started = time.monotonic()
            result = function(*args, **kwargs)
            print(f"### check: {name:<58} {time.monotonic() - started:6.1f} s  ok", flush=True)
            return result

        return run

    return wrap


@check("the stack is ready through nginx (both replicas)")
def wait_ready(stack: Stack, timeout: float = 300.0) -> None:
    deadline = time.monotonic() + timeout
    streak = 0
    while streak < 20:  # nginx alternates: 20 in a row means both replicas answer
        if time.monotonic() > deadline:
            raise AssertionError("the stack did not become ready")
        try:
            ok = requests.get(stack.url + "/readyz", timeout=5).status_code == 200
        except requests.RequestException:
            ok = False
        streak = streak + 1 if ok else 0
        if not ok:
            time.sleep(1)


def ready_in(stack: Stack, service: str, model: str = "") -> bool:
    query = f"?model={model}" if model else ""
    code = (
        "import urllib.request, sys\n"
        "try:\n"
        f"    urllib.request.urlopen('http://127.0.0.1:8000/readyz{query}', timeout=5)\n"
        "except Exception:\n"
        "    sys.exit(1)\n"
    )
    return subprocess.run(["podman", "exec", stack.container(service), "python3", "-c", code]).returncode == 0


@check("a key from the admin container classifies with v1 and v2")
def first_key(stack: Stack) -> None:
    stack.key = (
        stack.manage("admin", "create_api_key", "--name", "ci", "--rate-limit", "100000").strip().splitlines()[-1]
    )
    assert stack.key.startswith("ais_"), stack.key
    v1 = stack.request("POST", "/api/v1/classify", files={"file": ("red.jpg", jpeg((200, 30, 30)))})
    assert v1.status_code == 200 and len(v1.json()["predictions"]) == 5, v1.text
    images = [("files", ("a.jpg", jpeg((10, 200, 10)))), ("files", ("b.jpg", jpeg((10, 10, 200))))]
    v2 = stack.request("POST", "/api/v2/classify", files=images, data={"top_k": "3"})
    assert v2.status_code == 200 and [len(r["predictions"]) for r in v2.json()["results"]] == [3, 3], v2.text


@check("a version registered in the admin container: both replicas serve it")
def model_version(stack: Stack, timeout: float = 300.0) -> None:
    stack.in_container("admin", FLOWERS_FOLDER)
    out = stack.manage("admin", "register_model", "flowers", "/tmp/flowers", "--version", "1", "--activate")
    print("    " + out.strip().replace("\n", "\n    "))
    deadline = time.monotonic() + timeout
    while not (ready_in(stack, "api1", "flowers") and ready_in(stack, "api2", "flowers")):
        assert time.monotonic() < deadline, "the replicas did not load the activated version"
        time.sleep(1)
    for _ in range(10):  # nginx alternates between the replicas
        answer = stack.request(
            "POST", "/api/v2/classify", files={"files": ("a.jpg", jpeg((1, 2, 3)))}, data={"model": "flowers"}
        )
        body = answer.json()
        assert answer.status_code == 200 and body["model"] == "flowers", answer.text
        assert body["results"][0]["predictions"][0]["label"] in ("daisy", "rose", "tulip"), answer.text


@check("/api/v2/usage adds up across the replicas")
def usage(stack: Stack) -> None:
    classified = sum(n for (route, status), n in stack.sent.items() if "classify" in route)
    report = stack.request("GET", "/api/v2/usage", params={"days": "1"})
    assert report.status_code == 200, report.text
    by_endpoint = {row["endpoint"]: row["requests"] for row in report.json()["by_endpoint"]}
    counted = sum(n for endpoint, n in by_endpoint.items() if "classify" in endpoint)
    assert counted == classified, (by_endpoint, stack.sent)


@check("a replica stopped mid-stream: every request 200, logs match")
def stop_one_replica(stack: Stack, total: int = 160, threads: int = 4) -> None:
    picture = jpeg((120, 60, 30))
    done = Counter()
    stopper = None

    def one(i: int) -> int:
        nonlocal stopper
        if i == total // 4:
            stopper = subprocess.Popen(
                ["podman", "stop", "-t", "45", stack.container("api1")], stdout=subprocess.DEVNULL
            )
        try:
            return stack.request("POST", "/api/v1/classify", files={"file": ("p.jpg", picture)}).status_code
        except requests.RequestException as exc:
            return type(exc).__name__

    with ThreadPoolExecutor(threads) as pool:
        for status in pool.map(one, range(total)):
            done[status] += 1
    assert stopper is not None and stopper.wait(120) == 0, "podman stop failed"
    assert done == Counter({200: total}), done
    rows = json.loads(stack.manage("admin", "shell", "-c", LOG_COUNTS.format(name="ci")).strip().splitlines()[-1])
    logged = Counter({(endpoint, status): n for endpoint, status, n in rows})
    # One row per answer the client got; a replica's 503 that nginx retried elsewhere is a row of its own (the
    # replica answered it), so only statuses the client saw must match exactly.
    answered = {(route, status): n for (route, status), n in logged.items() if (route, status) in stack.sent}
    assert answered == dict(stack.sent), (logged, stack.sent)
    retried = logged - stack.sent
    assert all(status == 503 for _, status in retried), retried
    print(f"    {total} requests, all 200; request log rows by route and status: {dict(logged)}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", required=True)
    parser.add_argument("--project", required=True)
    options = parser.parse_args()
    stack = Stack(options.url, options.project)
    wait_ready(stack)
    first_key(stack)
    model_version(stack)
    usage(stack)
    stop_one_replica(stack)


if __name__ == "__main__":
    sys.exit(main())
