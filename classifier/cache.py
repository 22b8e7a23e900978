"""The result cache: the same bytes, model and top_k give the same predictions, so answer them from cache.

Entries live in Django's "default" cache (Redis, shared by every server, when REDIS_URL is set),
keyed by the image bytes' SHA-256, the model's weights fingerprint and top_k. A model with
random weights has no fingerprint (every process draws its own) and is never cached. A failing
cache backend is a miss, never an error: the model answers instead.
"""

import hashlib
import logging
from typing import TypeGuard

from django.conf import settings
from django.core.cache import cache

from . import metrics
from .runtime.preprocessing import Prediction

logger = logging.getLogger(__name__)


def _enabled(fingerprint: str | None) -> TypeGuard[str]:
    """Whether results of the model with ``fingerprint`` are cached (random weights have none)."""
    return fingerprint is not None and settings.CLASSIFIER_RESULT_CACHE_SECONDS > 0


def result_key(fingerprint: str, data: bytes, top_k: int) -> str:
    return f"aiserver:result:{fingerprint}:{top_k}:{hashlib.sha256(data).hexdigest()}"


def cached_results(fingerprint: str | None, images: list[bytes], top_k: int) -> dict[int, list[Prediction]]:
    """The cached predictions of ``images`` by position (misses are absent)."""
    if not _enabled(fingerprint):
        return {}
    keys = {result_key(fingerprint, data, top_k): index for index, data in enumerate(images)}
    try:
        found = cache.get_many(list(keys))
    except Exception:  # noqa: BLE001 - the cache is an optimisation; the model can answer
        logger.warning("result cache unavailable; classifying without it", exc_info=True)
        return {}
    hits = {keys[key]: [Prediction(label, confidence) for label, confidence in rows] for key, rows in found.items()}
    metrics.CACHE_LOOKUPS.labels("hit").inc(len(hits))
    metrics.CACHE_LOOKUPS.labels("miss").inc(len(images) - len(hits))
    return hits


def store_results(fingerprint: str | None, results: list[tuple[bytes, list[Prediction]]], top_k: int) -> None:
    """Remember fresh (image bytes, predictions) pairs."""
    if not _enabled(fingerprint) or not results:
        return
    entries = {
        result_key(fingerprint, data, top_k): [(p.label, p.confidence) for p in predictions]
        for data, predictions in results
    }
    try:
        cache.set_many(entries, timeout=settings.CLASSIFIER_RESULT_CACHE_SECONDS)
    except Exception:  # noqa: BLE001 - see cached_results
        logger.warning("result cache unavailable; result not stored", exc_info=True)
