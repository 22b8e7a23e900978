"""Registered model versions (uploaded in the admin or with ``register_model``) and where each serving
process stands with them.

A version's files live in Django's default storage (MEDIA_ROOT, or S3 and the like through
django-storages); every serving process copies the active one into its local CLASSIFIER_MODEL_CACHE_DIR,
checks its sha256 and loads it beside the version it serves (``classifier.watcher``).
"""

from django.conf import settings
from django.core.validators import RegexValidator
from django.db import models

from .runtime.kinds import EngineKind, Precision

NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$"  # also a version's pattern: no "@", "/" or spaces
name_validator = RegexValidator(NAME_PATTERN, "Use up to 64 of A-Z a-z 0-9 . _ - (starting with a letter or digit).")


def version_file_path(instance: "ModelVersion", filename: str) -> str:
    """Where a version's file is stored: model_versions/NAME/VERSION/FILENAME (the runtime's file names)."""
    return f"model_versions/{instance.name}/{instance.version}/{filename}"


class ModelVersion(models.Model):
    """One version of a named model: its files, their sha256, how to run it, its validation and its status.

    ``staged`` (registered, perhaps validated) → ``active`` (what every server serves for the name; at most
    one per name) → ``retired`` (replaced; activating it again is a roll-back).
    """

    class Status(models.TextChoices):
        STAGED = "staged"
        ACTIVE = "active"
        RETIRED = "retired"

    # The runtime's enums, "" meaning "as the settings say": an engine added there is a choice here.
    ENGINE_CHOICES = [("", "CLASSIFIER_ENGINE")] + [(k.value, k.value) for k in EngineKind if k != EngineKind.AUTO]
    PRECISION_CHOICES = [("", "CLASSIFIER_PRECISION")] + [(p.value, p.value) for p in Precision if p != Precision.AUTO]

    name = models.CharField(max_length=64, validators=[name_validator], help_text="The model's name in the API.")
    version = models.CharField(max_length=64, validators=[name_validator], help_text="e.g. 1, 2026-12-01, v2.1")
    model_file = models.FileField(
        upload_to=version_file_path,
        max_length=255,
        help_text="model.pt (a state_dict), model.ts (TorchScript) or model.onnx",
    )
    labels_file = models.FileField(upload_to=version_file_path, max_length=255, help_text="labels.json")
    config_file = models.FileField(
        upload_to=version_file_path, max_length=255, blank=True, help_text="config.json (optional)"
    )
    sha256 = models.CharField(
        max_length=64, editable=False, help_text="Of the files, in the order model, labels, config."
    )
    engine = models.CharField(max_length=16, choices=ENGINE_CHOICES, blank=True, default="")
    precision = models.CharField(max_length=8, choices=PRECISION_CHOICES, blank=True, default="")
    status = models.CharField(max_length=8, choices=Status.choices, default=Status.STAGED)
    report = models.JSONField(
        default=dict, blank=True, editable=False, help_text="The validation gate's report (classifier.validation)."
    )
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    activated_at = models.DateTimeField(null=True, blank=True, editable=False)
    notes = models.TextField(blank=True)

    class Meta:
        ordering = ["name", "-created_at"]
        constraints = [
            models.UniqueConstraint(fields=["name", "version"], name="model_version_unique_name_version"),
            models.UniqueConstraint(
                fields=["name"], condition=models.Q(status="active"), name="model_version_one_active_per_name"
            ),
        ]
        indexes = [models.Index(fields=["status", "name"], name="model_version_status_name")]
        # Not in any group by default: a TorchScript file is a program (docs/security.md).
        permissions = [("upload_executable_model", "Can upload model files that are code")]

    def __str__(self) -> str:
        return f"{self.name}@{self.version}"

    @property
    def passed(self) -> bool:
        """Whether the validation gate passed it (only such a version can be activated)."""
        return bool(self.report.get("passed"))


class ModelLoadStatus(models.Model):
    """What one serving process (``worker``: host:pid) last did with a model name: the version it serves,
    or the version it failed to load and why (it then goes on serving the one it had)."""

    class Outcome(models.TextChoices):
        LOADED = "loaded"
        FAILED = "failed"

    worker = models.CharField(max_length=128)
    name = models.CharField(max_length=64)
    version = models.CharField(max_length=64, help_text="The version this row is about.")
    outcome = models.CharField(max_length=8, choices=Outcome.choices)
    serving = models.CharField(max_length=64, blank=True, help_text="The version the worker serves now.")
    reason = models.TextField(blank=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name", "worker"]
        verbose_name_plural = "model load statuses"
        constraints = [models.UniqueConstraint(fields=["worker", "name"], name="model_load_status_unique_worker_name")]

    def __str__(self) -> str:
        return f"{self.worker}: {self.name}@{self.version} {self.outcome}"
