"""The service's own CPU cost per request, by component, in-process: ``python -m bench.overhead``.

Times (CPU ms per call, averaged) the steps a v1 classify request takes besides the model:
key lookup, the sliding-window throttle, the log write, parsing a ~112 KB base64 JSON body,
decoding and preprocessing the JPEG, serialising the answer, and one whole request with the
trivial model through Django's test client and through Django's and aiserver's ASGI handlers;
then profiles whole requests and lists where the time goes.

The two overhead figures the service is held to (CPU of every thread of the process, decoding,
preprocessing and the trivial model's own forward passes subtracted, through aiserver's ASGI handler):
- a v1 request: whole request minus one decode + preprocess and one forward pass of one image;
- a v2 request of 16 images: (whole request minus 16 decodes + preprocesses and two forward passes of 8) / 16.
CPU time on a shared machine moves with its neighbours, so each is the least of several rounds
(the median is reported too). They are printed plainly, then everything as one JSON line (the
last line, which bench.run reads). Needs DATABASE_URL pointing at a scratch database (bench.run gives one).
"""

import base64
import cProfile
import io
import json
import os
import pstats
import statistics
import time
from pathlib import Path


def cpu_ms(function, repeat: int) -> float:
    for _ in range(min(20, repeat)):
        function()
    started = time.process_time()
    for _ in range(repeat):
        function()
    return 1000.0 * (time.process_time() - started) / repeat


V1_TARGET_MS = 2.0  # CPU per v1 request beyond decoding and preprocessing (issue 24)
V2_TARGET_MS_PER_IMAGE = 0.5  # CPU per image of a v2 batch of 16 beyond decoding and preprocessing
V2_BATCH = 16
V2_FORWARD_BATCH = 8  # CLASSIFIER_MAX_BATCH_SIZE's default: a v2 batch of 16 is two forward passes


def least_and_median(function, *, rounds: int, repeat: int) -> tuple[float, float]:
    """CPU ms per call of ``function``: the least and the median over ``rounds`` rounds of ``repeat`` calls."""
    samples = [cpu_ms(function, repeat) for _ in range(rounds)]
    return min(samples), statistics.median(samples)


def main() -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tests.settings")
    os.environ.update(
        {"DJANGO_DEBUG": "false", "CLASSIFIER_WEIGHTS": "trivial", "CLASSIFIER_RESULT_CACHE_SECONDS": "0"}
    )
    import django

    django.setup()
    from django.core.handlers import asgi as django_asgi
    from django.core.management import call_command
    from django.test import Client
    from rest_framework.renderers import JSONRenderer

    from accounts.services import api_key_authenticate, api_key_create, request_log_create
    from aiserver import handlers
    from classifier.api import lean
    from classifier.api.lean import LeanClassify
    from classifier.api.parsers import SafeJSONParser
    from classifier.api.serializers import ClassifyInput, ClassifyOutput
    from classifier.api.throttling import SlidingWindowThrottle
    from classifier.runtime import preprocessing as pipeline
    from classifier.services import classify_image
    from classifier.serving import process_runtime
    from tests.asgi import http_scope

    from .images import photo_jpeg

    call_command("migrate", verbosity=0)
    registry = process_runtime()
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

    decode_preprocess = lambda: pipeline.preprocess(  # noqa: E731
        pipeline.decode(jpeg, max_pixels=10**8, draft_size=spec.draft_size), spec
    )
    v2_body = json.dumps(
        {
            "images": [
                {"image": base64.b64encode(jpeg).decode(), "filename": f"{index}.jpg"} for index in range(V2_BATCH)
            ]
        }
    ).encode()
    pixels = decode_preprocess()
    model = registry.get().model
    lean_app = LeanClassify(handlers.ASGIHandler(), threads=64)  # the application as aiserver.asgi builds it
    targets = overhead_targets(
        lean_app, asgi_headers, body, v2_body, decode_preprocess, lambda n: model.run_batch([pixels] * n)
    )
    components = {
        "key lookup (auth)": cpu_ms(lambda: api_key_authenticate(raw_key=raw_key), 500),
        "sliding-window throttle": cpu_ms(
            lambda: store.acquire(key_id=api_key.pk, limit=10_000_000, window=60, cost=1, now=clock()), 500
        ),
        "request log write": cpu_ms(
            lambda: request_log_create(
                api_key_id=api_key.pk,
                endpoint="/api/v1/classify",
                method="POST",
                status_code=200,
                response_time_ms=1.0,
                client_ip="127.0.0.1",
            ),
            500,
        ),
        f"parse {len(body) // 1000} KB base64 JSON body": cpu_ms(parse_body, 300),
        "decode + preprocess JPEG (pipeline, not overhead)": cpu_ms(decode_preprocess, 300),
        "classify service minus decode + preprocess (batcher, trivial model, postprocess)": cpu_ms(
            lambda: classify_image(jpeg, top_k=5), 300
        )
        - cpu_ms(decode_preprocess, 300),
        "serialise the answer": cpu_ms(lambda: JSONRenderer().render(ClassifyOutput(result).data), 2000),
        "whole request, trivial model (Django test client)": cpu_ms(whole_request, 300),
        "whole request, Django's own ASGIHandler (in-process)": asgi_request_cpu_ms(
            django_asgi.ASGIHandler(), asgi_headers, body, 300
        ),
        "whole request, aiserver's ASGIHandler (in-process)": asgi_request_cpu_ms(
            handlers.ASGIHandler(), asgi_headers, body, 300
        ),
        "whole request, the lean path in front of it (in-process)": asgi_request_cpu_ms(
            lean_app, asgi_headers, body, 300
        ),
    }
    # The lean path's work for one request, run in this thread (cProfile sees one thread): all of it but the
    # event loop's reading of the body and sending of the answer.
    scope = http_scope("/api/v1/classify", method="POST", headers=asgi_headers)
    profiler = cProfile.Profile(time.process_time)  # CPU, not waiting
    profiler.enable()
    for _ in range(200):
        assert lean._answer(scope, body, time.perf_counter())[0] == 200
    profiler.disable()
    print(
        f"v1 request overhead: {targets['v1_overhead_ms']:.2f} ms CPU (median {targets['v1_overhead_ms_median']:.2f}; "
        f"target <= {V1_TARGET_MS}); whole request {targets['v1_request_ms']:.2f} ms, "
        f"decode + preprocess {targets['decode_preprocess_ms']:.2f} ms"
    )
    print(
        f"v2 batch of {V2_BATCH}, overhead per image: {targets['v2_overhead_ms_per_image']:.3f} ms CPU "
        f"(median {targets['v2_overhead_ms_per_image_median']:.3f}; target <= {V2_TARGET_MS_PER_IMAGE}); "
        f"whole request {targets['v2_request_ms']:.2f} ms"
    )
    print(
        json.dumps({"targets": targets, "components_cpu_ms": components, "profile": hot_spots(profiler, requests=200)})
    )


def overhead_targets(
    handler, headers, v1_body: bytes, v2_body: bytes, decode_preprocess, forward, *, rounds: int = 9
) -> dict:
    """The two held-to figures (see the module docstring), least and median over ``rounds`` rounds, CPU ms.

    ``forward(n)`` runs the (trivial) model's forward pass on n images: the model's own cost, not the service's.
    """
    pipeline_ms, pipeline_median = least_and_median(decode_preprocess, rounds=rounds, repeat=60)
    forward_1, _ = least_and_median(lambda: forward(1), rounds=rounds, repeat=200)
    batches = -(-V2_BATCH // V2_FORWARD_BATCH)
    forward_batch, _ = least_and_median(lambda: forward(V2_FORWARD_BATCH), rounds=rounds, repeat=50)
    v1_ms, v1_median = least_and_median_asgi(handler, "/api/v1/classify", headers, v1_body, rounds=rounds, repeat=60)
    v2_ms, v2_median = least_and_median_asgi(handler, "/api/v2/classify", headers, v2_body, rounds=rounds, repeat=6)
    v2_model_ms = V2_BATCH * pipeline_ms + batches * forward_batch
    return {
        "decode_preprocess_ms": pipeline_ms,
        "trivial_forward_ms": forward_1,
        "trivial_forward_batch_ms": forward_batch,
        "v1_request_ms": v1_ms,
        "v1_overhead_ms": v1_ms - pipeline_ms - forward_1,
        "v1_overhead_ms_median": v1_median - pipeline_median - forward_1,
        "v1_target_ms": V1_TARGET_MS,
        "v2_request_ms": v2_ms,
        "v2_overhead_ms_per_image": (v2_ms - v2_model_ms) / V2_BATCH,
        "v2_overhead_ms_per_image_median": (v2_median - v2_model_ms) / V2_BATCH,
        "v2_target_ms_per_image": V2_TARGET_MS_PER_IMAGE,
    }


def least_and_median_asgi(handler, path: str, headers, body: bytes, *, rounds: int, repeat: int) -> tuple[float, float]:
    samples = [asgi_request_cpu_ms(handler, headers, body, repeat, path=path, warm=3) for _ in range(rounds)]
    return min(samples), statistics.median(samples)


def asgi_request_cpu_ms(
    handler, headers, body: bytes, repeat: int, *, path: str = "/api/v1/classify", warm: int = 20
) -> float:
    """CPU ms (all threads) of one whole request through an ASGI handler, in-process, requests in turn."""
    import asyncio

    from tests.asgi import call

    async def requests() -> float:
        async def one():
            status, answer = await call(handler, path, method="POST", headers=headers, body=body)
            assert status == 200, answer

        for _ in range(warm):
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
        rows.append(
            {
                "function": f"{where}:{line}({name})",
                "own_ms": 1000.0 * own / requests,
                "cumulative_ms": 1000.0 * cumulative / requests,
                "calls": calls / requests,
            }
        )
    return sorted(rows, key=lambda row: -row["own_ms"])[:top]


if __name__ == "__main__":
    main()
