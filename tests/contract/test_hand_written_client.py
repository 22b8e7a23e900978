"""The hand-written client (``aiserver_client`` and its CLI) sends and reads only what docs/openapi.json declares.

No server: ``requests.Session.request`` is replaced by ``SchemaServer``, which checks each request
against the committed schema (operation, query parameters, Bearer auth, JSON body against its
request component closed to undeclared fields) and answers it with the schema's own example for
that operation. The answer notes every field the client and the CLI read from it, and each read
field must be declared in that operation's answer component. So renaming a field on either side
fails here, and docs/openapi.json is the served schema (test_committed_schema.py).
"""

import json
from collections import defaultdict
from pathlib import Path
from urllib.parse import parse_qsl, urlsplit

import jsonschema
import pytest
import requests

from aiserver_client import ApiError, Client
from aiserver_client.cli import main
from aiserver_client.client import RETRY_STATUSES
from tests.contract.helpers import closed, declared_fields, operations

SCHEMA = json.loads((Path(__file__).resolve().parents[2] / "docs" / "openapi.json").read_text())
URL, KEY = "http://server", "ais_key"
JSON = "application/json"
MODELS, USAGE, CLASSIFY = ("/api/v2/models", "get"), ("/api/v2/usage", "get"), ("/api/v2/classify", "post")

# The client's methods that call the server, and the operation each calls (classify_files is
# models + classify, run through the CLI below). A new endpoint method needs a row here.
CLIENT_METHODS = {
    "models": (MODELS, lambda client: client.models()),
    "usage": (USAGE, lambda client: client.usage(days=7)),
    "classify": (CLASSIFY, lambda client: client.classify([("cat.png", b"png")], top_k=3, model="resnet18")),
}
# CLI commands (run in a folder holding cat.png and notes.txt) and the operations they call, in order.
# The classify answer example has two results, one classified and one per-image error.
COMMANDS = {
    "models": (["models"], [MODELS]),
    "usage": (["usage"], [USAGE]),
    "usage --days": (["usage", "--days", "7"], [USAGE]),
    "usage --since --until": (["usage", "--since", "2026-11-01T00:00:00Z", "--until", "2026-11-02T00:00:00Z"], [USAGE]),
    "classify": (
        ["classify", "cat.png", "notes.txt", "--top-k", "3", "--model", "resnet18", "--no-progress"],
        [MODELS, CLASSIFY],
    ),
    "classify --batch-size": (["classify", "cat.png", "notes.txt", "--batch-size", "2", "--no-progress"], [CLASSIFY]),
}


class ReadRecorder(dict):
    """A JSON object that adds the path of each field read from it (``results[].error.code``) to ``reads``."""

    def __init__(self, value: dict, at: str, reads: set[str]):
        super().__init__(value)
        self.at, self.reads = at, reads

    def _read(self, name: str) -> str:
        field = f"{self.at}.{name}" if self.at else name
        self.reads.add(field)
        return field

    def __getitem__(self, name):
        field = self._read(name)
        return _recorded(super().__getitem__(name), field, self.reads)

    def get(self, name, default=None):
        field = self._read(name)
        return _recorded(super().get(name, default), field, self.reads)

    def __contains__(self, name):
        self._read(name)
        return super().__contains__(name)


def _recorded(value, at: str, reads: set[str]):
    if isinstance(value, dict):
        return ReadRecorder(value, at, reads)
    if isinstance(value, list):
        return [_recorded(item, f"{at}[]", reads) for item in value]
    return value


class Answer(requests.Response):
    def __init__(self, status: int, body: ReadRecorder):
        super().__init__()
        self.status_code, self.body = status, body
        self._content = json.dumps(body).encode()

    def json(self, **kwargs):
        return self.body


class SchemaServer:
    """Stands in for ``requests.Session.request``: checks each request against the schema, answers its example."""

    def __init__(self, status: str = "200"):
        self.status = status
        self.called: list[tuple[str, str]] = []
        self.reads: dict[tuple[str, str], set[str]] = defaultdict(set)

    def request(self, method: str, url: str, **kwargs) -> Answer:
        unexpected = set(kwargs) - {"headers", "timeout", "params", "json"}
        assert not unexpected, f"the client sends {unexpected}: check them here (multipart: field names, required ones)"
        prepared = requests.Request(
            method,
            url,
            headers=kwargs.get("headers"),
            params=kwargs.get("params"),
            json=kwargs.get("json"),
        ).prepare()
        operation = assert_declared_request(prepared)
        self.called.append(operation)
        examples = operations(SCHEMA)[operation]["responses"][self.status]["content"][JSON]["examples"]
        example = next(iter(examples.values()))["value"]
        return Answer(int(self.status), ReadRecorder(example, "", self.reads[operation]))


def assert_declared_request(prepared: requests.PreparedRequest) -> tuple[str, str]:
    """The (path, method) of ``prepared``, after checking that the schema declares all of it."""
    url = urlsplit(prepared.url)
    key = (url.path, prepared.method.lower())
    operation = operations(SCHEMA).get(key)
    assert operation, f"{prepared.method} {url.path} is not an operation of docs/openapi.json"
    parameters = {p["name"]: p["schema"] for p in operation.get("parameters", []) if p["in"] == "query"}
    for name, raw in parse_qsl(url.query):
        assert name in parameters, f"{prepared.method} {url.path}: query parameter {name} is not declared"
        jsonschema.validate(query_value(raw, parameters[name]), parameters[name], cls=jsonschema.Draft4Validator)
    assert prepared.headers["Authorization"].startswith("Bearer ") and {"BearerAuth": []} in operation["security"]
    if prepared.body is None:
        assert not operation.get("requestBody", {}).get("required"), f"{key}: the request body is required"
    else:
        content_type = prepared.headers["Content-Type"]
        content = operation["requestBody"]["content"]
        assert content_type in content, f"{key}: the request body is never {content_type}"
        component = closed(SCHEMA, content[content_type]["schema"])
        jsonschema.validate(json.loads(prepared.body), component, cls=jsonschema.Draft4Validator)
    return key


def query_value(raw: str, parameter: dict):
    """A query string value as the type its parameter declares (left a string when it is not one)."""
    kind = parameter.get("type")
    try:
        return int(raw) if kind == "integer" else float(raw) if kind == "number" else raw
    except ValueError:
        return raw


def answer_component(operation: tuple[str, str], status: str = "200") -> dict:
    return operations(SCHEMA)[operation]["responses"][status]["content"][JSON]["schema"]


@pytest.fixture
def server(monkeypatch, tmp_path):
    """A SchemaServer behind every requests session, in a folder with two files to classify."""
    schema_server = SchemaServer()
    monkeypatch.setattr(requests.Session, "request", schema_server.request)
    monkeypatch.chdir(tmp_path)
    (tmp_path / "cat.png").write_bytes(b"png bytes")
    (tmp_path / "notes.txt").write_bytes(b"not a picture")
    return schema_server


def run_cli(argv: list[str]) -> int:
    return main([*argv, "--url", URL, "--key", KEY])


@pytest.mark.parametrize("command", COMMANDS)
def test_each_request_the_cli_sends_is_declared_in_the_schema(server, command):
    argv, called = COMMANDS[command]
    run_cli(argv)
    assert server.called == called  # each was checked by assert_declared_request as it was sent


@pytest.mark.parametrize("command", COMMANDS)
def test_each_field_the_cli_reads_is_declared_in_the_answer(server, command):
    argv, called = COMMANDS[command]
    try:
        run_cli(argv)
    finally:  # before any KeyError of a field the example lacks: it may be one the schema lacks too
        for operation in called:
            undeclared = server.reads[operation] - declared_fields(SCHEMA, answer_component(operation))
            assert not undeclared, f"{operation}: the client reads {sorted(undeclared)}; its 200 answer lacks them"
            assert server.reads[operation], f"{operation}: no field of its answer was read"


@pytest.mark.parametrize("method", CLIENT_METHODS)
def test_the_clients_own_calls_send_declared_requests(server, method):
    operation, call = CLIENT_METHODS[method]
    call(Client(URL, KEY))
    assert server.called == [operation]


def test_every_endpoint_method_of_the_client_is_checked_and_the_cli_calls_each():
    public = {name for name, value in vars(Client).items() if callable(value) and not name.startswith("_")}
    assert public - {"classify_files"} == set(CLIENT_METHODS)
    assert {operation for operation, _ in CLIENT_METHODS.values()} == {
        operation for _, called in COMMANDS.values() for operation in called
    }


@pytest.mark.parametrize("method", CLIENT_METHODS)
def test_the_client_reads_its_errors_as_error_output(server, method):
    operation, call = CLIENT_METHODS[method]
    for status, response in operations(SCHEMA)[operation]["responses"].items():
        if status.startswith("2"):
            continue
        component = answer_component(operation, status)
        assert component == {"$ref": "#/components/schemas/ErrorOutput"}
        server.status, server.reads = status, defaultdict(set)
        with pytest.raises(ApiError) as raised:
            call(Client(URL, KEY, max_retries=0))
        example = next(iter(response["content"][JSON]["examples"].values()))["value"]
        error = raised.value
        assert (error.status, error.code, error.detail) == (int(status), example["code"], example["detail"])
        assert server.reads[operation] == declared_fields(SCHEMA, component) == {"code", "detail"}


@pytest.mark.parametrize("method", CLIENT_METHODS)
def test_the_answers_the_client_retries_declare_the_retry_after_it_waits_for(method):
    operation, _ = CLIENT_METHODS[method]
    responses = operations(SCHEMA)[operation]["responses"]
    for status in RETRY_STATUSES & {int(s) for s in responses}:
        assert "Retry-After" in responses[str(status)]["headers"], (operation, status)
