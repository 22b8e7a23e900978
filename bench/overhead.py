"""The service's own CPU cost per request, by component, in-process: ``python -m bench.overhead``.

Times (CPU ms per call, averaged) the steps a v1 classify request takes besides the model:
key lookup, the sliding-window throttle, the log write, parsing a ~125 KB base64 JSON body,
decoding and preprocessing the JPEG, serialising the answer, and one whole request with the
trivial model through Django's test client and through Django's and aiserver's ASGI handlers;
then profiles whole requests and lists where the time goes.
Prints one JSON line. Needs DATABASE_URL pointing at a scratch database (bench.run gives one).
"""
import base64
import cProfile
import io
import json
import os
import pstats
import time
from pathlib import Path


def cpu_ms(function, repeat: int) -> float:
    for _ in range(min(20, repeat)):
        function()
    started = time.process_time()
    for _ in range(repeat):
        function()
    return 1000.0 * (time.process_time() - started) / repeat


def main() -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tests.settings")
    os.environ.update({"DJANGO_DEBUG": "false", "CLASSIFIER_WEIGHTS": "trivial", "CLASSIFIER_RESULT_CACHE_SECONDS": "0"})
    import django

    django.setup()
    from django.core.handlers import asgi as django_asgi
    from django.core.management import call_command
    from django.test import Client
    from rest_framework.renderers import JSONRenderer

    from aiserver import handlers
    from accounts.services import api_key_authenticate, api_key_create, request_log_create
    from classifier.runtime import preprocessing as pipeline
    from classifier.parsers import SafeJSONParser
    from classifier.runtime.registry import registry
    from classifier.serializers import ClassifyInput, ClassifyOutput
    from classifier.services import classify_image
    from classifier.throttling import SlidingWindowThrottle

    from .images import photo_jpeg

    call_command("migrate", verbosity=0)
    registry.start()  # already started by ready() when this counts as a serving process
    registry.wait()
    api_key, raw_key = api_key_create(name="overhead", rate_limit=10_000_000, rate_window_seconds=60)
    jpeg = photo_jpeg()
    body = json.dumps({"image": base64.b64encode(jpeg).decode(), "filename": "photo.jpg"}).encode()
    spec = registry.get().model.preprocessing
    store, clock = SlidingWindowThrottle.store, time.time
    result = classify_image(jpeg, top_k=5)

    def parse_body():
        payload = ClassifyInput(data=SafeJSONParser().parse(io.BytesIO(body)))
        payload.is_valid(raise_exception=True)
        return payload.image_bytes()

    client = Client(HTTP_AUTHORIZATION=f"Bearer {raw_key}")

    asgi_headers = [(b"authorization", f"Bearer {raw_key}".encode()), (b"content-type", b"application/json")]

    def whole_request():
        response = client.post("/api/v1/classify", body, content_type="application/json")
        assert response.status_code == 200, response.content

    components = {
        "key lookup (auth)": cpu_ms(lambda: api_key_authenticate(raw_key=raw_key), 500),
        "sliding-window throttle": cpu_ms(
            lambda: store.acquire(key_id=api_key.pk, limit=10_000_000, window=60, cost=1, now=clock()), 500),
        "request log write": cpu_ms(lambda: request_log_create(
            api_key_id=api_key.pk, endpoint="/api/v1/classify", method="POST", status_code=200,
            response_time_ms=1.0, client_ip="127.0.0.1"), 500),
        f"parse {len(body) // 1000} KB base64 JSON body": cpu_ms(parse_body, 300),
        "decode + preprocess JPEG (pipeline, not overhead)": cpu_ms(
            lambda: pipeline.preprocess(pipeline.decode(jpeg, max_pixels=10**8, draft_size=spec.resize_size), spec), 300),
        "serialise the answer": cpu_ms(lambda: JSONRenderer().render(ClassifyOutput(result).data), 2000),
        "whole request, trivial model (Django test client)": cpu_ms(whole_request, 300),
        "whole request, Django's own ASGIHandler (in-process)": asgi_request_cpu_ms(
            django_asgi.ASGIHandler(), asgi_headers, body, 300),
        "whole request, aiserver's ASGIHandler (in-process)": asgi_request_cpu_ms(
            handlers.ASGIHandler(), asgi_headers, body, 300),
    }
    profiler = cProfile.Profile(time.process_time)  # CPU, not waiting
    profiler.enable()
    for _ in range(200):
        whole_request()
    profiler.disable()
    print(json.dumps({"components_cpu_ms": components, "profile": hot_spots(profiler, requests=200)}))


def asgi_request_cpu_ms(handler, headers, body: bytes, repeat: int) -> float:
    """CPU ms (all threads) of one whole request through an ASGI handler, in-process, requests in turn."""
    import asyncio

    from tests.asgi import call

    async def requests() -> float:
        async def one():
            status, answer = await call(handler, "/api/v1/classify", method="POST", headers=headers, body=body)
            assert status == 200, answer

        for _ in range(20):
            await one()
        started = time.process_time()
        for _ in range(repeat):
            await one()
        return 1000.0 * (time.process_time() - started) / repeat

    return asyncio.run(requests())


def hot_spots(profiler: cProfile.Profile, *, requests: int, top: int = 12) -> list[dict]:
    """The functions with the most own time per request."""
    stats = pstats.Stats(profiler)
    rows = []
    for (filename, line, name), (_, calls, own, cumulative, _) in stats.stats.items():
        where = "/".join(Path(filename).parts[-2:]) if filename.startswith("/") else filename
        rows.append({"function": f"{where}:{line}({name})", "own_ms": 1000.0 * own / requests,
                     "cumulative_ms": 1000.0 * cumulative / requests, "calls": calls / requests})
    return sorted(rows, key=lambda row: -row["own_ms"])[:top]


if __name__ == "__main__":
    main()
