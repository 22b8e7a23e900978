"""The validation gate's checks, in process (classifier.runtime.validation.gate; the sandboxed child that runs
it for real is tests/runtime/test_sandbox.py's and tests/classifier/test_versions.py's)."""

import json
import shutil

from django.test import override_settings

from classifier.runtime.registry import plan_for
from classifier.runtime.sources import ModelSource
from classifier.runtime.validation import gate
from classifier.runtime_settings import runtime_config


def validate_folder(folder, *, engine="", precision=""):
    """The gate's report on ``folder``, in this process."""
    config = runtime_config()
    source = ModelSource(name="candidate", architecture=None, folder=folder, engine=engine, precision=precision)
    limits = {"max_batch_size": config.max_batch_size, "max_image_pixels": config.max_image_pixels}
    _files, _manifest, report = gate(source, plan=plan_for(source, config), threads=1, settings=limits)
    return report


CHECKS = ["loads", "labels", "forward", "latency"]


def test_a_good_folder_passes_every_check_with_its_latency(flower_folders):
    with override_settings(CLASSIFIER_ENGINE="torch", CLASSIFIER_MAX_BATCH_SIZE=4):
        report = validate_folder(flower_folders["state_dict"])
    assert report["passed"], report["summary"]
    assert [check["check"] for check in report["checks"]] == CHECKS
    assert set(report["latency_ms"]) == {"batch_1", "batch_4"} and all(v > 0 for v in report["latency_ms"].values())
    assert report["num_labels"] == report["outputs"] == 5 and len(report["sample_top_labels"]) == 5
    assert report["summary"].startswith("Passed")


def test_a_label_count_that_is_not_the_output_count_fails_the_labels_check(flower_folders, tmp_path):
    folder = shutil.copytree(flower_folders["torchscript"], tmp_path / "wrong-labels")
    (folder / "labels.json").write_text(json.dumps(["daisy", "rose", "tulip"]))
    report = validate_folder(folder, engine="torch")
    assert not report["passed"]
    assert report["checks"][-1] == {
        "check": "labels",
        "passed": False,
        "detail": "the model gives 5 outputs but labels.json has 3 labels",
    }


def test_a_truncated_state_dict_fails_the_loads_check(flower_folders, tmp_path):
    folder = shutil.copytree(flower_folders["state_dict"], tmp_path / "broken")
    data = (folder / "model.pt").read_bytes()
    (folder / "model.pt").write_bytes(data[: len(data) // 3])
    report = validate_folder(folder)
    assert not report["passed"] and report["checks"][0]["check"] == "loads"
    assert "model.pt is not a loadable state_dict" in report["summary"]
    assert str(tmp_path) not in json.dumps(report)
