"""Zero-downtime version switches on real uvicorn workers under continuous load: register v1 and activate
it, register v2 (other labels) and activate it, roll back to v1; every request is answered 200, and within
CLASSIFIER_SWITCH_DEADLINE_SECONDS of each switch every answer is the new version's. Then on two servers
sharing PostgreSQL, and memory over ten switches."""

import base64
import json
import threading
import time
from dataclasses import dataclass, field

import psutil
import pytest
import requests

from tests.live.server import LiveServer
from tests.model_weights import flower_picture
from tests.services import throwaway_postgres_database

pytestmark = pytest.mark.live
# The promise: every answer comes from the new version within 2 s of the activation (new weights: the gate compiled
# them, so each worker only loads the artifact); the assert allows half as much again for a loaded 2-core machine.
SWITCH_BOUND_SECONDS = 2.0
SWITCH_DEADLINE_SECONDS = SWITCH_BOUND_SECONDS * 1.5
CLIENTS = 3  # client threads sending classifications back to back
RSS_MARGIN_BYTES = 120 * 1024 * 1024  # a freed ResNet-18 version is ~45 MB: three leaked ones would exceed this
ROSE = base64.b64encode(flower_picture("rose")).decode()


@dataclass
class Answer:
    sent: float
    done: float
    status: int
    version: str = ""
    label: str = ""


@dataclass
class ContinuousLoad:
    """CLIENTS threads classifying a rose with model "flowers" on ``urls`` in turn until stopped."""

    urls: list[str]
    key: str
    answers: list[Answer] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)

    def __enter__(self):
        self._threads = [threading.Thread(target=self._client, args=(index,)) for index in range(CLIENTS)]
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        for thread in self._threads:
            thread.join(60)

    def _client(self, index: int) -> None:
        with requests.Session() as session:
            turn = index
            while not self._stop.is_set():
                url = self.urls[turn % len(self.urls)]
                turn += 1
                sent = time.time()
                try:
                    response = session.post(
                        f"{url}/api/v2/classify",
                        headers={"X-API-Key": self.key},
                        timeout=60,
                        json={"images": [{"image": ROSE}], "model": "flowers", "top_k": 1},
                    )
                except requests.RequestException as exc:
                    self.answers.append(Answer(sent, time.time(), 0, label=type(exc).__name__))
                    continue
                answer = Answer(sent, time.time(), response.status_code)
                if response.status_code == 200:
                    body = response.json()
                    answer.version, answer.label = body["model_version"], body["results"][0]["predictions"][0]["label"]
                else:
                    answer.label = response.text[:200]
                self.answers.append(answer)

    def since(self, moment: float) -> list[Answer]:
        return [answer for answer in list(self.answers) if answer.sent >= moment]


LABEL_OF = {"1": "rose", "2": "rose-v2"}


def _activate(server: LiveServer, version: str) -> float:
    """Activate flowers@version (the service activate_model calls); return the wall-clock time of its commit."""
    code = (
        "import time\nfrom classifier.versions import model_version_activate\n"
        f"model_version_activate(name='flowers', version={version!r})\nprint(time.time())"
    )
    return float(server.manage("shell", "-c", code).strip().splitlines()[-1])


def _switch_and_measure(server: LiveServer, load: ContinuousLoad, version: str) -> float:
    """Activate flowers@version; wait until the answers are all that version's; return the seconds from the
    activation's commit to the last answer that still came from another version."""
    committed = _activate(server, version)
    settled = 4 * CLIENTS
    while time.time() < committed + 60:
        recent = load.since(committed)[-settled:]
        if len(recent) == settled and all(answer.version == version for answer in recent):
            break
        time.sleep(0.2)
    old = [answer.done for answer in load.since(committed) if answer.version != version]
    print(f"activated flowers@{version} at {committed:.2f}; last other answer at {max(old, default=committed):.2f}")
    return max(old, default=committed) - committed


def _wait_serving(urls: list[str], key: str, version: str, streak: int = 16, timeout: float = 60) -> None:
    """Until ``streak`` answers in a row (across ``urls``) come from flowers@version."""
    deadline, seen = time.time() + timeout, 0
    while seen < streak:
        assert time.time() < deadline, f"flowers@{version} is not served everywhere"
        url = urls[seen % len(urls)]
        response = requests.post(
            f"{url}/api/v2/classify",
            headers={"X-API-Key": key},
            timeout=30,
            json={"images": [{"image": ROSE}], "model": "flowers", "top_k": 1},
        )
        seen = seen + 1 if response.status_code == 200 and response.json()["model_version"] == version else 0
        if not seen:
            time.sleep(0.2)


def _register_switch_roll_back(servers: list[LiveServer], folders: dict) -> dict:
    """The issue's scenario; returns the measured switch seconds."""
    operator = servers[0]
    key = operator.create_key("versions", rate_limit=1_000_000)
    urls = [server.url for server in servers]
    operator.manage("register_model", "flowers", str(folders["v1"]), "--version", "1", "--activate")
    _wait_serving(urls, key, "1")
    with ContinuousLoad(urls, key) as load:
        operator.manage("register_model", "flowers", str(folders["v2"]), "--version", "2")  # the gate, under load
        operator.manage("activate_model", "flowers@1")  # already active: nothing changes
        to_v2 = _switch_and_measure(operator, load, "2")
        back_to_v1 = _switch_and_measure(operator, load, "1")
    failures = [answer for answer in load.answers if answer.status != 200]
    assert not failures, failures[:5]
    assert all(answer.label == LABEL_OF[answer.version] for answer in load.answers)
    return {"to_v2": round(to_v2, 2), "back_to_v1": round(back_to_v1, 2), "requests": len(load.answers)}


def _check_deadlines(measured: dict) -> None:
    assert measured["to_v2"] < SWITCH_DEADLINE_SECONDS and measured["back_to_v1"] < SWITCH_DEADLINE_SECONDS, measured


def _environment(tmp_path_factory, media_root) -> dict:
    return {
        "DJANGO_MEDIA_ROOT": str(media_root),  # shared: the servers' "S3"
        "CLASSIFIER_MODEL_CACHE_DIR": str(tmp_path_factory.mktemp("model-cache")),  # each machine its own
        "CLASSIFIER_RESULT_CACHE_SECONDS": "0",
        "CLASSIFIER_MODEL_DRAIN_SECONDS": "0.5",
        "CLASSIFIER_MAX_BATCH_SIZE": "4",
        "CLASSIFIER_BATCH_WORKERS": "1",  # on this 2-core machine: leave a core's share for loading the new version
    }


@pytest.mark.timeout(1200)
def test_two_sqlite_workers_switch_and_roll_back_under_load_with_no_failed_request(
    tmp_path_factory, relabelled_flowers
):
    media = tmp_path_factory.mktemp("media")
    database = tmp_path_factory.mktemp("versions-sqlite") / "db.sqlite3"
    server = LiveServer(
        database_url=f"sqlite:///{database}",
        weights="random",
        workers=2,
        extra_env=_environment(tmp_path_factory, media),
    ).start()
    try:
        measured = _register_switch_roll_back([server], relabelled_flowers)
        print(f"\nSQLite, 2 workers: switch seconds {measured}")
        rss = _ten_switches_rss(server)
        print(f"worker RSS after switch 2 and 10 (MB): {rss}")
        for after_two, after_ten in rss:
            assert after_ten <= after_two + RSS_MARGIN_BYTES / 2**20
        _check_deadlines(measured)
    finally:
        server.stop()


@pytest.mark.timeout(1200)
def test_two_servers_on_postgresql_switch_and_roll_back_under_load(tmp_path_factory, relabelled_flowers):
    media = tmp_path_factory.mktemp("media-shared")
    with throwaway_postgres_database("aiserver_versions") as url:
        servers = [
            LiveServer(
                database_url=url, weights="random", workers=1, extra_env=_environment(tmp_path_factory, media)
            ).start()
            for _ in range(2)
        ]
        try:
            measured = _register_switch_roll_back(servers, relabelled_flowers)
            print(f"\nPostgreSQL, 2 servers: switch seconds {measured}")
            _check_deadlines(measured)
        finally:
            for server in servers:
                server.stop()


def _workers(server: LiveServer) -> list[psutil.Process]:
    children = psutil.Process(server.process.pid).children()
    return [child for child in children if "resource_tracker" not in " ".join(child.cmdline())]


def _ten_switches_rss(server: LiveServer) -> list[tuple[float, float]]:
    """(RSS after switch 2, RSS after switch 10) of each worker, in MB. One process makes the ten switches
    (the scenario above left v1 active): it activates, waits until every worker's load status says it serves
    the new version and the old one's drain time is over, and reads the workers' RSS after switches 2 and 10."""
    pids = [worker.pid for worker in _workers(server)]
    assert len(pids) == server.workers
    code = (
        "import json, time, psutil\n"
        "from django.conf import settings\n"
        "from classifier.versions import model_version_activate\n"
        "from classifier.models import ModelLoadStatus\n"
        "rss = {}\n"
        "for switch in range(1, 11):\n"
        "    version = '2' if switch % 2 else '1'\n"
        "    model_version_activate(name='flowers', version=version)\n"
        "    deadline = time.monotonic() + 60\n"
        f"    while ModelLoadStatus.objects.filter(name='flowers', serving=version).count() < {server.workers}:\n"
        "        assert time.monotonic() < deadline, list(ModelLoadStatus.objects.values())\n"
        "        time.sleep(0.1)\n"
        "    time.sleep(settings.CLASSIFIER_MODEL_DRAIN_SECONDS + 1)  # the old version's drain, then its release\n"
        f"    rss[switch] = [psutil.Process(pid).memory_info().rss / 2**20 for pid in {pids!r}]\n"
        "print(json.dumps(rss))\n"
    )
    rss = json.loads(server.manage("shell", "-c", code).strip().splitlines()[-1])
    return [(round(a, 1), round(b, 1)) for a, b in zip(rss["2"], rss["10"])]
