"""Model versions as rows, without files or the validation gate, for the tests of what happens after it."""

from classifier.models import ModelVersion

PASSED_REPORT = {"passed": True, "checks": [], "summary": "Passed (test row)."}
FAILED_REPORT = {
    "passed": False,
    "checks": [{"check": "labels", "passed": False, "detail": "5 outputs, 3 labels"}],
    "summary": "Refused: labels failed: 5 outputs, 3 labels.",
}


def version_row(name: str = "flowers", version: str = "1", *, passed: bool = True, **fields) -> ModelVersion:
    return ModelVersion.objects.create(
        name=name,
        version=version,
        report=PASSED_REPORT if passed else FAILED_REPORT,
        model_file=f"model_versions/{name}/{version}/model.ts",
        labels_file=f"model_versions/{name}/{version}/labels.json",
        sha256="0" * 64,
        **fields,
    )


def stored_version(folder, name: str = "flowers", version: str = "1", *, status: str = "staged") -> ModelVersion:
    """A version row whose files are ``folder``'s, stored as register_model stores them (no gate: passed)."""
    from django.core.files import File

    from classifier.versions import files_sha256

    model_path = next(path for path in sorted(folder.iterdir()) if path.name.startswith("model."))
    files = {"model_file": model_path, "labels_file": folder / "labels.json"}
    if (folder / "config.json").is_file():
        files["config_file"] = folder / "config.json"
    row = ModelVersion(
        name=name, version=version, report=PASSED_REPORT, status=status, sha256=files_sha256(files.values())
    )
    for field, path in files.items():
        with path.open("rb") as handle:
            getattr(row, field).save(path.name, File(handle), save=False)
    row.save()
    return row
