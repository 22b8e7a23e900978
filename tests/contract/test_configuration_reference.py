"""The configuration reference (docs/configuration.md) is generated from what aiserver/settings.py reads."""

import ast
from pathlib import Path

import pytest
from django.conf import settings

import aiserver.settings as project_settings
from aiserver.config import Config

REFERENCE = Path(settings.BASE_DIR) / "docs" / "configuration.md"
SETTINGS_SOURCE = Path(project_settings.__file__).read_text()


def test_the_committed_reference_is_the_generated_one():
    assert REFERENCE.read_text() == project_settings.config.reference_markdown(), "run `make schema`"


def test_settings_read_the_environment_only_through_config():
    """Any other read (os.environ.get, os.getenv, a django-environ Env) would be missing from the reference."""
    reads = []
    for node in ast.walk(ast.parse(SETTINGS_SOURCE)):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
            owner = ast.unparse(node.func.value)
            if owner in ("os.environ", "os", "env", "environ") and node.func.attr in ("get", "getenv", "setdefault"):
                reads.append(ast.unparse(node))
        if (
            isinstance(node, ast.Subscript)
            and isinstance(node.ctx, ast.Load)
            and ast.unparse(node.value) == "os.environ"
        ):
            reads.append(ast.unparse(node))
    assert reads == []
    assert "environ.Env(" not in SETTINGS_SOURCE


def test_every_variable_read_is_in_the_reference_with_a_meaning():
    read = {
        node.args[0].value
        for node in ast.walk(ast.parse(SETTINGS_SOURCE))
        if isinstance(node, ast.Call)
        and isinstance(node.func, ast.Attribute)
        and ast.unparse(node.func.value) == "config"
        and node.func.attr != "begin"
        and node.args
        and isinstance(node.args[0], ast.Constant)
    }
    declared = project_settings.config.declared
    assert read == set(declared) and len(read) > 50
    assert all(variable.meaning and variable.default for variable in declared.values())
    reference = REFERENCE.read_text()
    assert all(f"| `{name}` |" in reference for name in read)


def test_a_variable_is_read_typed_from_the_environment(monkeypatch):
    monkeypatch.setenv("EXAMPLE_LIMIT", "7")
    config = Config()
    config.begin("Examples")
    assert config.int("EXAMPLE_LIMIT", 3, "an example") == 7
    assert config.bool("EXAMPLE_FLAG", False, "unset: the default") is False
    assert "| `EXAMPLE_LIMIT` | `3` | an example |" in config.reference_markdown()
    assert "## Examples" in config.reference_markdown()


def test_a_variable_declared_twice_is_refused():
    config = Config()
    config.str("EXAMPLE_NAME", "a", "an example")
    with pytest.raises(ValueError, match="EXAMPLE_NAME"):
        config.str("EXAMPLE_NAME", "b", "again")
