"""Classification as one service call: decode and preprocess here, infer in the batcher (a lone image whose
forward pass would start at once runs in the request thread: MicroBatcher.run_now)."""

import logging
import time
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass

import numpy as np
from django.conf import settings

from . import cache
from .runtime import preprocessing as pipeline
from .runtime.budget import PixelBudget
from .runtime.errors import BatcherClosed, ImageError, InferenceFailed, InferenceTimeout, ModelNotFound, ServingError
from .runtime.registry import LoadedModel, Ready, Slot
from .serving import process_runtime

logger = logging.getLogger(__name__)

# The pixels this process decodes at once, shared by every request thread (swappable in tests).
decode_budget = PixelBudget(settings.CLASSIFIER_DECODE_BUDGET_MEGAPIXELS * 1_000_000)


@dataclass(frozen=True)
class Classification:
    model: str
    predictions: list[pipeline.Prediction]
    model_version: str = ""  # the version that answered (LoadedModel.version)


def classify_images(
    images: list[bytes], *, top_k: int, model_name: str | None = None, model_version: str | None = None
) -> tuple[LoadedModel, list[list[pipeline.Prediction] | Exception]]:
    """Classify each image with ``model_name`` (default: the first model); return the model that answered
    (its name and version) and, per image in order, its predictions or its error.

    Raises the runtime's ModelUnavailable or Overloaded (queue full, or no decode budget in time), or
    InferenceTimeout, for the request as a whole; ModelNotFound when ``model_version`` is given and is not
    the version this server serves. (The API's handler answers the runtime's errors, api_error.) A request that took the model just before a version switch runs again, once, on the new version
    (the old one's batcher closes behind it).
    """
    try:
        return _classify_on(_serving(model_name, model_version), images, top_k=top_k)
    except BatcherClosed:
        return _classify_on(_serving(model_name, model_version), images, top_k=top_k)


def _serving(model_name: str | None, model_version: str | None) -> Slot:
    """The loaded slot of ``model_name``, checked to serve ``model_version`` when one is asked for."""
    slot = process_runtime().get(model_name)
    serving = slot.model.version if slot.model is not None else None
    if model_version is not None and serving != model_version:
        raise ModelNotFound(f"Model {slot.name} has no version {model_version!r} being served; it serves {serving!r}.")
    return slot


def _classify_on(slot: Slot, images: list[bytes], *, top_k: int) -> tuple[LoadedModel, list]:
    state = slot.state
    if not isinstance(state, Ready):  # a replaced version, freed after its drain time
        raise BatcherClosed()
    model, batcher = state.model, state.batcher
    spec = model.preprocessing
    cached = cache.cached_results(model.fingerprint, images, top_k)
    outcomes: list = []
    pending: list[int] = []  # positions in outcomes of preprocessed images not yet submitted
    try:
        for index, data in enumerate(images):
            if index in cached:
                outcomes.append(cached[index])
                continue
            try:
                outcomes.append(_preprocessed(data, spec))
                pending.append(len(outcomes) - 1)
            except ImageError as exc:
                outcomes.append(exc)
            if len(pending) == batcher.max_batch_size:  # a whole batch's images enter the queue together
                _submit(batcher, outcomes, pending)
        if len(pending) == 1 and not any(isinstance(outcome, Future) for outcome in outcomes):
            _run_alone(batcher, outcomes, pending)  # the request's one image, run here when a worker would at once
        _submit(batcher, outcomes, pending)
    except ServingError:
        _cancel(outcomes)
        raise
    deadline = time.monotonic() + settings.CLASSIFIER_INFERENCE_TIMEOUT_SECONDS
    results = []
    fresh = []
    for data, outcome in zip(images, outcomes):
        if not isinstance(outcome, Future):  # an image error, or cached predictions
            results.append(outcome)
            continue
        try:
            row = outcome.result(timeout=max(0.0, deadline - time.monotonic()))
        except FutureTimeout:
            _cancel(outcomes)
            raise InferenceTimeout() from None
        except Exception as exc:  # noqa: BLE001 - the model failed on this batch
            results.append(InferenceFailed(f"The model failed on this image's batch ({type(exc).__name__})."))
            continue
        predictions = pipeline.postprocess(row, model.labels, top_k)
        fresh.append((data, predictions))
        results.append(predictions)
    cache.store_results(model.fingerprint, fresh, top_k)
    return model, results


@dataclass(frozen=True)
class BatchClassification:
    model: str
    processing_time_ms: float
    results: list[list[pipeline.Prediction] | Exception]  # per input image, in order
    model_version: str = ""  # the version that answered (LoadedModel.version)
    engine: dict | None = None  # what ran it (LoadedModel.served_as)


def classify_batch(
    images: list[bytes | Exception],
    *,
    top_k: int,
    model_name: str | None = None,
    model_version: str | None = None,
) -> BatchClassification:
    """Classify a v2 batch whose images may already have failed to decode (an error value in their place: the API's decoding error, or a runtime ImageError).

    Each image's failure stays its own; the request-wide errors of ``classify_images`` are raised.
    """
    started = time.perf_counter()
    readable = [data for data in images if isinstance(data, bytes)]
    model, outcomes = classify_images(readable, top_k=top_k, model_name=model_name, model_version=model_version)
    answers = iter(outcomes)
    results = [next(answers) if isinstance(data, bytes) else data for data in images]
    elapsed_ms = round((time.perf_counter() - started) * 1000.0, 2)
    return BatchClassification(
        model=model.name,
        model_version=model.version,
        processing_time_ms=elapsed_ms,
        results=results,
        engine=model.served_as(),
    )


def classify_image(data: bytes, *, top_k: int) -> Classification:
    """Classify one image; its error (bad image, model failure) is raised."""
    model, (outcome,) = classify_images([data], top_k=top_k)
    if isinstance(outcome, Exception):
        raise outcome
    return Classification(model=model.name, model_version=model.version, predictions=outcome)


def _submit(batcher, outcomes: list, pending: list[int]) -> None:
    """Queue the pending images as one group (so they share a forward pass) and put their Futures in place."""
    for position, future in zip(pending, batcher.submit_many([outcomes[position] for position in pending])):
        outcomes[position] = future
    pending.clear()


def _run_alone(batcher, outcomes: list, pending: list[int]) -> None:
    """Run the one pending image in this thread if the batcher would run it alone at once (``run_now``): its
    outcome becomes a finished Future, as a worker's would (its row, or the model's error); else it stays
    pending, to be queued. BatcherClosed is raised (the request runs again on the new version)."""
    (position,) = pending
    future: Future = Future()
    try:
        row = batcher.run_now(outcomes[position])
    except BatcherClosed:
        raise
    except Exception as exc:  # noqa: BLE001 - the model failed on this image, as on a worker's batch
        logger.exception("inference failed on an image run in its request's thread")
        future.set_exception(exc)
    else:
        if row is None:
            return
        future.set_result(row)
    outcomes[position] = future
    pending.clear()


def _preprocessed(data: bytes, spec: pipeline.Preprocessing) -> np.ndarray:
    """Decode and preprocess one image while holding its pixels in the decode budget, the preprocessed
    crop's pixels included (it is made while the decoded image is still held).

    Raises the runtime's InvalidImage, ImageTooLarge, or Overloaded when the budget has no room within
    CLASSIFIER_DECODE_BUDGET_WAIT_MS.
    """
    image = pipeline.open_image(data, max_pixels=settings.CLASSIFIER_MAX_IMAGE_PIXELS, draft_size=spec.draft_size)
    pixels = image.width * image.height + spec.crop_size * spec.crop_size
    with decode_budget.hold(pixels, timeout=settings.CLASSIFIER_DECODE_BUDGET_WAIT_MS / 1000.0):
        try:
            return pipeline.preprocess(pipeline.load(image), spec)
        finally:
            image.close()  # the decoded pixels go before the budget is given back


def _cancel(outcomes: list) -> None:
    for outcome in outcomes:
        if isinstance(outcome, Future):
            outcome.cancel()
