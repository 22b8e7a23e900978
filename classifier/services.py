"""Classification as one service call: decode and preprocess here, infer in the batcher."""
import time
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass

from django.conf import settings
from rest_framework.exceptions import APIException

from . import pipeline
from .exceptions import ImageTooLarge, InferenceFailed, InferenceTimeout, InvalidImage
from .registry import registry


@dataclass(frozen=True)
class Classification:
    model: str
    predictions: list[pipeline.Prediction]


def classify_images(images: list[bytes], *, top_k: int) -> tuple[str, list[list[pipeline.Prediction] | APIException]]:
    """Classify each image; return the model name and, per image in order, its predictions or its error.

    Raises ModelUnavailable, Overloaded (queue full) or InferenceTimeout for the request as a whole.
    """
    model, batcher = registry.get()
    spec = model.preprocessing
    outcomes: list = []
    for data in images:
        try:
            image = pipeline.decode(data, max_pixels=settings.CLASSIFIER_MAX_IMAGE_PIXELS, draft_size=spec.resize_size)
            outcomes.append(batcher.submit(pipeline.preprocess(image, spec)))
        except APIException as exc:
            if not isinstance(exc, (InvalidImage, ImageTooLarge)):
                _cancel(outcomes)
                raise
            outcomes.append(exc)
    deadline = time.monotonic() + settings.CLASSIFIER_INFERENCE_TIMEOUT_SECONDS
    results = []
    for outcome in outcomes:
        if isinstance(outcome, APIException):
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
        results.append(pipeline.postprocess(row, model.labels, top_k))
    return model.name, results


def classify_image(data: bytes, *, top_k: int) -> Classification:
    """Classify one image; its error (bad image, model failure) is raised."""
    model_name, (outcome,) = classify_images([data], top_k=top_k)
    if isinstance(outcome, APIException):
        raise outcome
    return Classification(model=model_name, predictions=outcome)


def _cancel(outcomes: list) -> None:
    for outcome in outcomes:
        if not isinstance(outcome, APIException):
            outcome.cancel()
