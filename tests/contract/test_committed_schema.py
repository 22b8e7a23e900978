"""The committed schema (docs/openapi.json) is the served one, and a change to it keeps v1 compatible.

Every contract change shows up as a diff of docs/openapi.json (``make schema`` regenerates it);
``tests/contract/compat.py`` says which changes break a v1 client.
"""

import copy
import json
from pathlib import Path

import pytest

from tests.contract.compat import main as compat_main
from tests.contract.compat import v1_breaking_changes
from tests.contract.helpers import operations

COMMITTED = Path(__file__).resolve().parents[2] / "docs" / "openapi.json"


@pytest.fixture(scope="module")
def committed_schema() -> dict:
    return json.loads(COMMITTED.read_text())


def test_the_served_schema_is_the_committed_one(served_schema, committed_schema):
    differing = sorted(
        f"{method.upper()} {path}"
        for (path, method), operation in operations(served_schema).items()
        if operations(committed_schema).get((path, method)) != operation
    )
    assert served_schema == committed_schema, (
        f"docs/openapi.json differs from /api/schema/ (operations: {differing or 'none; see components'}): "
        "run `make schema` and commit docs/openapi.json"
    )


def test_the_served_schema_keeps_v1_compatible_with_the_committed_one(served_schema, committed_schema):
    assert v1_breaking_changes(committed_schema, served_schema) == []


# --- the compatibility check itself, on edited copies of the committed schema ---------------------------


def edited(schema: dict, edit) -> dict:
    changed = copy.deepcopy(schema)
    edit(changed)
    return changed


def test_an_unchanged_or_extended_schema_is_compatible(committed_schema):
    def extend(schema):
        schema["components"]["schemas"]["ClassifyOutput"]["properties"]["model_version"] = {"type": "string"}
        schema["components"]["schemas"]["ClassifyJsonRequest"]["properties"]["hint"] = {"type": "string"}
        schema["paths"]["/api/v1/classify"]["post"]["responses"]["422"] = {"description": "new"}
        schema["paths"]["/api/v1/new"] = {"get": {"responses": {"200": {"description": "new"}}}}

    assert v1_breaking_changes(committed_schema, committed_schema) == []
    assert v1_breaking_changes(committed_schema, edited(committed_schema, extend)) == []


@pytest.mark.parametrize(
    ("edit", "change"),
    [
        (lambda schema: schema["paths"]["/api/v1/usage"].pop("get"), "GET /api/v1/usage: the operation was removed"),
        (
            lambda schema: schema["paths"]["/api/v1/classify"]["post"]["responses"].pop("429"),
            "POST /api/v1/classify: response 429 was removed",
        ),
        (
            lambda schema: schema["components"]["schemas"]["PredictionOutput"]["properties"].pop("confidence"),
            "POST /api/v1/classify: response 200 field predictions[].confidence was removed",
        ),
        (
            lambda schema: schema["components"]["schemas"]["ClassifyOutput"]["required"].remove("model"),
            "POST /api/v1/classify: response 200 field model is no longer always sent",
        ),
        (
            lambda schema: schema["components"]["schemas"]["ClassifyJsonRequest"]["required"].append("filename"),
            "POST /api/v1/classify: request field filename (application/json) is newly required",
        ),
        (
            lambda schema: schema["paths"]["/api/v1/classify"]["post"]["requestBody"]["content"].pop(
                "multipart/form-data"
            ),
            "POST /api/v1/classify: the request body no longer takes multipart/form-data",
        ),
        (
            lambda schema: (
                schema["paths"]["/api/v1/usage"]["get"]
                .setdefault("parameters", [])
                .append({"in": "query", "name": "days", "required": True, "schema": {"type": "integer"}})
            ),
            "GET /api/v1/usage: query parameter days is newly required",
        ),
    ],
)
def test_a_v1_breaking_change_is_named(committed_schema, edit, change):
    assert change in v1_breaking_changes(committed_schema, edited(committed_schema, edit))


def test_a_v2_change_is_not_a_v1_break(committed_schema):
    def remove_v2(schema):
        del schema["paths"]["/api/v2/models"]

    assert v1_breaking_changes(committed_schema, edited(committed_schema, remove_v2)) == []


def test_the_command_exits_1_on_a_v1_break(committed_schema, tmp_path, capsys):
    broken = edited(committed_schema, lambda schema: schema["paths"].pop("/api/v1/model/info"))
    (tmp_path / "new.json").write_text(json.dumps(broken))
    assert compat_main([str(COMMITTED), str(tmp_path / "new.json")]) == 1
    assert "GET /api/v1/model/info: the operation was removed" in capsys.readouterr().err
    assert compat_main([str(COMMITTED), str(COMMITTED)]) == 0
