"""Model versions as rows, without files or the validation gate, for the tests of what happens after it."""
from classifier.models import ModelVersion

PASSED_REPORT = {"passed": True, "checks": [], "summary": "Passed (test row)."}
FAILED_REPORT = {"passed": False, "checks": [{"check": "labels", "passed": False, "detail": "5 outputs, 3 labels"}],
                 "summary": "Refused: labels failed: 5 outputs, 3 labels."}


def version_row(name: str = "flowers", version: str = "1", *, passed: bool = True, **fields) -> ModelVersion:
    return ModelVersion.objects.create(
        name=name, version=version, report=PASSED_REPORT if passed else FAILED_REPORT,
        model_file=f"model_versions/{name}/{version}/model.ts", labels_file=f"model_versions/{name}/{version}/labels.json",
        sha256="0" * 64, **fields,
    )
