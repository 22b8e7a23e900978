"""Environment variables, each declared once: read typed (django-environ), with its default and its meaning.

``aiserver/settings.py`` reads every variable through ``config``; what it declared is the configuration
reference (``reference_markdown()``, docs/configuration.md, written by ``make schema``), so the reference
cannot drift from what the settings read.
"""

from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeAlias

import environ

# The builtins under other names: Config's methods are named after django-environ's kinds (str, int, ...).
_Str: TypeAlias = str
_Int: TypeAlias = int
_Float: TypeAlias = float
_Bool: TypeAlias = bool
_List: TypeAlias = list


@dataclass(frozen=True)
class Variable:
    name: str
    default: str  # as the reference shows it
    meaning: str
    section: str


class Config:
    """``config.int("NAME", default, "meaning")`` reads NAME once and declares it; the kinds are django-environ's."""

    def __init__(self, env: environ.Env | None = None):
        self.env = env or environ.Env()
        self.declared: dict[str, Variable] = {}
        self.section = ""

    def begin(self, section: _Str) -> None:
        """Variables declared from here on belong to ``section`` (a heading of the reference)."""
        self.section = section

    def _read(self, kind: _Str, name: _Str, default: Any, meaning: _Str, shown: _Str | None) -> Any:
        if name in self.declared:
            raise ValueError(f"{name} is declared twice")
        self.declared[name] = Variable(name, shown if shown is not None else _shown(default), meaning, self.section)
        return getattr(self.env, kind)(name, default=default)

    def str(self, name: _Str, default: _Str, meaning: _Str, *, shown: _Str | None = None) -> _Str:
        return self._read("str", name, default, meaning, shown)

    def int(self, name: _Str, default: _Int, meaning: _Str, *, shown: _Str | None = None) -> _Int:
        return self._read("int", name, default, meaning, shown)

    def float(self, name: _Str, default: _Float, meaning: _Str, *, shown: _Str | None = None) -> _Float:
        return self._read("float", name, default, meaning, shown)

    def bool(self, name: _Str, default: _Bool, meaning: _Str, *, shown: _Str | None = None) -> _Bool:
        return self._read("bool", name, default, meaning, shown)

    def list(self, name: _Str, default: _List, meaning: _Str, *, shown: _Str | None = None) -> _List:
        return self._read("list", name, default, meaning, shown)

    def path(self, name: _Str, default: Path, meaning: _Str, *, shown: _Str | None = None) -> Path:
        return Path(self._read("path", name, default, meaning, shown))

    def db_url(self, name: _Str, default: _Str, meaning: _Str, *, shown: _Str | None = None) -> dict:
        return self._read("db_url", name, default, meaning, shown)

    def reference_markdown(self) -> _Str:
        """The configuration reference: one table a section, every declared variable in reading order."""
        lines = [
            "# Configuration",
            "",
            "Generated from `aiserver/settings.py` (through `aiserver/config.py`) by `make schema`; do not edit by hand.",
            "",
            "Every setting comes from the environment and is read once, at start-up, in `aiserver/settings.py`;",
            "the runtime, the metrics and the rest read Django's settings, never the environment. The rules between",
            "settings (the queue holds the group of images a request queues at once, `CLASSIFIER_TOP_K` is within",
            "`CLASSIFIER_MAX_TOP_K`, ...) are system checks in `classifier/checks.py` (ids `classifier.E010`-`E015`):",
            "a wrong combination stops `runserver`, `manage.py check` and the ASGI start with the rule's message.",
        ]
        sections: dict[str, list[Variable]] = {}
        for variable in self.declared.values():
            sections.setdefault(variable.section, []).append(variable)
        for section, variables in sections.items():
            lines += ["", f"## {section}", "", "| variable | default | meaning |", "| --- | --- | --- |"]
            lines += [f"| `{v.name}` | {_cell(v.default)} | {_cell(v.meaning)} |" for v in variables]
        return "\n".join(lines) + "\n"


def _shown(default: Any) -> str:
    if isinstance(default, bool):
        return f"`{str(default).lower()}`"
    if isinstance(default, list):
        return f"`{','.join(default)}`" if default else "empty"
    if default == "":
        return "empty"
    return f"`{default}`"


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def model_entries(entries: list[str]) -> dict[str, str]:
    """CLASSIFIER_MODELS parsed: {name: weights} in the order given, "" for an entry without weights
    ("name", "name=weights" or "name=/a/model/folder"); a name given twice keeps the first weights it had."""
    models: dict[str, str] = {}
    for entry in entries:
        name, _, weights = (part.strip() for part in entry.partition("="))
        if name:
            models[name] = models.get(name) or weights
    return models
