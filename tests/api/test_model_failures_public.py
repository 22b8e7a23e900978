"""A model that fails to load: the public answers (/api/v1/model/info, /api/v2/models, /readyz, the landing
page) name the file and the error type, never the server's directories; the server log keeps the detail."""

import json
import pathlib

import pytest
import torch
import torchvision
from django.conf import settings

from classifier.runtime import compiler
from classifier.runtime.registry import UNAVAILABLE
from classifier.serving import process_runtime
from tests.model_weights import write_model_folder
from tests.runtime.helpers import folder_source, load, torchvision_source

PUBLIC_PAGES = ["/api/v1/model/info", "/api/v2/models", "/readyz", "/"]
HUB_CACHE = "/srv/secret-home/.cache/torch/hub/checkpoints"  # where torchvision keeps downloaded weights


def weights_file(root, content: bytes | None) -> pathlib.Path:
    path = root / "weights.pt"
    if content is not None:
        path.write_bytes(content)
    return path


def folder(root, network, kind="state_dict", **files) -> pathlib.Path:
    path = write_model_folder(root / "flowers", kind, network)
    for name, text in files.items():
        (path / name.replace("_", ".")).write_text(text)
    return path


def raise_permission_denied(path_of):
    def denied(*args, **kwargs):
        raise PermissionError(13, "Permission denied", str(path_of(*args)))

    return denied


def missing_file(root, network, monkeypatch):
    return torchvision_source(str(weights_file(root, None))), ["weights.pt"]


def corrupt_file(root, network, monkeypatch):
    return torchvision_source(str(weights_file(root, b"\x80\x04 not a state_dict"))), ["weights.pt", "UnpicklingError"]


def wrong_labels(root, network, monkeypatch):
    return folder_source(folder(root, network, labels_json='["a", "b", "c"]')), ["model.pt", "does not fit"]


def unknown_architecture(root, network, monkeypatch):
    return folder_source(folder(root, network, config_json='{"architecture": "resnet9000"}')), ["config.json"]


def permission_denied_on_weights(root, network, monkeypatch):
    monkeypatch.setattr(torch, "load", raise_permission_denied(lambda path, *a: path))
    return torchvision_source(str(weights_file(root, b"x"))), ["weights.pt", "PermissionError"]


def permission_denied_in_a_folder(root, network, monkeypatch):
    model_folder = folder(root, network)
    monkeypatch.setattr(pathlib.Path, "read_text", raise_permission_denied(lambda path, *a: path))
    return folder_source(model_folder), ["PermissionError"]


def onnxruntime_error_naming_the_path(root, network, monkeypatch):
    model_folder = folder(root, network, kind="onnx")

    def failing_session(*args, **kwargs):
        raise RuntimeError(
            f"[ONNXRuntimeError] : 7 : INVALID_PROTOBUF : Load model from {model_folder}/model.onnx failed"
        )

    import onnxruntime

    monkeypatch.setattr(onnxruntime, "InferenceSession", failing_session)
    return folder_source(model_folder), ["model.onnx", "RuntimeError"]


def torchscript_error_naming_the_path(root, network, monkeypatch):
    model_folder = folder(root, network, kind="torchscript")

    def failing_load(path, *args, **kwargs):
        raise RuntimeError(f"PytorchStreamReader failed locating file constants.pkl in {path}")

    monkeypatch.setattr(torch.jit, "load", failing_load)
    return folder_source(model_folder), ["model.ts", "RuntimeError"]


def engine_cache_not_writable(root, network, monkeypatch):
    monkeypatch.setattr(settings, "CLASSIFIER_ENGINE_CACHE_DIR", root / "engine-cache")  # nothing compiled yet
    monkeypatch.setattr(
        compiler, "export_onnx", raise_permission_denied(lambda *a, **k: root / "engine-cache" / "x.onnx")
    )
    return torchvision_source("random"), ["PermissionError", "x.onnx"]


def download_cache_not_writable(root, network, monkeypatch):
    monkeypatch.setattr(
        torchvision.models._api, "load_state_dict_from_url", raise_permission_denied(lambda *a, **k: HUB_CACHE)
    )
    return torchvision_source("default"), ["PermissionError", "checkpoints", "CLASSIFIER_WEIGHTS"]


FAILURES = [
    missing_file,
    corrupt_file,
    wrong_labels,
    unknown_architecture,
    permission_denied_on_weights,
    permission_denied_in_a_folder,
    onnxruntime_error_naming_the_path,
    torchscript_error_naming_the_path,
    engine_cache_not_writable,
    download_cache_not_writable,
]


@pytest.mark.django_db
@pytest.mark.parametrize("failure", FAILURES, ids=lambda failure: failure.__name__)
def test_a_failed_model_shows_no_server_path_in_public_answers(
    failure, tmp_path, flowers_network, monkeypatch, loaded_model, install_slot, client, caplog
):
    root = tmp_path / "srv-private-models"
    root.mkdir()
    source, shown = failure(root, flowers_network, monkeypatch)
    secrets = [str(root), HUB_CACHE] if failure is download_cache_not_writable else [str(root)]
    source = type(source)(**{**source.__dict__, "name": process_runtime().default_name})
    slot = load(source, engine="onnxruntime" if "onnx" in failure.__name__ or "engine" in failure.__name__ else "auto")
    monkeypatch.undo()  # the loading failed; the pages render with the real libraries
    install_slot(slot)

    assert slot.status == UNAVAILABLE
    for expected in shown:
        assert expected in slot.reason
    for page in PUBLIC_PAGES:
        response = client.get(page)
        text = response.content.decode()
        assert response.status_code in (200, 503), page
        for secret in secrets:
            assert secret not in text and secret.replace("/", "\\/") not in text, (page, text)
    info = client.get("/api/v2/models").json()["models"][0]
    assert info["status"] == "unavailable" and json.dumps(info).count(shown[0]) >= 1
    logged = caplog.text
    assert any(secret in logged for secret in secrets)  # the server's log keeps the full detail


def test_only_absolute_paths_are_cut_to_their_file_names():
    from classifier.runtime.registry import _without_directories

    text = (
        "download https://download.pytorch.org/models/resnet18-f37072fd.pth failed: [Errno 13] Permission "
        "denied: '/home/app/.cache/torch/hub/checkpoints/' (model.onnx, config/labels.json, /srv/m/model.ts)"
    )
    assert _without_directories(text) == (
        "download https://download.pytorch.org/models/resnet18-f37072fd.pth failed: [Errno 13] Permission "
        "denied: 'checkpoints' (model.onnx, config/labels.json, model.ts)"
    )
