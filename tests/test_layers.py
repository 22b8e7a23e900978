"""The rooms' import rules (../shared/ARCHITECTURE.md): imports point down and inward, checked from the source."""

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def imported_modules(folder: str) -> dict[str, set[str]]:
    """{file: absolute names of the modules it imports} for the Python files under ``folder``."""
    found = {}
    for path in sorted((ROOT / folder).rglob("*.py")):
        package = ".".join(path.relative_to(ROOT).with_suffix("").parts[:-1])
        names = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                names.update(alias.name for alias in node.names)
            elif isinstance(node, ast.ImportFrom):
                base = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                module = f"{base}.{node.module}" if node.level and node.module else (node.module or base)
                names.add(module)
                names.update(f"{module}.{alias.name}" for alias in node.names)
        found[str(path.relative_to(ROOT))] = names
    return found


@pytest.mark.parametrize(
    "folder,forbidden",
    [
        ("classifier/runtime", ("classifier.api", "classifier.pages", "accounts", "rest_framework")),
        ("accounts", ("classifier",)),
        ("aiserver_client", ("django", "rest_framework", "classifier", "accounts", "aiserver")),
    ],
)
def test_a_room_imports_nothing_above_it(folder, forbidden):
    def above(name: str) -> bool:
        return any(name == room or name.startswith(f"{room}.") for room in forbidden)

    breaking = {
        path: sorted(filter(above, names)) for path, names in imported_modules(folder).items() if any(map(above, names))
    }
    assert breaking == {}


def test_the_check_sees_relative_imports():
    """The rule would pass vacuously if relative imports were not resolved: the API's are."""
    names = imported_modules("classifier/api")["classifier/api/exceptions.py"]
    assert "classifier.runtime.errors" in names
