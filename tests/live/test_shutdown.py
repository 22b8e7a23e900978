"""SIGTERM drains: requests in flight when the server is told to stop are answered and logged."""

import base64
import sqlite3
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import requests

from tests.live.load import send_concurrently
from tests.live.server import LiveServer
from tests.model_weights import picture

pytestmark = pytest.mark.live
IMAGES_PER_REQUEST = 16  # CLASSIFIER_MAX_BATCH_IMAGES
REQUESTS = 6
ENDPOINT = "/api/v2/classify"


def query(database: Path, sql: str) -> int:
    """One number from the server's SQLite database, read beside it (WAL lets readers in)."""
    with sqlite3.connect(f"file:{database}?mode=ro", uri=True, timeout=30) as conn:
        return conn.execute(sql).fetchone()[0]


def listen_backlog(port: int) -> int | None:
    """Connections waiting in the listening socket's accept queue (Linux), None where unknown."""
    try:
        lines = Path("/proc/net/tcp").read_text().splitlines()[1:]
    except OSError:
        return None
    for line in lines:
        fields = line.split()
        local, state, queues = fields[1], fields[3], fields[4]
        if state == "0A" and int(local.split(":")[1], 16) == port:  # LISTEN: rx_queue is the accept backlog
            return int(queues.split(":")[1], 16)
    return None


def wait_until(condition, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        time.sleep(0.02)


@pytest.mark.parametrize("process_group", [False, True], ids=["main-process", "process-group"])
def test_sigterm_answers_and_logs_every_request_in_flight(tmp_path, weights_path, process_group):
    database = tmp_path / "db.sqlite3"
    # One image per forward pass: each batch takes a while, with nothing slowed down artificially.
    # The queue holds every image sent: which worker accepts which connection is the kernel's choice,
    # and one worker taking most of them must not be answered 503 overloaded (a bound tested elsewhere).
    server = LiveServer(
        database_url=f"sqlite:///{database}",
        weights=str(weights_path),
        workers=2,
        extra_env={"CLASSIFIER_MAX_BATCH_SIZE": "1", "CLASSIFIER_QUEUE_SIZE": str(REQUESTS * IMAGES_PER_REQUEST)},
    ).start()
    try:
        key = server.create_key("drain", rate_limit=1000)
        batch = {"images": [{"image": base64.b64encode(picture("jellyfish")).decode()}] * IMAGES_PER_REQUEST}
        call = requests.Request("POST", server.url + ENDPOINT, json=batch, headers={"Authorization": f"Bearer {key}"})
        with ThreadPoolExecutor(1) as pool:
            answers = pool.submit(send_concurrently, [call] * REQUESTS)
            # In flight: both workers have admitted a batch (its units are in the window), every
            # connection has been accepted, and no request has finished (no log row yet).
            wait_until(
                lambda: (
                    query(database, "SELECT COALESCE(SUM(cost), 0) FROM accounts_ratelimitevent")
                    >= 2 * IMAGES_PER_REQUEST
                )
            )
            wait_until(lambda: listen_backlog(server.port) in (0, None))
            assert query(database, f"SELECT COUNT(*) FROM accounts_requestlog WHERE endpoint = '{ENDPOINT}'") == 0
            assert not answers.done()
            exit_status = server.terminate(process_group=process_group)
            responses = answers.result()
    finally:
        server.stop()

    assert exit_status == 0
    assert [response.status_code for response in responses] == [200] * REQUESTS
    for response in responses:
        results = response.json()["results"]
        assert [result["predictions"][0]["label"] for result in results] == ["jellyfish"] * IMAGES_PER_REQUEST
    assert server.log_statuses(endpoint=ENDPOINT) == {200: REQUESTS}
