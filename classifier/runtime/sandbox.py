"""Compiling runs a model's code (TorchScript is a program; a pickle-bearing file may be one), so it runs in a
child process that holds nothing worth stealing and can write nowhere that matters:

- a scrubbed environment: no secret key, database URL or token, only what Python and the libraries need;
- a temporary working directory, which is also its home and its only writable place (Landlock, on Linux 5.13
  and later: every file write, creation or removal outside it is refused by the kernel), besides torch's weights
  cache for pretrained downloads;
- resource limits: address space, CPU time, file size and open files (``resource.setrlimit``);
- a wall-clock timeout.

The child (``python -m classifier.runtime.compile_child``) writes the compiled files into its directory; this
process reads them back and stores them, so the child never needs the artifact store's (or the media root's)
write access.
"""

import atexit
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
from dataclasses import asdict, dataclass
from pathlib import Path

from .errors import COMPILE_ERRORS, ArtifactError

PROJECT_ROOT = Path(__file__).resolve().parents[2]
# The environment a compiling child gets: these names only (values from this process), nothing else.
PASSED_ENVIRONMENT = ("PATH", "LANG", "LC_ALL", "TZ", "TORCH_HOME", "CUDA_VISIBLE_DEVICES", "SSL_CERT_FILE")
ERROR_FILE, REPORT_FILE, MANIFEST_FILE = "error.json", "report.json", "manifest.json"
OUTPUT_FOLDER = "out"
# The scratch folders of compiles in progress. A model loads on a daemon thread, whose ``finally`` never runs when
# the process exits mid-compile (a server stopped while it compiles): the exit hook removes what is left.
_SCRATCH: set[Path] = set()
_SCRATCH_LOCK = threading.Lock()


@atexit.register
def remove_scratch_folders() -> None:
    with _SCRATCH_LOCK:
        for scratch in list(_SCRATCH):
            shutil.rmtree(scratch, ignore_errors=True)
        _SCRATCH.clear()


@dataclass(frozen=True)
class SandboxLimits:
    timeout_seconds: float = 300.0
    memory_bytes: int = 8 << 30
    file_bytes: int = 4 << 30  # the largest file the child may write (an exported graph)
    open_files: int = 1024


@dataclass(frozen=True)
class ChildResult:
    files: dict[str, bytes]
    manifest: dict
    report: dict


def torch_home() -> Path:
    """Where torch keeps downloaded weights: the one place besides its own directory a compiling child may write."""
    return Path(os.environ.get("TORCH_HOME") or Path.home() / ".cache" / "torch")


def run_in_sandbox(request: dict, *, limits: SandboxLimits) -> ChildResult:
    """Run ``request`` (see compile_child) in a sandboxed child; raises ArtifactError with the child's reason."""
    scratch = Path(tempfile.mkdtemp(prefix="aiserver-compile-"))
    with _SCRATCH_LOCK:
        _SCRATCH.add(scratch)
    try:
        home = torch_home()
        home.mkdir(parents=True, exist_ok=True)
        environment = {name: os.environ[name] for name in PASSED_ENVIRONMENT if name in os.environ}
        environment.update(
            HOME=str(scratch),
            TMPDIR=str(scratch),
            TORCH_HOME=str(home),
            PYTHONPATH=str(PROJECT_ROOT),
            PYTHONDONTWRITEBYTECODE="1",
            HF_HUB_OFFLINE="1",
            TRANSFORMERS_OFFLINE="1",
            OMP_NUM_THREADS=str(request.get("threads", 1)),
        )
        payload = {**request, "scratch": str(scratch), "writable": [str(home)], "limits": asdict(limits)}
        try:
            finished = subprocess.run(
                [sys.executable, "-m", "classifier.runtime.compile_child"],
                input=json.dumps(payload),
                cwd=scratch,
                env=environment,
                capture_output=True,
                text=True,
                timeout=limits.timeout_seconds,
            )
        except subprocess.TimeoutExpired:
            raise ArtifactError(
                f"the compiling process ran past CLASSIFIER_VALIDATION_TIMEOUT_SECONDS ({limits.timeout_seconds:g} s)"
            ) from None
        return _result(scratch, finished)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
        with _SCRATCH_LOCK:
            _SCRATCH.discard(scratch)


def _result(scratch: Path, finished: subprocess.CompletedProcess) -> ChildResult:
    error = scratch / ERROR_FILE
    if error.is_file():
        refusal = json.loads(error.read_text())
        raise COMPILE_ERRORS.get(refusal.get("kind"), ArtifactError)(refusal["reason"])
    out = scratch / OUTPUT_FOLDER
    if finished.returncode != 0 or not (out / MANIFEST_FILE).is_file():
        last = (finished.stderr or "").strip().splitlines()[-1:] or [f"exit status {finished.returncode}"]
        raise ArtifactError(f"the compiling process failed ({last[0][:300]})")
    manifest = json.loads((out / MANIFEST_FILE).read_text())
    report_path = out / REPORT_FILE
    report = json.loads(report_path.read_text()) if report_path.is_file() else {}
    files = {name: (out / name).read_bytes() for name in manifest["files"]}
    return ChildResult(files=files, manifest={k: v for k, v in manifest.items() if k != "files"}, report=report)
