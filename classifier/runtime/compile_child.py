"""The compiling child process (``python -m classifier.runtime.compile_child``), started by ``sandbox.py``.

It reads one request as JSON on stdin, confines itself before any model code runs (resource limits, and
Landlock: no file may be written, created or removed outside its own directory and torch's weights cache),
compiles, and writes the artifact's files and manifest (and, for the gate, its report) under ``out/``.
A refusal is written to ``error.json`` as a reason safe to show.
"""

import ctypes
import json
import os
import resource
import sys
from pathlib import Path

# Landlock (linux/landlock.h): the file-system rights that change something.
_WRITE_FILE, _REMOVE_DIR, _REMOVE_FILE = 1 << 1, 1 << 4, 1 << 5
_MAKE = (1 << 6) | (1 << 7) | (1 << 8) | (1 << 9) | (1 << 10) | (1 << 11) | (1 << 12)
_REFER, _TRUNCATE = 1 << 13, 1 << 14
_SYS_CREATE_RULESET, _SYS_ADD_RULE, _SYS_RESTRICT_SELF = 444, 445, 446
_PR_SET_NO_NEW_PRIVS, _RULE_PATH_BENEATH = 38, 1


class _PathBeneath(ctypes.Structure):
    _pack_ = 1
    _fields_ = [("allowed_access", ctypes.c_uint64), ("parent_fd", ctypes.c_int32)]


def confine_writes(writable: list[str]) -> bool:
    """Refuse every write outside ``writable`` (and /dev's special files) for this process and its children.
    Returns False where the kernel has no Landlock (the other limits still hold)."""
    libc = ctypes.CDLL(None, use_errno=True)
    abi = libc.syscall(_SYS_CREATE_RULESET, None, ctypes.c_size_t(0), ctypes.c_uint32(1))
    if abi < 1:
        return False
    handled = _WRITE_FILE | _REMOVE_DIR | _REMOVE_FILE | _MAKE
    handled |= _REFER if abi >= 2 else 0
    handled |= _TRUNCATE if abi >= 3 else 0
    attr = ctypes.c_uint64(handled)
    ruleset = libc.syscall(_SYS_CREATE_RULESET, ctypes.byref(attr), ctypes.c_size_t(8), ctypes.c_uint32(0))
    if ruleset < 0:
        return False
    rules = [(path, handled) for path in writable] + [("/dev", _WRITE_FILE | (_TRUNCATE if abi >= 3 else 0))]
    for path, access in rules:
        fd = os.open(path, os.O_PATH | os.O_CLOEXEC)
        rule = _PathBeneath(allowed_access=access, parent_fd=fd)
        libc.syscall(_SYS_ADD_RULE, ruleset, _RULE_PATH_BENEATH, ctypes.byref(rule), ctypes.c_uint32(0))
        os.close(fd)
    if libc.prctl(_PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0:
        return False
    restricted = libc.syscall(_SYS_RESTRICT_SELF, ruleset, ctypes.c_uint32(0)) == 0
    os.close(ruleset)
    return restricted


def limit_resources(limits: dict) -> None:
    cpu = int(limits["timeout_seconds"]) + 1
    for name, value in (
        (resource.RLIMIT_AS, int(limits["memory_bytes"])),
        (resource.RLIMIT_CPU, cpu),
        (resource.RLIMIT_FSIZE, int(limits["file_bytes"])),
        (resource.RLIMIT_NOFILE, int(limits["open_files"])),
    ):
        soft, hard = resource.getrlimit(name)
        capped = value if hard == resource.RLIM_INFINITY else min(value, hard)
        resource.setrlimit(name, (capped, capped))


def main() -> int:
    request = json.loads(sys.stdin.read())
    scratch = Path(request["scratch"])
    limit_resources(request["limits"])
    confined = confine_writes([str(scratch), *request.get("writable", [])])
    out = scratch / "out"
    out.mkdir()
    try:
        files, manifest, report = _run(request)
    except Exception as exc:  # noqa: BLE001 - whatever the model does, the parent gets a reason
        from classifier.runtime.errors import ArtifactError, first_line

        kind = type(exc).__name__ if isinstance(exc, ArtifactError) else "ArtifactError"
        if not isinstance(exc, ArtifactError) and request["source"]["folder"] is None:
            kind = "PretrainedUnavailable" if request["source"]["weights"] == "default" else kind
        reason = str(exc) if isinstance(exc, ArtifactError) else first_line(exc)
        (scratch / "error.json").write_text(json.dumps({"reason": reason, "kind": kind}))
        return 0
    for name, data in files.items():
        (out / name).write_bytes(data)
    manifest = {**manifest, "files": sorted(files), "sandbox": {"landlock": confined}}
    if report is not None:
        report = {**report, "sandbox": {"landlock": confined}}
    (out / "manifest.json").write_text(json.dumps(manifest))
    if report is not None:
        (out / "report.json").write_text(json.dumps(report))
    return 0


def _run(request: dict) -> tuple[dict, dict, dict | None]:
    if "probe" in request:
        return {}, {}, probe(Path(request["probe"]))
    from classifier.runtime.compiler import compile_source
    from classifier.runtime.config import CompileOptions
    from classifier.runtime.engines import EnginePlan
    from classifier.runtime.kinds import EngineKind, Precision
    from classifier.runtime.sources import ModelSource

    source_fields = dict(request["source"])
    folder = source_fields.pop("folder")
    source = ModelSource(**source_fields, folder=Path(folder) if folder else None)
    plan = EnginePlan(
        EngineKind(request["engine"]), Precision(request["precision"]), request["device"], request["fallback"]
    )
    options = CompileOptions(**request.get("options", {}))
    if request.get("gate"):
        from classifier.runtime.validation import gate

        return gate(source, plan=plan, threads=request["threads"], settings=request["gate"], options=options)
    files, manifest, _engine = compile_source(
        source, plan=plan, threads=request["threads"], max_batch_size=request["max_batch_size"], options=options
    )
    return files, manifest, None


def probe(outside: Path) -> dict:
    """What this child sees and may do (``sandbox.describe_sandbox``, the tests): its environment's names, its
    working directory, its limits, and whether a write to ``outside`` was refused."""
    try:
        outside.write_bytes(b"planted")
        refused = False
    except OSError:
        refused = True
    return {
        "environment": sorted(os.environ),
        "cwd": os.getcwd(),
        "write_outside_refused": refused,
        "address_space": resource.getrlimit(resource.RLIMIT_AS)[0],
        "open_files": resource.getrlimit(resource.RLIMIT_NOFILE)[0],
    }


if __name__ == "__main__":
    sys.exit(main())
