"""The runtime's configuration from Django's settings: the one place the model side's settings are read."""

from django.conf import settings

from .runtime.config import RuntimeConfig


def runtime_config() -> RuntimeConfig:
    """A ``RuntimeConfig`` of the settings as they are now (the runtime asks at each load, so tests'
    ``override_settings`` reach it)."""
    return RuntimeConfig(
        models=dict(settings.CLASSIFIER_MODELS),
        default_model=settings.CLASSIFIER_MODEL,
        default_weights=settings.CLASSIFIER_WEIGHTS,
        device=settings.CLASSIFIER_DEVICE,
        engine=settings.CLASSIFIER_ENGINE,
        precision=settings.CLASSIFIER_PRECISION,
        artifact_dir=settings.CLASSIFIER_ENGINE_CACHE_DIR,
        max_image_pixels=settings.CLASSIFIER_MAX_IMAGE_PIXELS,
        max_batch_size=settings.CLASSIFIER_MAX_BATCH_SIZE,
        max_batch_delay_ms=settings.CLASSIFIER_MAX_BATCH_DELAY_MS,
        queue_size=settings.CLASSIFIER_QUEUE_SIZE,
        batch_workers=settings.CLASSIFIER_BATCH_WORKERS,
        torch_threads=settings.CLASSIFIER_TORCH_THREADS,
        web_concurrency=settings.WEB_CONCURRENCY,
        compile_in_child=settings.CLASSIFIER_COMPILE_IN_CHILD,
        compile_timeout_seconds=settings.CLASSIFIER_VALIDATION_TIMEOUT_SECONDS,
        compile_memory_bytes=settings.CLASSIFIER_COMPILE_MEMORY_MB << 20,
    )
