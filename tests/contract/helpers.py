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
