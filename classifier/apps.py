from django.apps import AppConfig


class ClassifierConfig(AppConfig):
    default_auto_field = "django.db.models.BigAutoField"
    name = "classifier"

    def ready(self) -> None:
        # The system checks and the OpenAPI auth extension; then, in a process whose entry point declared that it
        # serves (classifier.serving.declare_serving), the runtime: built once, loading in the background.
        from . import (
            checks,  # noqa: F401
            serving,
        )
        from .api import authentication  # noqa: F401

        if serving.serving_declared():
            serving.start_serving()
