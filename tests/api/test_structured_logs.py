"""DJANGO_LOG_FORMAT: one JSON object per log line (aiserver.log_format), and the request line's fields."""

import base64
import io
import json
import logging
import re
import subprocess
import sys
from pathlib import Path

import pytest

from aiserver.log_format import JsonFormatter
from tests.model_weights import picture

ROOT = Path(__file__).resolve().parents[2]
TEXT_LINE = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} (INFO|WARNING|ERROR) [\w.]+: .+$")


@pytest.fixture
def json_lines():
    """Every log record of the test, formatted as the json format formats it; a function returning the lines."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    root.addHandler(handler)
    previous_level = root.level
    root.setLevel(logging.INFO)
    yield lambda: stream.getvalue().splitlines()
    root.removeHandler(handler)
    root.setLevel(previous_level)


def request_lines(lines: list[str]) -> list[dict]:
    return [line for line in map(json.loads, lines) if line["logger"] == "aiserver.requests"]


def test_a_record_is_one_json_line_with_its_exception():
    try:
        raise ValueError("bad\nthing")
    except ValueError:
        record = logging.LogRecord("aiserver.test", logging.ERROR, __file__, 1, "failed on %s", ("x",), sys.exc_info())
    record.route = "/api/v1/classify"  # as extra= sets it

    text = JsonFormatter().format(record)
    line = json.loads(text)

    assert "\n" not in text
    assert (line["level"], line["logger"], line["message"], line["route"]) == (
        "ERROR",
        "aiserver.test",
        "failed on x",
        "/api/v1/classify",
    )
    assert re.match(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}\+00:00$", line["time"])
    assert "Traceback" in line["exception"] and "ValueError: bad\nthing" in line["exception"]


@pytest.mark.django_db
def test_the_request_line_has_id_key_prefix_route_method_status_and_latency(
    auth_client, api_key, loaded_model, json_lines
):
    key, raw_key = api_key
    image = base64.b64encode(picture("goldfish")).decode()
    auth_client.post("/api/v2/classify", {"images": [{"image": image}]}, format="json", HTTP_X_REQUEST_ID="caller-id-1")
    auth_client.get("/api/v1/model/info")

    v2, info = request_lines(json_lines())
    assert v2 == {
        **v2,
        "request_id": "caller-id-1",
        "key_prefix": key.prefix,
        "route": "/api/v2/classify",
        "method": "POST",
        "status": 200,
        "level": "INFO",
    }
    assert isinstance(v2["latency_ms"], float) and v2["latency_ms"] > 0
    assert (info["route"], info["status"], info["request_id"]) == ("/api/v1/model/info", 200, None)


@pytest.mark.django_db
def test_no_log_line_holds_the_key_or_the_raw_path(client, api_key, json_lines):
    _, raw_key = api_key
    wrong_key = raw_key[:-4] + "zzzz"
    client.post("/api/v1/classify", {}, format="json", HTTP_AUTHORIZATION=f"Bearer {raw_key}")  # 400: no image
    client.post("/api/v1/classify", {}, format="json", HTTP_AUTHORIZATION=f"Bearer {wrong_key}")  # 401
    client.get("/api/v1/no-such-thing-chosen-by-the-caller", HTTP_X_API_KEY=raw_key)  # 404

    lines = json_lines()
    assert [(line["route"], line["status"]) for line in request_lines(lines)] == [
        ("/api/v1/classify", 400),
        ("/api/v1/classify", 401),
        ("unmatched", 404),
    ]
    for text in lines:
        assert raw_key not in text and wrong_key not in text and raw_key[8:] not in text
    assert not any("no-such-thing-chosen-by-the-caller" in line["message"] for line in request_lines(lines))


def configured_logging(log_format: str | None) -> subprocess.CompletedProcess:
    """A process configured by settings.LOGGING with DJANGO_LOG_FORMAT=log_format; it logs a line and an exception."""
    code = (
        "import logging, logging.config; import aiserver.settings as s; logging.config.dictConfig(s.LOGGING)\n"
        "logging.getLogger('aiserver.requests').info('GET %s', '/healthz', extra={'status': 200})\n"
        "try:\n    1 / 0\nexcept ZeroDivisionError:\n    logging.getLogger('classifier').exception('it failed')\n"
    )
    env = {"PATH": "/usr/bin:/bin", "DJANGO_DEBUG": "true", **({"DJANGO_LOG_FORMAT": log_format} if log_format else {})}
    return subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)


def test_json_format_writes_every_record_as_a_json_line():
    result = configured_logging("json")

    request, failure = (json.loads(line) for line in result.stderr.splitlines())
    assert (request["message"], request["status"], request["logger"]) == ("GET /healthz", 200, "aiserver.requests")
    assert failure["level"] == "ERROR" and "ZeroDivisionError" in failure["exception"]


def test_text_format_is_the_default_and_unchanged():
    result = configured_logging(None)

    lines = result.stderr.splitlines()
    assert TEXT_LINE.match(lines[0]) and lines[0].endswith(" INFO aiserver.requests: GET /healthz")
    assert lines[1].endswith(" ERROR classifier: it failed") and lines[2] == "Traceback (most recent call last):"


def test_an_unknown_log_format_is_refused_at_start_up():
    result = configured_logging("yaml")

    assert result.returncode != 0 and "DJANGO_LOG_FORMAT must be text or json" in result.stderr
