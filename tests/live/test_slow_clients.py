"""Slow and oversized clients against a real uvicorn started with the deployed flags (DEPLOYED_UVICORN_FLAGS).

The timeouts are set short through their named settings, so each attack is cut within seconds; every
wait below is bounded by a generous multiple of the setting, and none is asserted as a duration.
"""

import base64
import contextlib
import json
import re
import select
import socket
import time

import pytest
import requests

from tests.live.server import DEPLOYED_UVICORN_FLAGS, ROOT, LiveServer
from tests.model_weights import picture

HEAD_TIMEOUT_S, BODY_TIMEOUT_S, IDLE_TIMEOUT_S = 2, 3, 1
METRICS_TOKEN = "slow-clients-metrics"
SETTINGS = {
    "METRICS_TOKEN": METRICS_TOKEN,
    "API_HEADER_READ_TIMEOUT_SECONDS": str(HEAD_TIMEOUT_S),
    "API_BODY_READ_TIMEOUT_SECONDS": str(BODY_TIMEOUT_S),
    "API_BODY_IDLE_TIMEOUT_SECONDS": str(IDLE_TIMEOUT_S),
}
GIVE_UP_S = 30  # far beyond any of the timeouts: a connection still open by then was held
MAX_HEADER_BYTES = 32 * 1024  # API_MAX_HEADER_BYTES's default
H11_LIMIT = int(DEPLOYED_UVICORN_FLAGS[DEPLOYED_UVICORN_FLAGS.index("--h11-max-incomplete-event-size") + 1])


@pytest.fixture(scope="module")
def server(tmp_path_factory, weights_path):
    root = tmp_path_factory.mktemp("slow-clients")
    live = LiveServer(
        database_url=f"sqlite:///{root / 'db.sqlite3'}", weights=str(weights_path), workers=1, extra_env=SETTINGS
    ).start()
    live.key = live.create_key("slow", rate_limit=1000)
    yield live
    live.stop()


def connect(server) -> socket.socket:
    return socket.create_connection(("127.0.0.1", server.port), timeout=GIVE_UP_S)


def read_until_closed(sock: socket.socket) -> bytes:
    """Everything the server sends until it closes the connection (or resets it)."""
    received = b""
    try:
        while chunk := sock.recv(65536):
            received += chunk
    except ConnectionResetError:
        pass
    return received


def small_requests_are_answered(server) -> None:
    assert requests.get(f"{server.url}/healthz", timeout=10).status_code == 200
    body = {"image": base64.b64encode(picture("goldfish")).decode()}
    answer = requests.post(
        f"{server.url}/api/v1/classify", json=body, timeout=30, headers={"Authorization": f"Bearer {server.key}"}
    )
    assert answer.status_code == 200, answer.text


def requests_counted(server, status: str) -> float:
    """aiserver_requests_total for ``status``, every /api/ route together (one worker: no multiprocess dir)."""
    text = requests.get(f"{server.url}/metrics", headers={"Authorization": f"Bearer {METRICS_TOKEN}"}, timeout=10).text
    return sum(
        float(value)
        for labels, value in re.findall(r"^aiserver_requests_total\{([^}]*)\} (\S+)$", text, re.M)
        if f'status="{status}"' in labels
    )


def status_and_json(response: bytes) -> tuple[int, dict]:
    head, _, body = response.partition(b"\r\n\r\n")
    if b"transfer-encoding: chunked" in head.lower():
        chunks = []
        while body and not body.startswith(b"0\r\n"):
            size, _, rest = body.partition(b"\r\n")
            chunks.append(rest[: int(size, 16)])
            body = rest[int(size, 16) + 2 :]
        body = b"".join(chunks)
    return int(head.split()[1]), json.loads(body)


@pytest.mark.live
def test_a_half_sent_head_is_disconnected_while_others_are_served(server):
    stalled = [connect(server) for _ in range(3)]
    for sock in stalled:
        sock.sendall(b"POST /api/v1/classify HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ")  # and nothing more
    idle = connect(server)  # opens a connection and sends nothing at all

    small_requests_are_answered(server)
    for sock in [*stalled, idle]:
        assert read_until_closed(sock) == b""  # closed by the server, no answer; recv would time out if held
        sock.close()
    small_requests_are_answered(server)


@pytest.mark.live
def test_a_body_dripping_in_is_cut_with_408_and_logged(server):
    before = requests_counted(server, "408")
    sock = connect(server)
    sock.sendall(
        b"POST /api/v1/classify HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
        b"Authorization: Bearer " + server.key.encode() + b"\r\nContent-Length: 100000\r\n\r\n"
    )
    for sent in range(GIVE_UP_S * 4):  # one byte at a time, each well within the idle timeout
        if select.select([sock], [], [], 0)[0]:  # the server has answered
            break
        try:
            sock.sendall(b" ")
        except (BrokenPipeError, ConnectionResetError):
            break
        if sent == 2:
            small_requests_are_answered(server)
        time.sleep(IDLE_TIMEOUT_S / 4)
    answered = read_until_closed(sock)
    sock.close()

    status, body = status_and_json(answered)
    assert (status, body["code"]) == (408, "request_timeout")
    assert requests_counted(server, "408") == before + 1  # counted (and logged) like any request
    small_requests_are_answered(server)


@pytest.mark.live
def test_a_body_that_stops_is_cut_with_408(server):
    sock = connect(server)
    sock.sendall(
        b"POST /api/v2/classify HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
        b'Content-Length: 1000\r\n\r\n{"images": ['
    )
    status, body = status_and_json(read_until_closed(sock))
    sock.close()

    assert (status, body["code"]) == (408, "request_timeout")


@pytest.mark.live
def test_an_8_mb_header_is_refused_before_it_is_read(server):
    sock = connect(server)
    answered = b""
    with contextlib.suppress(BrokenPipeError, ConnectionResetError):  # the server stops reading at its h11 limit
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Big: " + b"a" * (8 << 20) + b"\r\n\r\n")
    answered = read_until_closed(sock)
    sock.close()

    assert answered == b"" or re.match(rb"HTTP/1\.1 4\d\d ", answered), answered[:200]
    assert not answered.startswith(b"HTTP/1.1 200")
    small_requests_are_answered(server)


@pytest.mark.live
def test_headers_over_the_app_limit_get_431_json(server):
    assert MAX_HEADER_BYTES < H11_LIMIT  # between the two limits the app answers, in its own words
    answer = requests.get(
        f"{server.url}/api/v1/model/info", headers={"X-Big": "a" * (MAX_HEADER_BYTES + 1000)}, timeout=10
    )

    assert answer.status_code == 431 and answer.json()["code"] == "headers_too_large"
    assert requests_counted(server, "431") == 1


def _flag_pairs(text: str) -> set[str]:
    words = re.sub(r"\\\n", " ", text).split()
    return {f"{flag} {value}" for flag, value in zip(words, words[1:]) if flag.startswith("--")}


def test_make_run_the_image_and_the_deployment_docs_start_the_serve_command_the_live_tests_run():
    deployment = (ROOT / "docs" / "deployment.md").read_text()
    bare = deployment[deployment.index("## Bare uvicorn") :]
    assert "manage.py serve" in bare[: bare.index("```", bare.index("```sh") + 5)]
    assert "manage.py serve" in (ROOT / "Makefile").read_text()
    assert '"serve"' in (ROOT / "Containerfile").read_text()
    # the docs list the flags serve passes
    wanted = {f"{flag} {value}" for flag, value in zip(DEPLOYED_UVICORN_FLAGS[::2], DEPLOYED_UVICORN_FLAGS[1::2])}
    assert wanted <= _flag_pairs(bare)


KEEP_ALIVE_S = int(DEPLOYED_UVICORN_FLAGS[DEPLOYED_UVICORN_FLAGS.index("--timeout-keep-alive") + 1])


def read_one_answer(sock: socket.socket) -> bytes:
    """One whole answer (head and a chunked or Content-Length body), leaving the connection as it is."""
    received = b""
    while b"\r\n\r\n" not in received or not answer_complete(*received.split(b"\r\n\r\n", 1)):
        chunk = sock.recv(65536)
        assert chunk, received
        received += chunk
    return received


def answer_complete(head: bytes, body: bytes) -> bool:
    length = re.search(rb"(?im)^content-length: *(\d+)", head)
    return len(body) >= int(length.group(1)) if length else body.endswith(b"0\r\n\r\n")


@pytest.mark.live
@pytest.mark.parametrize(
    "head, first_bytes",
    [
        (b"Content-Length: 999999999\r\n", b""),  # refused on its declared length, nothing read
        (b"Transfer-Encoding: chunked\r\n", b"%x\r\n" % (11 << 20) + b"A" * (11 << 20)),  # cut at the limit
    ],
    ids=["declared", "chunked"],
)
def test_one_byte_after_a_413_does_not_hold_the_connection(server, head, first_bytes):
    """The answer came before the body ended: the connection closes within the keep-alive time, whatever the
    client sends after it (before, one byte re-armed nothing and held it for ever)."""
    sock = connect(server)
    sock.sendall(b"POST /api/v1/classify HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n" + head)
    sock.sendall(b"\r\n" + first_bytes)
    answer = read_one_answer(sock)
    status, body = status_and_json(answer)
    assert (status, body["code"]) == (413, "payload_too_large")
    assert b"connection: close" in answer.lower()

    sock.sendall(b"A")  # then silence
    sock.settimeout(KEEP_ALIVE_S * 3)  # a held connection times out here: socket.timeout fails the test
    assert read_until_closed(sock) == b""
    sock.close()
    small_requests_are_answered(server)


@pytest.mark.live
def test_a_413_is_read_by_a_client_that_sends_its_whole_body_first(server):
    """Closing after the answer lingers while the client still sends, so it reads the 413, not a reset."""
    answer = requests.post(
        f"{server.url}/api/v1/classify",
        data=b"A" * (11 << 20),
        headers={"Authorization": f"Bearer {server.key}", "Content-Type": "application/json"},
        timeout=GIVE_UP_S,
    )
    assert (answer.status_code, answer.json()["code"]) == (413, "payload_too_large")
    assert answer.headers["Connection"] == "close"


@pytest.mark.live
def test_a_request_with_both_lengths_is_refused_400_and_the_connection_closed(server):
    """RFC 9112 §6.3: Content-Length with Transfer-Encoding may be smuggling; the pipelined request is not read."""
    sock = connect(server)
    sock.sendall(
        b"POST /api/v1/classify HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n"
        b"\r\n0\r\n\r\nGET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"
    )
    answered = read_until_closed(sock)
    sock.close()

    status, body = status_and_json(answered)
    assert (status, body["code"]) == (400, "parse_error")
    assert answered.count(b"HTTP/1.1 ") == 1  # the pipelined GET got no answer
    small_requests_are_answered(server)
