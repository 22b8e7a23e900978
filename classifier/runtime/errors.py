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


class ModelNotFound(ServingError):
    """No model (or model version) of that name is served here."""


class ModelUnavailable(ServingError):
    """The model is known but not loaded (loading, failed, or being replaced)."""


class BatcherClosed(ModelUnavailable):
    """The model's batcher closed: its version was just replaced; the request may run again on the new one."""


class Overloaded(ServingError):
    """The queue or the decode budget is full: retry shortly."""
