"""Engines: the known answers on each, the compiled artifacts, and the reference comparison (orientation and
layout): our decode -> preprocess -> engine against torchvision's own model and ``weights.transforms()``."""

import hashlib
import io
import json

import numpy as np
import pytest
import torch
import torchvision
from PIL import Image, ImageDraw

from classifier.runtime import engines
from classifier.runtime.engines import BF16_TOLERANCE
from classifier.runtime.kinds import EngineKind
from classifier.runtime.registry import LOADED, describe_slot
from tests.model_weights import ARTIFACT_KINDS, PICTURES, flower_picture, picture, write_model_folder
from tests.runtime.helpers import folder_source, load, probabilities, top_labels, torchvision_source

EXACT = 1e-4
BF16 = torch.ops.mkldnn._is_mkldnn_bf16_supported()
CHOICES = [("torch", "fp32"), ("onnxruntime", "fp32"), ("auto", "auto")] + ([("torch", "bf16")] if BF16 else [])


def ids(choice):
    return "-".join(choice)


@pytest.mark.parametrize("choice", CHOICES, ids=ids)
def test_known_answers_on_every_engine(weights_path, choice):
    engine, precision = choice
    slot = load(torchvision_source(str(weights_path)), engine=engine, precision=precision)
    assert slot.status == LOADED, slot.reason
    labels = list(PICTURES)
    for fmt in ("JPEG", "PNG"):
        assert [top[0] for top in top_labels(slot, [picture(label, fmt=fmt) for label in labels])] == labels


def test_auto_picks_onnxruntime_fp32_on_a_cpu(weights_path):
    described = describe_slot(load(torchvision_source(str(weights_path))), default=True)
    assert (described["engine"], described["precision"], described["exact"], described["device"]) == (
        "onnxruntime",
        "fp32",
        True,
        "cpu",
    )


@pytest.mark.parametrize(
    "engine,precision,reason",
    [
        ("torch", "fp16", "fp16 needs a CUDA device"),
        ("onnxruntime", "bf16", "CLASSIFIER_ENGINE=torch"),
    ],
)
def test_an_engine_that_cannot_serve_says_why(weights_path, engine, precision, reason):
    slot = load(torchvision_source(str(weights_path)), engine=engine, precision=precision)
    assert slot.status == "unavailable" and reason in slot.reason


# --- compiled artifacts: compiled once, loaded alone after ---------------------------------------------------


def artifacts(store):
    return sorted(path.parent.name for path in store.glob("*/manifest.json"))


def test_a_model_is_compiled_once_and_the_next_start_loads_only_the_artifact(flower_folders, tmp_path, monkeypatch):
    store = tmp_path / "engine-cache"
    source = folder_source(flower_folders["state_dict"])
    first = load(source, CLASSIFIER_ENGINE_CACHE_DIR=store)
    (key,) = artifacts(store)
    assert describe_slot(first, default=False)["compiled"]["provenance"] == "compiled here"

    def no_export(*args, **kwargs):
        raise AssertionError("exported again")

    monkeypatch.setattr(torch.onnx, "export", no_export)
    monkeypatch.setattr("classifier.runtime.compiler.load_artifact", no_export)  # not even loaded with torch
    second = load(source, CLASSIFIER_ENGINE_CACHE_DIR=store)
    described = describe_slot(second, default=False)
    assert second.status == LOADED and described["engine"] == "onnxruntime"
    assert described["compiled"]["provenance"] == "loaded compiled" and described["compiled"]["artifact_key"] == key
    assert described["compiled"]["agreement_max_difference"] <= 1e-4
    images = [flower_picture("tulip"), flower_picture("fern")]
    assert np.array_equal(probabilities(first, images), probabilities(second, images))
    assert artifacts(store) == [key]


def test_other_weights_or_another_engine_version_get_their_own_artifact(
    flower_folders, weights_path, tmp_path, monkeypatch
):
    store = tmp_path / "engine-cache"
    load(folder_source(flower_folders["state_dict"]), CLASSIFIER_ENGINE_CACHE_DIR=store)
    load(torchvision_source(str(weights_path)), CLASSIFIER_ENGINE_CACHE_DIR=store)
    assert len(artifacts(store)) == 2
    from classifier.runtime import store as store_module

    versions = store_module.library_versions

    def compiled_by_another_torch(names=store_module.COMPILER_LIBRARIES + store_module.SERVING_LIBRARIES):
        return {
            name: "0.1" if name in ("torch", "torchvision", "onnx") else version
            for name, version in versions(names).items()
        }

    monkeypatch.setattr(store_module, "library_versions", compiled_by_another_torch)
    again = load(torchvision_source(str(weights_path)), CLASSIFIER_ENGINE_CACHE_DIR=store)
    assert len(artifacts(store)) == 2  # a serving image without torch finds what a compiling one wrote
    assert describe_slot(again, default=True)["compiled"]["provenance"] == "loaded compiled"

    def another_onnxruntime(names=store_module.COMPILER_LIBRARIES + store_module.SERVING_LIBRARIES):
        return {name: "99.0" if name == "onnxruntime" else version for name, version in versions(names).items()}

    monkeypatch.setattr(store_module, "library_versions", another_onnxruntime)
    load(torchvision_source(str(weights_path)), CLASSIFIER_ENGINE_CACHE_DIR=store)
    assert len(artifacts(store)) == 3


def test_an_artifact_whose_files_do_not_match_their_digest_is_compiled_again(flower_folders, tmp_path):
    store = tmp_path / "engine-cache"
    source = folder_source(flower_folders["state_dict"])
    load(source, CLASSIFIER_ENGINE_CACHE_DIR=store)
    (key,) = artifacts(store)
    graph = store / key / "model.onnx"
    graph.write_bytes(graph.read_bytes()[:-16] + bytes(16))  # a tampered (or torn) graph
    again = load(source, CLASSIFIER_ENGINE_CACHE_DIR=store)
    assert describe_slot(again, default=False)["compiled"]["provenance"] == "compiled here"
    manifest = json.loads((store / key / "manifest.json").read_text())
    assert hashlib.sha256(graph.read_bytes()).hexdigest() == manifest["files"]["model.onnx"]


def test_a_failed_export_falls_back_to_torch_under_auto_and_fails_under_onnxruntime(
    weights_path, monkeypatch, tmp_path
):
    def unsupported(*args, **kwargs):
        raise RuntimeError("Exporting the operator 'aten::fancy' to ONNX opset version 17 is not supported")

    monkeypatch.setattr(torch.onnx, "export", unsupported)
    store = tmp_path / "engine-cache"  # empty: nothing compiled earlier can answer for the export
    auto = load(torchvision_source("random"), CLASSIFIER_ENGINE_CACHE_DIR=store)
    assert auto.status == LOADED and describe_slot(auto, default=True)["engine"] == "torch"
    forced = load(torchvision_source("random"), engine="onnxruntime", CLASSIFIER_ENGINE_CACHE_DIR=store)
    assert forced.status == "unavailable" and "aten::fancy" in forced.reason


# --- the reference comparison ------------------------------------------------------------------


def photo_like_images() -> dict[str, Image.Image]:
    """Asymmetric pictures: flipping, transposing or mirroring any of them changes what a network sees."""
    width, height = 640, 480
    x, y = np.meshgrid(np.linspace(0, 1, width), np.linspace(0, 1, height))
    gradient = np.stack([x * 255, y * 120, (1 - x) * 255], axis=-1).astype(np.uint8)
    stripes = np.zeros((height, width, 3), np.uint8)
    stripes[:, (np.arange(width) // 20) % 2 == 0] = (220, 40, 30)  # vertical stripes only
    stripes[:, (np.arange(width) // 20) % 2 == 1] = (30, 60, 210)
    off_centre = Image.new("RGB", (500, 300), (40, 180, 60))
    ImageDraw.Draw(off_centre).ellipse((300, 40, 460, 200), fill=(220, 40, 30))
    two_tone = np.concatenate(
        [np.full((350, 300, 3), (220, 40, 30), np.uint8), np.full((350, 300, 3), (40, 180, 60), np.uint8)]
    )
    rng = np.random.default_rng(7)
    noisy = np.clip(gradient[:300, :457] + rng.normal(0, 20, (300, 457, 3)), 0, 255).astype(np.uint8)
    return {
        "gradient": Image.fromarray(gradient),
        "vertical stripes": Image.fromarray(stripes),
        "off-centre disc": off_centre,
        "tall two-tone": Image.fromarray(two_tone),
        "small noisy gradient": Image.fromarray(noisy),
        "large gradient": Image.fromarray(gradient).resize((1600, 1200)),
    }


def png(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


@pytest.fixture(scope="module")
def reference(probe_weights_path):
    """torchvision's own model and transform on the probe weights: probabilities per picture."""
    network = torchvision.models.get_model("resnet18", weights=None)
    network.load_state_dict(torch.load(probe_weights_path, weights_only=True))
    transform = torchvision.models.ResNet18_Weights.DEFAULT.transforms()
    images = photo_like_images()
    with torch.inference_mode():
        rows = torch.softmax(network.eval()(torch.stack([transform(image) for image in images.values()])), dim=1)
    return dict(zip(images, rows.numpy()))


@pytest.mark.parametrize("choice", CHOICES, ids=ids)
def test_the_pipeline_on_every_engine_matches_torchvisions_reference_on_asymmetric_pictures(
    probe_weights_path, reference, choice
):
    engine, precision = choice
    slot = load(torchvision_source(str(probe_weights_path)), engine=engine, precision=precision)
    assert slot.status == LOADED, slot.reason
    images = photo_like_images()
    ours = dict(zip(images, probabilities(slot, [png(image) for image in images.values()])))
    exact = slot.model.engine.exact
    for name in images:
        expected, got = reference[name], ours[name]
        if exact:
            assert list(np.argsort(-got)[:5]) == list(np.argsort(-expected)[:5]), name
            assert np.abs(got - expected).max() <= EXACT, name
        else:
            assert np.argmax(got) == np.argmax(expected), name
            assert np.abs(got - expected).max() <= BF16_TOLERANCE, name


@pytest.fixture(scope="module")
def probe_folders(probe_weights_path, tmp_path_factory):
    network = torchvision.models.get_model("resnet18", weights=None)
    network.load_state_dict(torch.load(probe_weights_path, weights_only=True))
    root = tmp_path_factory.mktemp("probe-folders")
    categories = torchvision.models.ResNet18_Weights.DEFAULT.meta["categories"]
    folders = {}
    for kind in ARTIFACT_KINDS:
        folders[kind] = write_model_folder(root / kind, kind, network.eval(), labels=categories)
    return folders


@pytest.mark.parametrize(
    "kind,engine",
    [
        ("state_dict", "auto"),
        ("torchscript", "auto"),
        ("torchscript", "torch"),
        ("onnx", "auto"),
    ],
)
def test_every_artifact_kind_matches_torchvisions_reference_on_asymmetric_pictures(
    probe_folders, reference, kind, engine
):
    slot = load(folder_source(probe_folders[kind]), engine=engine)
    assert slot.status == LOADED, slot.reason
    images = photo_like_images()
    for name, got in zip(images, probabilities(slot, [png(image) for image in images.values()])):
        assert list(np.argsort(-got)[:5]) == list(np.argsort(-reference[name])[:5]), name
        assert np.abs(got - reference[name]).max() <= EXACT, name


def test_the_reference_comparison_would_see_a_transposed_image(probe_weights_path, reference):
    """The probe is sensitive: the same pictures transposed answer far outside the exact tolerance."""
    slot = load(torchvision_source(str(probe_weights_path)), engine="torch", precision="fp32")
    images = photo_like_images()
    transposed = probabilities(slot, [png(image.transpose(Image.Transpose.TRANSPOSE)) for image in images.values()])
    differences = [np.abs(row - reference[name]).max() for name, row in zip(images, transposed)]
    assert min(differences) > 100 * EXACT


def test_engines_protocol_lists_what_each_engine_declares():
    assert EngineKind.choices() == ["auto", "torch", "onnxruntime", "openvino"]
    assert engines.OnnxRuntimeEngine.exact is True and engines.OnnxRuntimeEngine.precision == "fp32"
