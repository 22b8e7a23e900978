"""What the runtime raises: plain exceptions with a message fit for the caller, and no HTTP in them.

The API answers each with its own error (classifier.api.exceptions.api_error: code, status, Retry-After),
so the runtime imports neither the API nor DRF.
"""


class ServingError(Exception):
    """A request (or one of its images) cannot be served; ``detail`` says why, or is None for the API's
    default message."""

    def __init__(self, detail: str | None = None):
        super().__init__(detail or type(self).__name__)
        self.detail = detail


class ImageError(ServingError):
    """One image cannot be classified; the other images of its request can."""


class InvalidImage(ImageError):
    """Not a readable image of a supported format."""


class ImageTooLarge(ImageError):
    """More pixels than CLASSIFIER_MAX_IMAGE_PIXELS."""


class InferenceFailed(ImageError):
    """The model failed on this image's batch."""


class InferenceTimeout(ServingError):
    """The model did not answer within the inference timeout: retry shortly."""


class ModelNotFound(ServingError):
    """No model (or model version) of that name is served here."""


class ModelUnavailable(ServingError):
    """The model is known but not loaded (loading, failed, or being replaced)."""


class BatcherClosed(ModelUnavailable):
    """The model's batcher closed: its version was just replaced; the request may run again on the new one."""


class Overloaded(ServingError):
    """The queue or the decode budget is full: retry shortly."""


class ArtifactError(Exception):
    """A model that cannot be served; the message is safe to show to API users (it names no server path)."""


def first_line(exc: BaseException) -> str:
    """An exception as one short line: its type and the first line of its message."""
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0][:300]}" if text else type(exc).__name__


class ExportFailed(ArtifactError):
    """The network could not be compiled to ONNX (``auto`` then serves it with eager torch)."""


class PretrainedUnavailable(ArtifactError):
    """torchvision's pretrained weights could not be fetched (offline, most often)."""


# The compile errors a child process reports by name (sandbox.py raises the same class in the parent).
COMPILE_ERRORS = {cls.__name__: cls for cls in (ArtifactError, ExportFailed, PretrainedUnavailable)}
