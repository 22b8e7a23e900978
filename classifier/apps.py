from django.apps import AppConfig


class ClassifierConfig(AppConfig):
    default_auto_field = "django.db.models.BigAutoField"
    name = "classifier"

    def ready(self) -> None:
        # Register the system checks and the OpenAPI auth extension. The model is loaded by the serving entry
        # points (classifier.serving.start_serving), not here: importing the app has no side effects.
        from . import checks  # noqa: F401
        from .api import authentication  # noqa: F401
