"""Concurrent HTTP traffic for the live tests: bursts released together, and sustained mixed load."""

import base64
import random
import threading
from collections import Counter
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import requests

from tests.model_weights import picture


def send_concurrently(
    calls: Sequence[requests.Request], *, concurrency: int | None = None, timeout: float = 120.0
) -> list[requests.Response]:
    """Send ``calls``, each on its own connection; return the responses in the same order.

    Without ``concurrency`` all of them go at once, released together by a barrier (a burst);
    with it, that many clients send them back to back (sustained load).
    """
    barrier = threading.Barrier(len(calls)) if concurrency is None else None

    def send(call: requests.Request) -> requests.Response:
        with requests.Session() as session:
            prepared = session.prepare_request(call)
            if barrier is not None:
                barrier.wait()
            return session.send(prepared, timeout=timeout)

    with ThreadPoolExecutor(concurrency or len(calls)) as pool:
        return list(pool.map(send, calls))


def create_keys(live, names: Sequence[str], *, rate_limit: int, window: int = 60) -> list[str]:
    """Create a key per name in ``live``'s database, in one process (each start imports torch); the raw keys."""
    code = (
        "from accounts.services import api_key_create\n"
        f"for name in {list(names)!r}:\n"
        f"    print(api_key_create(name=name, rate_limit={rate_limit}, rate_window_seconds={window})[1])"
    )
    return live.manage("shell", "-c", code).strip().splitlines()[-len(names) :]


def classify_bursts(urls: Sequence[str], keys: Sequence[str], *, per_url: int) -> list[Counter]:
    """One burst per key, in turn: ``per_url`` classifications to each of ``urls``, released together
    (see send_concurrently); the status codes of each burst."""
    body = {"image": base64.b64encode(picture("goldfish")).decode()}
    bursts = []
    for key in keys:
        calls = [
            requests.Request("POST", f"{url}/api/v1/classify", json=body, headers={"Authorization": f"Bearer {key}"})
            for url in urls
            for _ in range(per_url)
        ]
        bursts.append(Counter(response.status_code for response in send_concurrently(calls)))
    return bursts


def fire(url: str, key: str, count: int, body: dict) -> Counter:
    """POST ``body`` as JSON to ``url`` ``count`` times at once; count the status codes."""
    call = requests.Request("POST", url, json=body, headers={"Authorization": f"Bearer {key}"})
    return Counter(response.status_code for response in send_concurrently([call] * count))


SMALL_KEY = "small key"  # its requests are 200 up to the key's limit, then 429


@dataclass(frozen=True)
class Expected:
    kind: str  # what the request is, for messages
    status: int
    code: str = ""  # the error's "code", when it is an error


def mixed_traffic(
    urls: Sequence[str], *, key: str, small_key: str, oversized_bytes: int, rounds: int, seed: int = 5
) -> list[tuple[requests.Request, Expected]]:
    """``rounds`` rounds of 16 good, bad and throttled requests, shuffled, each to one of ``urls``.

    ``key`` must admit every good request; ``small_key``'s two requests a round are admitted up to
    its limit and refused (429) after. ``oversized_bytes`` must be over the servers' API_MAX_BODY_BYTES.
    """
    rng = random.Random(seed)
    good = {"image": base64.b64encode(picture("goldfish")).decode()}
    auth = {"Authorization": f"Bearer {key}"}
    as_json = {**auth, "Content-Type": "application/json"}
    one_round = [
        *[("POST", "/api/v1/classify", {"json": good, "headers": auth}, Expected("good v1", 200))] * 4,
        ("POST", "/api/v2/classify", {"json": {"images": [good] * 4}, "headers": auth}, Expected("good v2 batch", 200)),
        (
            "POST",
            "/api/v1/classify",
            {"json": {"image": base64.b64encode(b"no picture").decode()}, "headers": auth},
            Expected("not an image", 400, "invalid_image"),
        ),
        (
            "POST",
            "/api/v1/classify",
            {"data": b'{"image": ', "headers": as_json},
            Expected("bad JSON", 400, "parse_error"),
        ),
        ("POST", "/api/v1/classify", {"json": good}, Expected("no key", 401, "not_authenticated")),
        (
            "POST",
            "/api/v1/classify",
            {"json": good, "headers": {"X-API-Key": "ais_00000000.unknown"}},
            Expected("unknown key", 401, "invalid_api_key"),
        ),
        ("DELETE", "/api/v1/classify", {"headers": auth}, Expected("wrong method", 405, "method_not_allowed")),
        ("GET", "/api/v1/nothing-here", {"headers": auth}, Expected("unknown path", 404, "not_found")),
        ("GET", "/api/nothing-here", {}, Expected("unknown path outside a version", 404, "not_found")),
        (
            "POST",
            "/api/v1/classify",
            {"data": b"A" * oversized_bytes, "headers": as_json},
            Expected("oversized body", 413, "payload_too_large"),
        ),
        *[
            (
                "POST",
                "/api/v1/classify",
                {"json": good, "headers": {"Authorization": f"Bearer {small_key}"}},
                Expected(SMALL_KEY, 0),
            )
        ]
        * 2,
    ]
    calls = [
        (requests.Request(method, rng.choice(urls) + path, **kwargs), expected)
        for method, path, kwargs, expected in one_round * rounds
    ]
    rng.shuffle(calls)
    return calls


def check_mixed_answers(calls, responses, *, small_limit: int) -> list[str]:
    """What went wrong, if anything: every answer as expected, and exactly ``small_limit`` small-key 200s."""
    problems = []
    small = Counter()
    for (_call, expected), response in zip(calls, responses):
        if expected.kind == SMALL_KEY:
            small[response.status_code] += 1
            continue
        code = response.json().get("code", "") if response.status_code >= 400 else ""
        if (response.status_code, code) != (expected.status, expected.code):
            problems.append(f"{expected.kind}: {response.status_code} {response.text[:120]}")
    sent = sum(small.values())
    if small != Counter({200: small_limit, 429: sent - small_limit}):
        problems.append(f"small key: {dict(small)} for a limit of {small_limit} and {sent} sent")
    return problems
