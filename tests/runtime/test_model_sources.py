from pathlib import Path

import pytest

from aiserver.config import model_entries
from classifier.runtime.sources import ModelSource, model_sources


def torchvision(name: str, weights: str) -> ModelSource:
    return ModelSource(name=name, architecture=name, weights=weights)


@pytest.mark.parametrize(
    "entries,sources",
    [
        ([], [torchvision("resnet18", "W")]),
        (
            ["resnet18", "mobilenet_v3_small=random"],
            [torchvision("resnet18", "W"), torchvision("mobilenet_v3_small", "random")],
        ),
        (["resnet18=/w/r.pt", "resnet18"], [torchvision("resnet18", "/w/r.pt")]),
        (
            ["alexnet", " vgg11 "],
            [torchvision("resnet18", "W"), torchvision("alexnet", "W"), torchvision("vgg11", "W")],
        ),
    ],
)
def test_model_sources_put_the_v1_model_first_once(entries, sources):
    """CLASSIFIER_MODELS as settings parse it (model_entries), then as the runtime reads it."""
    assert model_sources(model_entries(entries), default_model="resnet18", default_weights="W") == sources


def test_an_entry_is_parsed_once_into_name_and_weights():
    assert model_entries(["a", " b = /w/b.pt ", "c=random", "a=random", ""]) == {
        "a": "random",
        "b": "/w/b.pt",
        "c": "random",
    }


def test_a_folder_names_a_user_model_and_a_bare_name_a_torchvision_one(tmp_path):
    folder = tmp_path / "flowers"
    folder.mkdir()
    sources = model_sources(
        {"flowers": str(folder), "resnet18": ""}, default_model="flowers", default_weights="default"
    )
    assert sources == [
        ModelSource(name="flowers", architecture=None, folder=folder),
        torchvision("resnet18", "default"),
    ]
    assert sources[0].described == "folder:flowers" and str(tmp_path) not in sources[0].described


@pytest.mark.parametrize(
    "weights,described",
    [
        ("default", "default"),
        ("random", "random"),
        ("trivial", "trivial"),
        ("/srv/secret/w.pt", "file:w.pt"),
    ],
)
def test_weights_are_described_without_the_servers_paths(weights, described):
    assert torchvision("resnet18", weights).described == described
    assert "secret" not in Path(described).as_posix()
