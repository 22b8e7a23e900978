"""Reading an OpenAPI document: operations, request components, resolved references."""

METHODS = {"get", "put", "post", "delete", "patch", "head", "options", "trace"}


def operations(schema: dict) -> dict[tuple[str, str], dict]:
    """Every operation of ``schema`` by (path, method)."""
    return {
        (path, method): operation
        for path, item in schema["paths"].items()
        for method, operation in item.items()
        if method in METHODS
    }


def resolve(schema: dict, node: dict) -> dict:
    """``node`` with its ``$ref`` (or a lone ``allOf`` around one) followed."""
    if "allOf" in node and len(node["allOf"]) == 1:
        node = {**node["allOf"][0], **{k: v for k, v in node.items() if k != "allOf"}}
    while "$ref" in node:
        name = node["$ref"].rpartition("/")[2]
        node = {**schema["components"]["schemas"][name], **{k: v for k, v in node.items() if k != "$ref"}}
    return node


def request_body(schema: dict, path: str, content_type: str) -> tuple[str, dict]:
    """The request component (its name and resolved schema) of POST ``path`` for ``content_type``."""
    ref = schema["paths"][path]["post"]["requestBody"]["content"][content_type]["schema"]["$ref"]
    return ref.rpartition("/")[2], resolve(schema, {"$ref": ref})
