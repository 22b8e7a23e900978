"""A small v1 compatibility check between two OpenAPI documents (the committed one and a new one).

Breaking, for a v1 client built from the old document: an operation removed; a response status
removed; a field removed from a response body, or no longer always sent; a content type of a
request body removed; a request body field or a parameter newly required (or added as required).
Anything added that a client may ignore is compatible.

Run as ``python -m tests.contract.compat OLD NEW`` (``make schema`` does, before it writes):
prints each breaking change and exits 1 when there is one.
"""

import json
import sys

V1_PREFIX = "/api/v1/"
METHODS = {"get", "put", "post", "delete", "patch", "head", "options", "trace"}


def v1_breaking_changes(old: dict, new: dict) -> list[str]:
    """Each change from ``old`` to ``new`` that breaks a v1 client, in words; empty when none."""
    changes = []
    for path, item in old["paths"].items():
        if not path.startswith(V1_PREFIX):
            continue
        for method, operation in item.items():
            if method not in METHODS:
                continue
            where = f"{method.upper()} {path}"
            new_operation = new["paths"].get(path, {}).get(method)
            if new_operation is None:
                changes.append(f"{where}: the operation was removed")
                continue
            changes += _response_changes(old, new, where, operation, new_operation)
            changes += _request_changes(old, new, where, operation, new_operation)
    return changes


def _response_changes(old, new, where, operation, new_operation) -> list[str]:
    changes = []
    for status, response in operation["responses"].items():
        new_response = new_operation["responses"].get(status)
        if new_response is None:
            changes.append(f"{where}: response {status} was removed")
            continue
        for content_type, content in response.get("content", {}).items():
            new_content = new_response.get("content", {}).get(content_type)
            if new_content is None:
                changes.append(f"{where}: response {status} no longer comes as {content_type}")
                continue
            changes += [
                f"{where}: response {status} {change}"
                for change in _output_changes(old, new, content["schema"], new_content["schema"], "")
            ]
    return changes


def _output_changes(old, new, schema, new_schema, at: str) -> list[str]:
    """Fields a reader of ``schema`` relies on that ``new_schema`` drops or stops promising."""
    schema, new_schema = resolve(old, schema), resolve(new, new_schema)
    if "items" in schema and "items" in new_schema:
        return _output_changes(old, new, schema["items"], new_schema["items"], f"{at}[]")
    changes = []
    new_properties = new_schema.get("properties", {})
    new_required = set(new_schema.get("required", []))
    for name, prop in schema.get("properties", {}).items():
        field = f"{at}.{name}" if at else name
        if name not in new_properties:
            changes.append(f"field {field} was removed")
            continue
        if name in schema.get("required", []) and name not in new_required:
            changes.append(f"field {field} is no longer always sent")
        changes += _output_changes(old, new, prop, new_properties[name], field)
    return changes


def _request_changes(old, new, where, operation, new_operation) -> list[str]:
    changes = []
    old_body = operation.get("requestBody", {}).get("content", {})
    new_body = new_operation.get("requestBody", {}).get("content", {})
    for content_type, content in old_body.items():
        if content_type not in new_body:
            changes.append(f"{where}: the request body no longer takes {content_type}")
            continue
        before = resolve(old, content["schema"])
        after = resolve(new, new_body[content_type]["schema"])
        for name in set(after.get("required", [])) - set(before.get("required", [])):
            changes.append(f"{where}: request field {name} ({content_type}) is newly required")
    if new_body and not old_body and new_operation.get("requestBody", {}).get("required"):
        changes.append(f"{where}: a request body is newly required")
    optional = {(p["in"], p["name"]) for p in operation.get("parameters", []) if not p.get("required")}
    known = {(p["in"], p["name"]) for p in operation.get("parameters", [])}
    for parameter in new_operation.get("parameters", []):
        key = (parameter["in"], parameter["name"])
        if parameter.get("required") and (key in optional or key not in known):
            changes.append(f"{where}: {parameter['in']} parameter {parameter['name']} is newly required")
    return changes


def resolve(document: dict, schema: dict) -> dict:
    """``schema`` with its ``$ref`` (or a lone ``allOf`` around one) followed."""
    if "allOf" in schema and len(schema["allOf"]) == 1:
        schema = {**schema["allOf"][0], **{k: v for k, v in schema.items() if k != "allOf"}}
    while "$ref" in schema:
        name = schema["$ref"].rpartition("/")[2]
        schema = {**document["components"]["schemas"][name], **{k: v for k, v in schema.items() if k != "$ref"}}
    return schema


def main(argv: list[str]) -> int:
    old_path, new_path = argv
    with open(old_path) as old_file, open(new_path) as new_file:
        changes = v1_breaking_changes(json.load(old_file), json.load(new_file))
    for change in changes:
        sys.stderr.write(f"v1 breaking change: {change}\n")
    return 1 if changes else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
