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
        ("classifier/runtime", ("classifier.api", "classifier.pages", "accounts", "rest_framework", "django")),
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


def test_the_runtime_imports_no_classifier_module_outside_itself():
    """The runtime is a library: no ``classifier.metrics``, ``classifier.models`` or settings reach in."""
    outside = {
        path: sorted(
            name for name in names if name.startswith("classifier") and not name.startswith("classifier.runtime")
        )
        for path, names in imported_modules("classifier/runtime").items()
    }
    assert {path: names for path, names in outside.items() if names} == {}


# The rooms of ARCHITECTURE.md. The app's wiring (aiserver, classifier/apps.py) may import any room.
ROOMS = ("classifier.api", "classifier.pages", "classifier.runtime", "classifier", "accounts")
WIRING = ("classifier/apps.py",)


def room_of(module: str) -> str | None:
    return next((room for room in ROOMS if module == room or module.startswith(f"{room}.")), None)


def room_imports() -> dict[tuple[str, str], list[str]]:
    """{(room, room it imports): the imports that make the edge}, for every room's files."""
    edges: dict[tuple[str, str], list[str]] = {}
    for folder in ("classifier", "accounts"):
        for path, names in imported_modules(folder).items():
            source = room_of(path.removesuffix(".py").replace("/", "."))
            if path in WIRING or source is None:
                continue
            for name in sorted(names):
                target = room_of(name)
                if target is not None and target != source:
                    edges.setdefault((source, target), []).append(f"{path} -> {name}")
    return edges


def test_no_two_rooms_import_each_other():
    """A cycle between rooms (classifier.services importing the API's exceptions while the API calls the services;
    the runtime importing classifier.metrics while the app imports the runtime) breaks "imports point one way"."""
    edges = room_imports()
    cycles = {pair: (edges[pair], edges[pair[::-1]]) for pair in edges if pair[::-1] in edges and pair < pair[::-1]}
    assert cycles == {}
