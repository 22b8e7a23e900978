import datetime as dt

import pytest
from django.test import override_settings
from django.utils import timezone
from rest_framework.test import APIClient

from accounts.services import api_key_create
from classifier import serving
from classifier.runtime.registry import LOADED
from classifier.serving import process_runtime
from tests.model_weights import (
    ARTIFACT_KINDS,
    FLOWERS,
    fine_tuned_flowers,
    make_probe_weights,
    make_weights,
    write_model_folder,
)

# The test process loads its model itself (loaded_model, with the tests' weights): importing a serving entry point
# (aiserver.asgi, for its handler) must not start a second load with the default weights. tests/runtime/test_serving.py
# checks start_serving() itself.
serving._started = True


@pytest.fixture(scope="session")
def weights_path(tmp_path_factory):
    """The deterministic test weights, generated once per test session."""
    return make_weights(tmp_path_factory.mktemp("weights") / "resnet18-test.pt")


@pytest.fixture(scope="session")
def flowers_network():
    """A user's fine-tuned 5-class network (tests.model_weights.FLOWERS), fitted once per test session."""
    return fine_tuned_flowers()


@pytest.fixture(scope="session")
def flower_folders(tmp_path_factory, flowers_network):
    """The fine-tuned network as a model folder of each artifact kind: {kind: folder}."""
    root = tmp_path_factory.mktemp("models")
    return {kind: write_model_folder(root / f"flowers-{kind}", kind, flowers_network) for kind in ARTIFACT_KINDS}


@pytest.fixture(scope="session")
def library_photos():
    """Real photographs (scikit-image's) and asymmetric pictures, encoded: {file name: bytes}."""
    from tests.library_models import real_photos

    return real_photos()


@pytest.fixture(scope="session")
def library_folders(tmp_path_factory):
    """A tiny timm ResNet, EfficientNet and ViT and a transformers ViT and ConvNeXt, saved by their libraries:
    {"timm:test_vit": folder, ...}."""
    from tests.library_models import LIBRARY_MODELS, write_library_folder

    root = tmp_path_factory.mktemp("library-models")
    return {model: write_library_folder(root / model.replace(":", "-"), model) for model in LIBRARY_MODELS}


@pytest.fixture(scope="session")
def library_answers(library_folders, library_photos):
    """Each library's own probabilities for the photos: {model: rows in library_photos' order}."""
    from tests.library_models import library_probabilities

    photos = list(library_photos.values())
    return {model: library_probabilities(folder, model, photos) for model, folder in library_folders.items()}


@pytest.fixture(scope="session")
def probe_weights_path(tmp_path_factory):
    """Weights whose answers move with orientation and layout (tests.model_weights.make_probe_weights)."""
    return make_probe_weights(tmp_path_factory.mktemp("probe") / "resnet18-probe.pt")


@pytest.fixture(scope="session")
def loaded_model(weights_path):
    """The process's registry, loaded with the test weights (as ready() does when serving)."""
    with override_settings(CLASSIFIER_WEIGHTS=str(weights_path)):
        process_runtime().start(background=False)
        assert process_runtime().slot().status == LOADED, process_runtime().slot().reason
        yield process_runtime()


@pytest.fixture
def install_slot():
    """Put slots into the process's registry for one test; the registry is as it was afterwards."""
    installed = []

    def install(slot):
        installed.append((slot.name, process_runtime().replace(slot)))
        return slot

    yield install
    for name, previous in reversed(installed):
        if previous is None:
            process_runtime().remove(name)
        else:
            process_runtime().replace(previous)


@pytest.fixture
def make_key(db):
    def make(name="test-key", **kwargs):
        return api_key_create(name=name, **kwargs)

    return make


@pytest.fixture
def api_key(make_key):
    """(ApiKey, raw key) with a generous limit."""
    return make_key(rate_limit=1000, rate_window_seconds=60)


@pytest.fixture
def client():
    return APIClient()


@pytest.fixture
def auth_client(api_key):
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {api_key[1]}")
    return client


@pytest.fixture
def yesterday():
    return timezone.now() - dt.timedelta(days=1)


@pytest.fixture(autouse=True)
def fresh_anonymous_clients(monkeypatch):
    """Each test's database starts without anonymous counts: forget the clients admitted in this minute."""
    from accounts import services

    monkeypatch.setattr(services, "anonymous_clients", services.AnonymousClients())


@pytest.fixture(autouse=True)
def fresh_window_store():
    """Key ids restart in every test's database; with Redis windows, start from an empty store too."""
    from classifier.api.throttling import SlidingWindowThrottle

    store = SlidingWindowThrottle.store
    if hasattr(store, "_redis"):
        store._redis.flushdb()
    yield


@pytest.fixture(autouse=True)
def empty_result_cache():
    """Each test starts with no cached results, so it sees its own model calls."""
    from django.core.cache import cache

    cache.clear()
    yield


@pytest.fixture
def database_windows(monkeypatch):
    """The database window store for this test, whatever REDIS_URL says: for tests that count the
    RateLimitEvent rows a charge writes (the Redis store keeps its windows in Redis instead)."""
    from accounts.windows import DatabaseWindowStore
    from classifier.api.throttling import SlidingWindowThrottle

    monkeypatch.setattr(SlidingWindowThrottle, "store", DatabaseWindowStore())


@pytest.fixture(scope="session")
def static_manifest_root(tmp_path_factory):
    """A STATIC_ROOT holding only collectstatic's manifest, naming every static file the apps have (what
    classifier.checks reads; the hashed copies themselves are left out: collecting them takes seconds)."""
    import json

    from django.contrib.staticfiles import finders

    root = tmp_path_factory.mktemp("static-manifest")
    paths = {path: path for finder in finders.get_finders() for path, _ in finder.list(["CVS", ".*", "*~"])}
    (root / "staticfiles.json").write_text(json.dumps({"version": "1.1", "paths": paths, "hash": ""}))
    return root


@pytest.fixture
def version_storage(settings, tmp_path):
    """Model versions' files and the local copies in this test's own folders (MEDIA_ROOT, the cache)."""
    settings.MEDIA_ROOT = tmp_path / "media"
    settings.CLASSIFIER_MODEL_CACHE_DIR = tmp_path / "model-versions"
    return tmp_path


@pytest.fixture(scope="session")
def relabelled_flowers(tmp_path_factory, flowers_network):
    """The flowers network as TorchScript folders with other labels: {"v1": folder, "v2": folder}, for switches
    that show in the answers (v2's labels end in "-v2")."""
    root = tmp_path_factory.mktemp("versions")
    return {
        "v1": write_model_folder(root / "v1", "torchscript", flowers_network),
        "v2": write_model_folder(
            root / "v2", "torchscript", flowers_network, labels=[f"{label}-v2" for label in FLOWERS]
        ),
    }
