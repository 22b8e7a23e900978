"""Reading an OpenAPI document: operations, request components, resolved references."""

from tests.contract.compat import resolve

METHODS = {"get", "put", "post", "delete", "patch", "head", "options", "trace"}


def operations(schema: dict) -> dict[tuple[str, str], dict]:
    """Every operation of ``schema`` by (path, method)."""
    return {
        (path, method): operation
        for path, item in schema["paths"].items()
        for method, operation in item.items()
        if method in METHODS
    }


def request_body(schema: dict, path: str, content_type: str) -> tuple[str, dict]:
    """The request component (its name and resolved schema) of POST ``path`` for ``content_type``."""
    ref = schema["paths"][path]["post"]["requestBody"]["content"][content_type]["schema"]["$ref"]
    return ref.rpartition("/")[2], resolve(schema, {"$ref": ref})


def closed(schema: dict, component: dict) -> dict:
    """``component`` as a JSON Schema of its own: ``$ref`` inlined, objects closed to fields they do not declare."""
    component = resolve(schema, component)
    inlined = {}
    for keyword, value in component.items():
        if keyword == "properties":
            value = {name: closed(schema, prop) for name, prop in value.items()}
        elif keyword in ("items", "additionalProperties") and isinstance(value, dict):
            value = closed(schema, value)
        elif keyword in ("oneOf", "anyOf", "allOf"):
            value = [closed(schema, alternative) for alternative in value]
        inlined[keyword] = value
    if "properties" in inlined:
        inlined.setdefault("additionalProperties", False)
    return inlined


def declared_fields(schema: dict, component: dict, at: str = "") -> set[str]:
    """Every field path ``component`` declares: ``results``, ``results[].error.code``, ..."""
    component = resolve(schema, component)
    fields = set()
    for alternative in component.get("oneOf", []) + component.get("anyOf", []):
        fields |= declared_fields(schema, alternative, at)
    if "items" in component:
        fields |= declared_fields(schema, component["items"], f"{at}[]")
    for name, prop in component.get("properties", {}).items():
        field = f"{at}.{name}" if at else name
        fields |= {field} | declared_fields(schema, prop, field)
    return fields
