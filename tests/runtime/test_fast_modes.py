"""Fast modes and ``auto``'s measured choice, compiled for real (OpenVINO, NNCF): an int8 version is calibrated on
its folder's calibration/ images and admitted or refused by its measured agreement with fp32; ``auto`` races the
exact engines when compiling and the choice survives a restart through the artifact."""

import base64
import io
import shutil

import numpy as np
import pytest
from PIL import Image

from classifier.runtime import openvino_engine
from classifier.runtime.registry import LOADED, UNAVAILABLE, describe_slot
from tests.model_weights import FLOWERS, flower_picture
from tests.runtime.helpers import folder_source, load, top_labels

pytestmark = pytest.mark.skipif(not openvino_engine.available(), reason="OpenVINO is not installed")


def calibrated(folder, tmp_path, *, count: int = 40):
    """A copy of the model folder with a calibration/ folder of varied flower pictures (the operator's own)."""
    copy = shutil.copytree(folder, tmp_path / "calibrated")
    (copy / "calibration").mkdir()
    rng = np.random.default_rng(7)
    for index in range(count):
        colour = np.array(list(FLOWERS.values())[index % len(FLOWERS)], dtype=np.float32)
        pixels = np.clip(colour + rng.normal(0, 12, (240, 320, 3)), 0, 255).astype(np.uint8)
        buffer = io.BytesIO()
        Image.fromarray(pixels).save(buffer, format="PNG")
        (copy / "calibration" / f"{index:03d}.png").write_bytes(buffer.getvalue())
    return copy


@pytest.mark.django_db
def test_an_int8_version_is_calibrated_measured_and_admitted_with_its_numbers(
    flower_folders, tmp_path, loaded_model, install_slot, client, make_key
):
    folder = calibrated(flower_folders["state_dict"], tmp_path)
    slot = load(
        folder_source(folder),
        engine="openvino",
        precision="int8",
        CLASSIFIER_ENGINE_CACHE_DIR=tmp_path / "c",
        CLASSIFIER_BATCH_WORKERS=2,
    )
    assert slot.status == LOADED, slot.reason
    # One OpenVINO stream per batch worker: with one, the two workers' passes would run one after the other.
    assert (slot.model.engine.streams, slot.model.engine.threads) == (2, 1)
    described = describe_slot(slot, default=False)
    assert (described["engine"], described["precision"], described["exact"]) == ("openvino", "int8", False)
    fast = slot.model.report["fast_mode"]
    assert fast["images"] == "40 images of the folder's calibration/"
    assert fast["agreement"]["top1"] >= 0.99 and fast["int8_images_per_s"] > 0 and fast["fp32_images_per_s"] > 0
    assert fast["callers"] == 2  # measured as it serves: two workers at once
    pictures = [flower_picture(label) for label in FLOWERS]
    assert [labels[0] for labels in top_labels(slot, pictures)] == list(FLOWERS)
    # Its v2 answers say what they are: int8, inexact, with the agreement the gate measured.
    install_slot(slot)
    _, raw = make_key(rate_limit=100, rate_window_seconds=60)
    images = [{"image": base64.b64encode(picture).decode()} for picture in pictures]
    answer = client.post(
        "/api/v2/classify",
        {"images": images, "model": "flowers"},
        format="json",
        HTTP_AUTHORIZATION=f"Bearer {raw}",
    )
    assert answer.status_code == 200, answer.content
    body = answer.json()
    assert [result["predictions"][0]["label"] for result in body["results"]] == list(FLOWERS)
    assert body["engine"] == {
        "name": "openvino",
        "precision": "int8",
        "exact": False,
        "agreement": {**fast["agreement"], "measured_on": "40 images of the folder's calibration/"},
    }


def test_a_fast_mode_below_the_agreement_threshold_is_refused_with_the_numbers(flower_folders, tmp_path):
    folder = calibrated(flower_folders["state_dict"], tmp_path, count=10)
    slot = load(
        folder_source(folder),
        engine="openvino",
        precision="int8",
        CLASSIFIER_ENGINE_CACHE_DIR=tmp_path / "c",
        CLASSIFIER_MIN_TOP1_AGREEMENT=1.01,  # above any measurement: the gate must refuse
    )
    assert slot.status == UNAVAILABLE
    assert "int8 agrees with fp32 on" in slot.reason and "CLASSIFIER_MIN_TOP1_AGREEMENT (101.0%)" in slot.reason


def test_int8_without_calibration_images_is_refused(flower_folders, tmp_path):
    slot = load(
        folder_source(flower_folders["state_dict"]),
        engine="openvino",
        precision="int8",
        CLASSIFIER_ENGINE_CACHE_DIR=tmp_path / "c",
    )
    assert slot.status == UNAVAILABLE and "int8 needs calibration images" in slot.reason


def test_auto_measures_the_exact_engines_and_a_restart_keeps_its_choice(flower_folders, tmp_path):
    settings = {
        "CLASSIFIER_ENGINE_CACHE_DIR": tmp_path / "c",
        "CLASSIFIER_AUTO_MEASURES_ENGINES": True,
        "CLASSIFIER_BATCH_WORKERS": 2,
    }
    first = load(folder_source(flower_folders["state_dict"]), **settings)
    choice = first.model.report["engine_choice"]
    assert set(choice["measured"]) == {"onnxruntime", "openvino"} and choice["callers"] == 2
    assert set(choice["cpu_ms_per_image"]) == {"onnxruntime", "openvino"}
    assert choice["chosen"] == min(choice["cpu_ms_per_image"], key=choice["cpu_ms_per_image"].get)
    assert first.model.engine.name == choice["chosen"] and first.model.engine.exact
    again = load(folder_source(flower_folders["state_dict"]), **settings)
    assert again.model.provenance == "loaded compiled" and again.model.engine.name == choice["chosen"]


def test_a_process_serving_with_other_batch_workers_than_the_race_measured_is_warned(flower_folders, tmp_path, caplog):
    settings = {"CLASSIFIER_ENGINE_CACHE_DIR": tmp_path / "c", "CLASSIFIER_AUTO_MEASURES_ENGINES": True}
    with caplog.at_level("WARNING", logger="classifier.runtime.registry"):
        load(folder_source(flower_folders["state_dict"]), CLASSIFIER_BATCH_WORKERS=2, **settings)
        assert "measuring" not in caplog.text  # compiled and served with the same two workers
        again = load(folder_source(flower_folders["state_dict"]), CLASSIFIER_BATCH_WORKERS=1, **settings)
    assert again.model.provenance == "loaded compiled"  # the same artifact, whatever the worker count
    assert f"auto chose {again.model.engine.name} measuring 2 concurrent callers" in caplog.text
    assert "serves with 1 batch workers" in caplog.text


def test_auto_races_in_the_sandboxed_compiling_child_as_in_process(flower_folders, tmp_path):
    """The default compile runs in the sandboxed child: the plan it receives keeps ``auto``'s fallback, so the
    race runs there too (a child given a plain plan would have compiled ONNX Runtime without measuring)."""
    slot = load(
        folder_source(flower_folders["state_dict"]),
        CLASSIFIER_ENGINE_CACHE_DIR=tmp_path / "c",
        CLASSIFIER_AUTO_MEASURES_ENGINES=True,
        CLASSIFIER_COMPILE_IN_CHILD=True,
        CLASSIFIER_BATCH_WORKERS=2,
    )
    assert slot.status == LOADED, slot.reason
    choice = slot.model.report["engine_choice"]
    assert set(choice["measured"]) == {"onnxruntime", "openvino"} and choice["callers"] == 2
    assert slot.model.engine.name == choice["chosen"]


def test_auto_and_an_explicit_onnxruntime_choice_keep_their_own_artifacts(flower_folders, tmp_path):
    """An explicit CLASSIFIER_ENGINE=onnxruntime compiles without racing; auto's artifact of the same folder is
    another one, raced, and neither loads the other's (auto once served a benchmark's plain ONNX Runtime
    artifact, and an explicit choice could have been served what auto chose)."""
    settings = {"CLASSIFIER_ENGINE_CACHE_DIR": tmp_path / "c", "CLASSIFIER_AUTO_MEASURES_ENGINES": True}
    explicit = load(folder_source(flower_folders["state_dict"]), engine="onnxruntime", **settings)
    assert explicit.model.engine.name == "onnxruntime" and "engine_choice" not in explicit.model.report
    auto = load(folder_source(flower_folders["state_dict"]), **settings)
    assert auto.model.provenance == "compiled here" and "engine_choice" in auto.model.report
    assert auto.model.artifact_key != explicit.model.artifact_key
    again = load(folder_source(flower_folders["state_dict"]), engine="onnxruntime", **settings)
    assert again.model.artifact_key == explicit.model.artifact_key and again.model.engine.name == "onnxruntime"
