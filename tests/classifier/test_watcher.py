"""The version watcher of a serving process: load beside, swap, free the old, survive failures."""

import json
import shutil

import pytest

from classifier import versions
from classifier.api.exceptions import api_error
from classifier.models import ModelLoadStatus
from classifier.runtime.errors import BatcherClosed, ModelUnavailable
from classifier.runtime.registry import Ready, Runtime, Slot, Unavailable
from classifier.runtime.sources import ModelSource
from classifier.runtime_settings import runtime_config
from classifier.watcher import VersionWatcher
from tests.classifier.factories import stored_version
from tests.model_weights import FLOWERS, flower_picture
from tests.runtime.helpers import top_labels

pytestmark = pytest.mark.django_db


@pytest.fixture
def watcher(settings, version_storage):
    settings.CLASSIFIER_ENGINE = "torch"
    settings.CLASSIFIER_MODEL_DRAIN_SECONDS = 0
    watcher = VersionWatcher(Runtime(runtime_config))
    watcher.registry.replace(Slot(source=ModelSource(name="resnet18", architecture="resnet18")))  # the default
    yield watcher
    for name in watcher.registry.names():
        slot = watcher.registry.peek(name)
        if slot is not None and slot.batcher is not None:
            slot.batcher.close()


def _status(watcher):
    row = ModelLoadStatus.objects.get(worker=watcher.worker, name="flowers")
    return row.version, row.outcome, row.serving, row.reason


def test_an_activated_version_is_loaded_and_swapped_in_and_the_old_one_is_freed(watcher, relabelled_flowers):
    stored_version(relabelled_flowers["v1"], version="1")
    stored_version(relabelled_flowers["v2"], version="2")
    assert watcher.sync() == []
    versions.model_version_activate(name="flowers", version="1")
    assert watcher.sync() == ["flowers"]
    first = watcher.registry.get("flowers")
    first_batcher = first.batcher
    assert first.model.version == "1" and top_labels(first, [flower_picture("rose")]) == [["rose"]]
    assert _status(watcher) == ("1", "loaded", "1", "")
    assert watcher.sync() == []  # nothing changed: nothing loads

    versions.model_version_activate(name="flowers", version="2")
    assert watcher.sync() == ["flowers"]
    second = watcher.registry.get("flowers")
    assert second.model.version == "2" and top_labels(second, [flower_picture("rose")]) == [["rose-v2"]]
    for timer in watcher.retiring:
        timer.join(10)
    assert first_batcher.closed and first.model is None and first.batcher is None
    assert isinstance(first.state, Unavailable) and first.reason == "Replaced by a newer version."
    with pytest.raises(BatcherClosed):
        first_batcher.submit(None)

    versions.model_version_activate(name="flowers", version="1")  # the roll-back
    assert watcher.sync() == ["flowers"] and watcher.registry.get("flowers").model.version == "1"


def test_a_version_that_fails_to_load_leaves_the_old_one_serving_and_says_why(watcher, relabelled_flowers, tmp_path):
    stored_version(relabelled_flowers["v1"], version="1", status="active")
    watcher.sync()
    wrong = shutil.copytree(relabelled_flowers["v2"], tmp_path / "wrong")
    (wrong / "labels.json").write_text(json.dumps(list(FLOWERS)[:3]))
    stored_version(wrong, version="2")  # as if it had passed the gate on another machine
    versions.model_version_activate(name="flowers", version="2")
    assert watcher.sync() == []
    assert watcher.registry.get("flowers").model.version == "1"
    version, outcome, serving, reason = _status(watcher)
    assert (version, outcome, serving) == ("2", "failed", "1")
    assert "5 outputs but there are 3 labels" in reason
    assert watcher.sync() == [] and watcher.registry.get("flowers").model.version == "1"  # not retried every poll


def test_stored_files_that_do_not_match_their_sha256_are_not_loaded(watcher, relabelled_flowers):
    row = stored_version(relabelled_flowers["v1"], version="1", status="active")
    row.sha256 = "f" * 64
    row.save()
    assert watcher.sync() == []
    assert _status(watcher)[1:] == ("failed", "", "the stored files of flowers@1 do not match its sha256")
    with pytest.raises(Exception):
        watcher.registry.get("flowers")


def test_retiring_the_only_version_of_a_name_not_in_settings_stops_serving_it(watcher, relabelled_flowers):
    row = stored_version(relabelled_flowers["v1"], version="1", status="active")
    watcher.sync()
    versions.model_version_retire(model_version=row)
    assert watcher.sync() == ["flowers"]
    assert "flowers" not in watcher.registry.names()


def test_a_database_outage_is_logged_and_the_models_keep_serving(watcher, relabelled_flowers, monkeypatch, caplog):
    from django.db import OperationalError

    stored_version(relabelled_flowers["v1"], version="1", status="active")
    watcher.sync()

    def unreachable():
        raise OperationalError("connection refused")

    monkeypatch.setattr("classifier.selectors.active_version_ids", unreachable)
    watcher.sync_safely()
    assert watcher.registry.get("flowers").model.version == "1"
    assert "model version check failed" in caplog.text


def test_a_request_that_took_a_replaced_version_runs_again_on_the_new_one(monkeypatch, loaded_model):
    from classifier import services
    from tests.model_weights import picture

    current = loaded_model.get()
    closed = Slot(
        source=current.source,
        state=Ready(
            model=current.model,
            batcher=type(current.batcher)(lambda images: None, max_batch_size=1, max_delay_s=0, queue_size=1),
        ),
    )
    closed.batcher.close()
    answers = iter([closed, current])
    monkeypatch.setattr(services.process_runtime(), "get", lambda name=None: next(answers))
    model, (predictions,) = services.classify_images([picture("goldfish")], top_k=1)
    assert model.version == "settings" and predictions[0].label == "goldfish"

    monkeypatch.setattr(services.process_runtime(), "get", lambda name=None: closed)
    with pytest.raises(ModelUnavailable) as raised:  # a new image: not in the result cache
        services.classify_images([picture("jellyfish")], top_k=1)
    answer = api_error(raised.value)
    assert answer.status_code == 503 and "switching versions" in str(answer.detail)
