"""Folders as timm and transformers save them, served as they are: the same labels and confidences as the library's
own answer (timm's create_transform + model, transformers' image-classification pipeline) on real photographs."""

import json
import shutil
import subprocess
import sys

import numpy as np
import pytest

from classifier.runtime.formats import FolderKind, folder_kind
from classifier.runtime.registry import LOADED, UNAVAILABLE, describe_slot
from tests.library_models import CLASSES, LIBRARY_MODELS, edit_json
from tests.live.server import ROOT
from tests.runtime.helpers import folder_source, load, probabilities

EXACT = 1e-4  # the target: confidences within 1e-4 of the library's own on the exact engine


def top5(row: np.ndarray) -> list[str]:
    return [CLASSES[index] for index in np.argsort(-row, kind="stable")[:5]]


@pytest.fixture(scope="module")
def served(library_folders):
    """Each library folder loaded once on the default (compiled, exact) engine: {model: slot}."""
    return {
        model: load(folder_source(folder, name=model.replace(":", "-"))) for model, folder in library_folders.items()
    }


@pytest.mark.parametrize("model", LIBRARY_MODELS)
def test_a_library_folder_answers_as_its_library_does_on_real_photos(served, library_photos, library_answers, model):
    slot = served[model]
    assert slot.status == LOADED, slot.reason
    ours = probabilities(slot, list(library_photos.values()))
    theirs = library_answers[model]
    for name, got, expected in zip(library_photos, ours, theirs):
        assert top5(got) == top5(expected), name
    assert np.abs(ours - theirs).max() <= EXACT
    assert len({top5(row)[0] for row in theirs}) > 1 or theirs.max() < 0.9  # the photos move the answer


@pytest.mark.parametrize("model", LIBRARY_MODELS)
def test_a_library_folder_is_described_with_its_library_and_preprocessing(served, model):
    described = describe_slot(served[model], default=False)
    library = model.split(":")[0]
    assert described["artifact"] == library and described["engine"] == "onnxruntime" and described["exact"]
    assert described["num_labels"] == len(CLASSES)
    preprocessing = served[model].model.preprocessing.describe()
    assert preprocessing["source"] == "library" and preprocessing["draft"] is False
    assert preprocessing["crop"]["rounding"] == ("floor" if library == "transformers" else "round")


def test_folders_are_recognised_by_their_files(library_folders, flower_folders):
    assert folder_kind(library_folders["timm:test_vit"]) == FolderKind.TIMM
    assert folder_kind(library_folders["transformers:vit"]) == FolderKind.TRANSFORMERS
    assert all(folder_kind(folder) is None for folder in flower_folders.values())


def _lying_header(folder):
    """A safetensors header that claims a tensor larger than the bytes it points at."""
    path = folder / "model.safetensors"
    data = path.read_bytes()
    length = int.from_bytes(data[:8], "little")
    header = json.loads(data[8 : 8 + length])
    name = next(key for key in header if key != "__metadata__" and header[key]["shape"])
    header[name]["shape"] = [dimension * 2 for dimension in header[name]["shape"]]
    encoded = json.dumps(header).encode()
    encoded += b" " * (-len(encoded) % 8)
    path.write_bytes(len(encoded).to_bytes(8, "little") + encoded + data[8 + length :])


def _fewer_labels(folder):
    config = json.loads((folder / "config.json").read_text())
    config["id2label"] = {str(index): name for index, name in enumerate(CLASSES[:4])}
    config["label2id"] = {name: index for index, name in enumerate(CLASSES[:4])}
    (folder / "config.json").write_text(json.dumps(config))


BAD = {
    "no preprocessor_config.json": (
        "transformers:vit",
        lambda f: (f / "preprocessor_config.json").unlink(),
        "no preprocessor_config.json",
    ),
    "id2label shorter than the head": ("transformers:convnext", _fewer_labels, "id2label has 4 labels"),
    "an unknown model_type": (
        "transformers:vit",
        lambda f: edit_json(f / "config.json", model_type="vit-from-the-future"),
        "model_type 'vit-from-the-future'",
    ),
    "a safetensors header that lies (transformers)": ("transformers:vit", _lying_header, "model.safetensors"),
    "a safetensors header that lies (timm)": ("timm:test_resnet", _lying_header, "model.safetensors"),
    "label_names shorter than num_classes": (
        "timm:test_resnet",
        lambda f: edit_json(f / "config.json", label_names=CLASSES[:3]),
        "label_names has 3 names",
    ),
    "an unknown timm architecture": (
        "timm:test_vit",
        lambda f: edit_json(f / "config.json", architecture="resnet9000"),
        "resnet9000",
    ),
}


@pytest.mark.parametrize("case", list(BAD))
def test_a_bad_library_folder_is_unavailable_with_a_reason_naming_the_problem(library_folders, tmp_path, case):
    model, edit, expected = BAD[case]
    folder = shutil.copytree(library_folders[model], tmp_path / "bad")
    edit(folder)
    slot = load(folder_source(folder, name="bad"))
    assert slot.status == UNAVAILABLE and expected in slot.reason, slot.reason
    assert str(tmp_path) not in slot.reason


def test_a_serving_process_loads_the_compiled_artifact_without_torch_or_the_libraries(served, library_folders):
    assert served["transformers:vit"].status == LOADED  # compiled (and stored) by this process
    script = (
        "import os, sys, pathlib\n"
        "os.environ['DJANGO_SETTINGS_MODULE'] = 'tests.settings'\n"
        "import django\n"
        "django.setup()\n"
        "from classifier.runtime.registry import build_model\n"
        "from classifier.runtime.sources import ModelSource\n"
        "from classifier.runtime_settings import runtime_config\n"
        f"folder = pathlib.Path({str(library_folders['transformers:vit'])!r})\n"
        "model = build_model(ModelSource(name='transformers-vit', architecture=None, folder=folder), runtime_config())\n"
        "print(model.provenance, model.kind, [name for name in ('torch', 'transformers', 'timm') if name in sys.modules])\n"
    )
    completed = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert completed.returncode == 0, completed.stderr[-2000:]
    assert completed.stdout.split("\n")[-2] == "loaded compiled transformers []", completed.stdout
