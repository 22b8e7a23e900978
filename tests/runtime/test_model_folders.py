"""A user's own model, served from a folder: every artifact kind, on every engine that can run it."""

import json
import pickle

import numpy as np
import pytest
import torch
import torchvision

from classifier.runtime.registry import LOADED, UNAVAILABLE, Runtime, describe_slot
from classifier.runtime_settings import runtime_config
from tests.model_weights import ARTIFACT_KINDS, FLOWERS, flower_picture, write_model_folder
from tests.runtime.helpers import folder_source, load, probabilities, top_labels

EXACT = 1e-4  # an exact engine's largest probability difference from eager fp32 torch
ENGINES_BY_KIND = [
    (kind, engine)
    for kind in ARTIFACT_KINDS
    for engine in ("auto", "torch", "onnxruntime")
    if not (kind == "onnx" and engine == "torch")
]
PICTURES = [flower_picture(label) for label in FLOWERS]


def reference_probabilities(network: torch.nn.Module, images: list[bytes]) -> np.ndarray:
    """Eager fp32 torch with torchvision's own transform: what every engine must agree with."""
    import io

    from PIL import Image

    transform = torchvision.models.ResNet18_Weights.DEFAULT.transforms()
    batch = torch.stack([transform(Image.open(io.BytesIO(data)).convert("RGB")) for data in images])
    with torch.inference_mode():
        return torch.softmax(network(batch), dim=1).numpy()


@pytest.mark.parametrize("kind,engine", ENGINES_BY_KIND)
def test_a_fine_tuned_folder_answers_its_own_labels_on_every_engine(flower_folders, flowers_network, kind, engine):
    slot = load(folder_source(flower_folders[kind]), engine=engine)
    assert slot.status == LOADED, slot.reason
    assert [labels[0] for labels in top_labels(slot, PICTURES)] == list(FLOWERS)
    difference = np.abs(probabilities(slot, PICTURES) - reference_probabilities(flowers_network, PICTURES)).max()
    assert difference <= EXACT
    described = describe_slot(slot, default=False)
    expected_engine = "torch" if engine == "torch" else "onnxruntime"
    assert described["reason"] == "" and described["status"] == "loaded"
    assert (described["artifact"], described["engine"], described["precision"], described["exact"]) == (
        kind,
        expected_engine,
        "fp32",
        True,
    )
    assert described["num_labels"] == 5 and described["weights"] == f"folder:{flower_folders[kind].name}"


def test_an_onnx_model_cannot_be_forced_onto_torch(flower_folders):
    slot = load(folder_source(flower_folders["onnx"]), engine="torch")
    assert slot.status == UNAVAILABLE and "onnxruntime" in slot.reason


def test_bf16_is_opt_in_and_marked_inexact(flower_folders):
    if not torch.ops.mkldnn._is_mkldnn_bf16_supported():
        pytest.skip("this CPU has no bf16 support")
    slot = load(folder_source(flower_folders["state_dict"]), precision="bf16")
    assert slot.status == LOADED, slot.reason
    described = describe_slot(slot, default=False)
    assert (described["engine"], described["precision"], described["exact"]) == ("torch", "bf16", False)
    assert [labels[0] for labels in top_labels(slot, PICTURES)] == list(FLOWERS)


def broken(folder, kind, network, *, edit):
    write_model_folder(folder, kind, network)
    edit(folder)
    return folder


def _evil_pickle(folder):
    class Exploit:
        def __reduce__(self):
            return (print, ("code ran",))

    (folder / "model.pt").write_bytes(pickle.dumps(Exploit()))


BROKEN = {
    "no labels": ("state_dict", lambda f: (f / "labels.json").unlink(), "no labels.json"),
    "labels not json": (
        "state_dict",
        lambda f: (f / "labels.json").write_text("daisy, rose"),
        "labels.json is not valid JSON",
    ),
    "labels not strings": ("state_dict", lambda f: (f / "labels.json").write_text("[1, 2, 3, 4, 5]"), "label strings"),
    "index gap": (
        "torchscript",
        lambda f: (f / "labels.json").write_text(json.dumps({"0": "a", "2": "b"})),
        "none missing",
    ),
    "state_dict with too few labels": (
        "state_dict",
        lambda f: (f / "labels.json").write_text('["a", "b", "c", "d"]'),
        "does not fit the architecture",
    ),
    "torchscript with too few labels": (
        "torchscript",
        lambda f: (f / "labels.json").write_text('["a", "b", "c"]'),
        "gives 5 outputs but there are 3 labels",
    ),
    "onnx with too many labels": (
        "onnx",
        lambda f: (f / "labels.json").write_text(json.dumps(list("abcdefg"))),
        "gives 5 outputs but there are 7 labels",
    ),
    "no model file": ("state_dict", lambda f: (f / "model.pt").unlink(), "no model file"),
    "two model files": ("state_dict", lambda f: (f / "model.ts").write_bytes(b"x"), "more than one model file"),
    "corrupt torchscript": (
        "torchscript",
        lambda f: (f / "model.ts").write_bytes(b"not a zip archive"),
        "not a loadable TorchScript module",
    ),
    "corrupt onnx": (
        "onnx",
        lambda f: (f / "model.onnx").write_bytes(b"\x08\x07garbage"),
        "does not load in onnxruntime",
    ),
    "onnx of another input size": (
        "onnx",
        lambda f: (f / "config.json").write_text('{"crop": 192, "resize": 220}'),
        "crops 192x192",
    ),
    "state_dict without architecture": (
        "state_dict",
        lambda f: (f / "config.json").unlink(),
        "must name its torchvision",
    ),
    "unknown architecture": (
        "state_dict",
        lambda f: (f / "config.json").write_text('{"architecture": "resnet9000"}'),
        "is not a torchvision classifier",
    ),
    "unknown config key": (
        "state_dict",
        lambda f: (f / "config.json").write_text('{"architecture": "resnet18", "mena": []}'),
        "unknown keys mena",
    ),
    "bad interpolation": (
        "state_dict",
        lambda f: (f / "config.json").write_text('{"architecture": "resnet18", "interpolation": "smooth"}'),
        "interpolation must be one of",
    ),
    "crop above resize": (
        "state_dict",
        lambda f: (f / "config.json").write_text('{"architecture": "resnet18", "resize": 200, "crop": 224}'),
        "crop must not be larger than resize",
    ),
    "bad std": (
        "state_dict",
        lambda f: (f / "config.json").write_text('{"architecture": "resnet18", "std": [0.2, 0, 0.2]}'),
        "std values must be positive",
    ),
    "infinite std": (
        "state_dict",
        lambda f: (f / "config.json").write_text('{"architecture": "resnet18", "std": [Infinity, 0.2, 0.2]}'),
        "std values must be finite numbers",
    ),
    "NaN mean": (
        "state_dict",
        lambda f: (f / "config.json").write_text('{"architecture": "resnet18", "mean": [0.5, NaN, 0.5]}'),
        "mean values must be finite numbers",
    ),
    "pickle in place of a state_dict": ("state_dict", _evil_pickle, "model.pt is not a loadable state_dict"),
}


@pytest.mark.parametrize("case", list(BROKEN))
def test_each_way_an_artifact_can_be_bad_gives_an_unavailable_model_with_a_reason(
    tmp_path, flowers_network, capsys, case
):
    kind, edit, expected = BROKEN[case]
    folder = broken(tmp_path / "broken", kind, flowers_network, edit=edit)
    slot = load(folder_source(folder, name="broken"))
    assert slot.status == UNAVAILABLE and slot.model is None
    assert expected in slot.reason and "broken" in slot.reason
    assert str(tmp_path) not in slot.reason  # never the server's paths
    assert "code ran" not in capsys.readouterr().out


def test_a_broken_model_leaves_the_others_serving(tmp_path, flowers_network, flower_folders, settings):
    folder = broken(tmp_path / "broken", "onnx", flowers_network, edit=lambda f: (f / "model.onnx").write_bytes(b"x"))
    settings.CLASSIFIER_MODEL = "broken"
    settings.CLASSIFIER_MODELS = {"broken": str(folder), "flowers": str(flower_folders["onnx"])}
    fresh = Runtime(runtime_config)
    fresh.start(background=False)
    assert [model["status"] for model in fresh.describe()] == ["unavailable", "loaded"]
    assert top_labels(fresh.get("flowers"), [flower_picture("rose")]) == [["rose"]]


def _with_external_data(folder, location: str = "model.onnx.data"):
    """The folder's model.onnx re-saved as current torch.onnx.export writes it: the graph, its weights in a file."""
    import onnx

    graph = onnx.load(str(folder / "model.onnx"))
    onnx.save_model(
        graph,
        str(folder / "model.onnx"),
        save_as_external_data=True,
        all_tensors_to_one_file=True,
        location="model.onnx.data",
        size_threshold=0,
    )
    if location != "model.onnx.data":
        graph = onnx.load(str(folder / "model.onnx"), load_external_data=False)
        for tensor in graph.graph.initializer:
            for entry in tensor.external_data:
                if entry.key == "location":
                    entry.value = location
        onnx.save_model(graph, str(folder / "model.onnx"))
    return folder


def test_an_onnx_graph_with_external_data_is_served(tmp_path, flowers_network):
    folder = _with_external_data(write_model_folder(tmp_path / "external", "onnx", flowers_network))
    assert (folder / "model.onnx.data").stat().st_size > (folder / "model.onnx").stat().st_size
    slot = load(folder_source(folder))
    assert slot.status == LOADED, slot.reason
    assert [labels[0] for labels in top_labels(slot, PICTURES)] == list(FLOWERS)
    assert np.abs(probabilities(slot, PICTURES) - reference_probabilities(flowers_network, PICTURES)).max() <= EXACT


@pytest.mark.parametrize("location", ["../model.onnx.data", "/etc/hostname", "sub/model.onnx.data", "link.data"])
def test_external_data_outside_the_folder_is_refused(tmp_path, flowers_network, location):
    folder = _with_external_data(write_model_folder(tmp_path / "external", "onnx", flowers_network), location)
    (folder / "sub").mkdir()
    (folder / "sub" / "model.onnx.data").write_bytes((folder / "model.onnx.data").read_bytes())
    (folder / "link.data").symlink_to(folder / "model.onnx.data")
    (tmp_path / "model.onnx.data").write_bytes((folder / "model.onnx.data").read_bytes())
    slot = load(folder_source(folder))
    assert slot.status == UNAVAILABLE and "external data" in slot.reason, slot.reason


@pytest.mark.parametrize("kind", ["torchscript", "onnx"])
def test_a_folder_whose_preprocessing_cannot_be_inferred_is_refused(tmp_path, flowers_network, kind):
    folder = broken(tmp_path / "bare", kind, flowers_network, edit=lambda f: (f / "config.json").unlink())
    slot = load(folder_source(folder))
    assert slot.status == UNAVAILABLE and "no config.json" in slot.reason and "preprocessing" in slot.reason


def test_config_json_states_timm_and_hf_preprocessing_and_draft(tmp_path, flowers_network):
    config = {"architecture": "resnet18", "crop": 224, "crop_pct": 0.95, "crop_mode": "squash"}
    config |= {"crop_rounding": "floor", "interpolation": "bicubic", "draft": True}
    folder = broken(
        tmp_path / "stated",
        "state_dict",
        flowers_network,
        edit=lambda f: (f / "config.json").write_text(json.dumps(config)),
    )
    slot = load(folder_source(folder))
    assert slot.status == LOADED, slot.reason
    described = describe_slot(slot, default=False)["preprocessing"]
    assert described["resize"] == {"mode": "squash", "size": 235}  # floor(224 / 0.95)
    assert described["crop"] == {"size": 224, "rounding": "floor"}
    assert (described["interpolation"], described["draft"], described["source"]) == ("bicubic", True, "config")


@pytest.mark.parametrize(
    "config,expected",
    [
        ({"crop_mode": "zoom"}, "crop_mode must be one of center, squash, border"),
        ({"crop_pct": 0}, "crop_pct must be a number above 0"),
        ({"crop_pct": 0.9, "resize": 256}, "give resize or crop_pct, not both"),
        ({"channel_order": "GRB"}, "channel_order must be one of RGB, BGR"),
        ({"draft": "yes"}, "draft must be true or false"),
        ({"rescale_factor": 2}, "rescale_factor must be a number above 0"),
    ],
)
def test_a_bad_preprocessing_key_is_refused_naming_it(tmp_path, flowers_network, config, expected):
    config = {"architecture": "resnet18", **config}
    folder = broken(
        tmp_path / "bad",
        "state_dict",
        flowers_network,
        edit=lambda f: (f / "config.json").write_text(json.dumps(config)),
    )
    slot = load(folder_source(folder, name="bad"))
    assert slot.status == UNAVAILABLE and expected in slot.reason, slot.reason
