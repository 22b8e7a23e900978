import pickle
import urllib.error

import numpy as np
import pytest
import torchvision
from django.test import override_settings

from classifier.runtime.errors import ModelNotFound, ModelUnavailable
from classifier.runtime.registry import LOADED, UNAVAILABLE, Runtime, build_model
from classifier.runtime.sources import ModelSource
from classifier.runtime_settings import runtime_config


def load(**overrides) -> Runtime:
    fresh = Runtime(runtime_config)
    with override_settings(**overrides):
        fresh.start(background=False)
    return fresh


def test_unreachable_default_weights_leave_the_model_unavailable_with_a_reason(monkeypatch, caplog):
    def offline(*args, **kwargs):
        raise urllib.error.URLError("no network")

    monkeypatch.setattr(torchvision.models._api, "load_state_dict_from_url", offline)
    fresh = load(CLASSIFIER_WEIGHTS="default")
    assert fresh.slot().status == UNAVAILABLE
    assert "CLASSIFIER_WEIGHTS" in fresh.slot().reason and "no network" in fresh.slot().reason
    assert [r.levelname for r in caplog.records if r.name == "classifier.runtime.registry"] == ["ERROR"]


def test_state_dict_file_loads(weights_path):
    fresh = load(CLASSIFIER_WEIGHTS=str(weights_path))
    assert fresh.slot().status == LOADED and len(fresh.get().model.labels) == 1000


def test_weights_file_that_is_an_arbitrary_pickle_is_refused(tmp_path, capsys):
    class Exploit:
        def __reduce__(self):
            return (print, ("code ran",))

    path = tmp_path / "evil.pt"
    path.write_bytes(pickle.dumps(Exploit()))
    fresh = load(CLASSIFIER_WEIGHTS=str(path))
    assert fresh.slot().status == UNAVAILABLE and "evil.pt" in fresh.slot().reason
    assert str(tmp_path) not in fresh.slot().reason
    assert "code ran" not in capsys.readouterr().out


@pytest.mark.parametrize(
    "overrides",
    [
        {"CLASSIFIER_WEIGHTS": "/nonexistent/weights.pt"},
        {"CLASSIFIER_MODEL": "no_such_model", "CLASSIFIER_WEIGHTS": "random"},
    ],
)
def test_bad_configuration_is_reported_not_raised(overrides):
    fresh = load(**overrides)
    assert fresh.slot().status == UNAVAILABLE
    with pytest.raises(ModelUnavailable):
        fresh.get()


def test_random_weights_are_marked_untrained():
    fresh = load(CLASSIFIER_WEIGHTS="random")
    assert fresh.slot().status == LOADED and fresh.get().model.pretrained is False


def test_one_broken_model_leaves_the_others_serving_and_readiness_is_per_model():
    fresh = load(CLASSIFIER_MODEL="no_such_model", CLASSIFIER_MODELS={"no_such_model": "", "resnet18": "random"})
    assert fresh.names() == ["no_such_model", "resnet18"]
    with pytest.raises(ModelUnavailable, match="no_such_model"):
        fresh.get()  # the default
    assert fresh.get("resnet18").model.name == "resnet18"
    with pytest.raises(ModelNotFound):
        fresh.get("vgg11")


def test_replacing_a_slot_is_seen_by_the_next_lookup_and_returns_the_old_one():
    fresh = load(CLASSIFIER_WEIGHTS="random")
    old = fresh.slot()
    replacement = load(CLASSIFIER_WEIGHTS="random").slot()
    assert fresh.replace(replacement) is old
    assert fresh.get() is replacement
    with pytest.raises(ValueError):
        fresh.remove("resnet18")


@pytest.mark.parametrize(
    "threads,workers,processes,expected",
    [
        (3, 0, 2, 3),  # an explicit setting wins
        (0, 0, 1, 1),  # default: one batch worker per core, one thread each
        (0, 1, 1, 4),  # one batch worker: every core of the process
        (0, 1, 2, 2),  # N processes share the cores
        (0, 1, 8, 1),  # never below one
    ],
)
def test_torch_threads_split_the_cores_among_processes_and_batch_workers(
    monkeypatch, threads, workers, processes, expected
):
    monkeypatch.setattr("os.cpu_count", lambda: 4)
    with override_settings(
        CLASSIFIER_TORCH_THREADS=threads, CLASSIFIER_BATCH_WORKERS=workers, WEB_CONCURRENCY=processes
    ):
        assert runtime_config().engine_threads() == expected


@pytest.mark.parametrize(
    "configured,device,processes,expected",
    [
        (0, "cpu", 1, 4),  # one per core
        (0, "cpu", 2, 2),  # one per core of this process
        (0, "cuda", 1, 1),  # a GPU runs one batch at a time
        (3, "cpu", 1, 3),
    ],
)
def test_batch_workers_default_to_one_per_core_on_cpu_and_one_on_gpu(
    monkeypatch, configured, device, processes, expected
):

    monkeypatch.setattr("os.cpu_count", lambda: 4)
    with override_settings(CLASSIFIER_BATCH_WORKERS=configured, WEB_CONCURRENCY=processes):
        assert runtime_config().workers_for(device) == expected


def test_trivial_benchmark_model_answers_every_label_without_the_network():
    model = build_model(ModelSource(name="resnet18", architecture="resnet18", weights="trivial"), runtime_config())
    rows = model.run_batch([np.zeros((224, 224, 3), dtype=np.uint8)] * 3)
    assert rows.shape == (3, 1000)
    assert np.allclose(rows.sum(axis=1), 1.0, atol=1e-5)
    assert model.fingerprint is None


@pytest.mark.parametrize("variable,value", [("CLASSIFIER_ENGINE", "tensorrt"), ("CLASSIFIER_PRECISION", "int4")])
def test_an_unknown_engine_or_precision_fails_at_start_naming_the_choices(variable, value):
    import subprocess
    import sys

    from tests.live.server import ROOT

    env = {
        "PATH": "/usr/bin:/bin",
        "DJANGO_SETTINGS_MODULE": "aiserver.settings",
        "DJANGO_DEBUG": "true",
        variable: value,
    }
    result = subprocess.run([sys.executable, "manage.py", "check"], cwd=ROOT, env=env, capture_output=True, text=True)
    assert result.returncode != 0 and f"{variable} must be one of" in result.stderr and value in result.stderr
