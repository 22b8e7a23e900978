"""Reads: model versions (what is active: the serving processes' one cheap query; one version; the list), and
whether the database answers (readiness)."""

from django.db import connection

from .models import ModelLoadStatus, ModelVersion


def active_version_ids() -> dict[str, int]:
    """{name: id} of each name's active version: one query on the (status, name) index, run every
    CLASSIFIER_MODEL_POLL_SECONDS by every serving process."""
    return dict(ModelVersion.objects.filter(status=ModelVersion.Status.ACTIVE).values_list("name", "id"))


def model_version_by_id(*, version_id: int) -> ModelVersion | None:
    return ModelVersion.objects.filter(id=version_id).first()


def model_version_get(*, name: str, version: str) -> ModelVersion | None:
    return ModelVersion.objects.filter(name=name, version=version).first()


def model_versions_list(*, name: str | None = None) -> list[ModelVersion]:
    """Every registered version (of ``name``, when given), by name, newest first."""
    versions = ModelVersion.objects.all()
    if name is not None:
        versions = versions.filter(name=name)
    return list(versions)


def model_load_statuses(*, name: str | None = None) -> list[ModelLoadStatus]:
    statuses = ModelLoadStatus.objects.all()
    return list(statuses.filter(name=name) if name is not None else statuses)


def database_problem() -> str | None:
    """Why the default database cannot answer a trivial query (the exception's type name), or None when it can."""
    try:
        connection.ensure_connection()
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
    except Exception as exc:  # noqa: BLE001 - any database failure means not ready
        return type(exc).__name__
    return None


def active_versions() -> list[ModelVersion]:
    """Every active version, by name."""
    return list(ModelVersion.objects.filter(status=ModelVersion.Status.ACTIVE).order_by("name"))
