"""Prometheus metrics: what the request log cannot show cheaply (queue, batches, inference time).

With several worker processes set ``PROMETHEUS_MULTIPROC_DIR`` to an empty directory shared by
them (prometheus_client then keeps the values in files there and ``/metrics`` sums every
worker); without it each process reports only its own numbers.
"""

import atexit
import os

from django.conf import settings
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    multiprocess,
)

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 10.0, 30.0)
BATCH_BUCKETS = (1, 2, 3, 4, 6, 8, 12, 16, 24, 32, 64)

REQUESTS = Counter(
    "aiserver_requests",
    "API requests answered, by endpoint (route), method and status.",
    ["endpoint", "method", "status"],
)
REQUEST_LATENCY = Histogram(
    "aiserver_request_duration_seconds",
    "Time from the request reaching Django to its answer.",
    ["endpoint", "status"],
    buckets=LATENCY_BUCKETS,
)
QUEUE_DEPTH = Gauge(
    "aiserver_queue_depth", "Images waiting for a forward pass.", ["model"], multiprocess_mode="livesum"
)
BATCH_SIZE = Histogram("aiserver_batch_size", "Images per forward pass.", ["model"], buckets=BATCH_BUCKETS)
INFERENCE_SECONDS = Histogram(
    "aiserver_inference_duration_seconds",
    "Time of one forward pass (a whole batch).",
    ["model"],
    buckets=LATENCY_BUCKETS,
)
CACHE_LOOKUPS = Counter("aiserver_result_cache_lookups", "Result cache lookups, by result.", ["result"])


if settings.PROMETHEUS_MULTIPROC_DIR:
    # A live-summed gauge must forget a process that has gone (a restarted worker's queue is empty).
    atexit.register(multiprocess.mark_process_dead, os.getpid())


def exposition() -> tuple[bytes, str]:
    """The metrics page body and its content type: every worker's values in multiprocess mode."""
    if settings.PROMETHEUS_MULTIPROC_DIR:
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
        return generate_latest(registry), CONTENT_TYPE_LATEST
    return generate_latest(), CONTENT_TYPE_LATEST


def record_batch(model: str, size: int, seconds: float, queue_depth: int) -> None:
    """The runtime's batch hook: one forward pass of ``size`` images on ``model``."""
    BATCH_SIZE.labels(model).observe(size)
    INFERENCE_SECONDS.labels(model).observe(seconds)
    QUEUE_DEPTH.labels(model).set(queue_depth)
