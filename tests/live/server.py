"""Real uvicorn server processes for the tests that need them."""

import atexit
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

import requests

from classifier.management.commands import serve

ROOT = Path(__file__).resolve().parents[2]
# The production command's graceful-shutdown time and slow-client defences, which every live server runs with: live
# servers start as `manage.py serve` does (classifier/management/commands/serve.py).
GRACEFUL_SHUTDOWN_SECONDS = serve.GRACEFUL_SHUTDOWN_SECONDS
DEPLOYED_UVICORN_FLAGS = serve.UVICORN_FLAGS
THROTTLED = 429  # the repeated-429 counts are of this status


_COLLECTED_STATIC: list[Path] = []  # the static root collected once per test process for servers that name none


def collected_static_root(env: dict) -> Path:
    """A STATIC_ROOT with collectstatic done, shared by this process's live servers (removed at exit):
    with DJANGO_DEBUG off the server refuses to start without one (classifier.checks)."""
    if not _COLLECTED_STATIC:
        root = Path(tempfile.mkdtemp(prefix="aiserver-live-static-"))
        atexit.register(shutil.rmtree, root, ignore_errors=True)
        subprocess.run(
            [sys.executable, "manage.py", "collectstatic", "--noinput", "--verbosity", "0"],
            cwd=ROOT,
            env={**env, "DJANGO_STATIC_ROOT": str(root)},
            check=True,
        )
        _COLLECTED_STATIC.append(root)
    return _COLLECTED_STATIC[0]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class LiveServer:
    """``uvicorn aiserver.asgi:application --workers N`` on a free port, with its own environment."""

    def __init__(
        self,
        *,
        database_url: str,
        weights: str,
        workers: int = 2,
        extra_env: dict | None = None,
        static_root: Path | None = None,
        ready_models: tuple[str, ...] = (),
    ):
        """``static_root``: run collectstatic into it before starting; else the server uses one collected
        once per test process (collected_static_root). ``ready_models``: models besides the default that
        every worker must have loaded before start() returns (/readyz?model=NAME)."""
        self.ready_paths = ["/readyz", *(f"/readyz?model={name}" for name in ready_models)]
        self.port = free_port()
        self.static_root = static_root
        self.url = f"http://127.0.0.1:{self.port}"
        self.workers = workers
        self.env = {
            **os.environ,
            "DJANGO_SETTINGS_MODULE": "aiserver.settings",
            "DJANGO_SECRET_KEY": "live-test-secret",
            "DJANGO_DEBUG": "false",
            "DJANGO_ALLOWED_HOSTS": "127.0.0.1,localhost",
            "DATABASE_URL": database_url,
            "CLASSIFIER_WEIGHTS": weights,
            "CLASSIFIER_TORCH_THREADS": "1",
            **({"DJANGO_STATIC_ROOT": str(static_root)} if static_root else {}),
            **(extra_env or {}),
        }
        self.process: subprocess.Popen | None = None

    def manage(self, *args: str, env: dict | None = None) -> str:
        """Run a management command against this server's database (``env`` added); return its stdout."""
        result = subprocess.run(
            [sys.executable, "manage.py", *args],
            cwd=ROOT,
            env={**self.env, **(env or {})},
            capture_output=True,
            text=True,
            check=True,
        )
        return result.stdout

    def start(self, timeout: float = 120.0) -> "LiveServer":
        if self.static_root is not None:
            self.manage("collectstatic", "--noinput")
        elif "DJANGO_STATIC_ROOT" not in self.env:
            self.env["DJANGO_STATIC_ROOT"] = str(collected_static_root(self.env))
        self.manage("migrate", "--noinput")
        self.process = subprocess.Popen(
            [
                sys.executable,
                "manage.py",
                "serve",
                "--host",
                "127.0.0.1",
                "--port",
                str(self.port),
                "--",
                "--workers",
                str(self.workers),
                "--log-level",
                "warning",
            ],
            cwd=ROOT,
            env=self.env,
            start_new_session=True,
        )
        self._wait_ready(timeout)
        return self

    def _wait_ready(self, timeout: float) -> None:
        """Wait until readyz (for the default and every ready_models name) has answered 200 enough times in a
        row that every worker is ready."""
        deadline = time.monotonic() + timeout
        streak = 0
        while streak < 8 * self.workers:
            if time.monotonic() > deadline or self.process.poll() is not None:
                self.stop()
                raise RuntimeError("live server did not become ready")
            try:
                ok = all(requests.get(self.url + path, timeout=5).status_code == 200 for path in self.ready_paths)
            except requests.ConnectionError:
                ok = False
            streak = streak + 1 if ok else 0
            if not ok:
                time.sleep(0.2)

    def terminate(self, *, process_group: bool = False, timeout: float = 60.0) -> int:
        """Send SIGTERM as a process manager does and wait for the server to exit; return its exit status.

        Only to uvicorn's main process (Docker, Kubernetes), which passes it on to the workers, or with
        ``process_group`` to every process at once (systemd's default).
        """
        if process_group:
            os.killpg(self.process.pid, signal.SIGTERM)
        else:
            self.process.send_signal(signal.SIGTERM)
        return self.process.wait(timeout)

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()

    def create_key(self, name: str, rate_limit: int, window: int = 60) -> str:
        out = self.manage("create_api_key", "--name", name, "--rate-limit", str(rate_limit), "--window", str(window))
        return out.strip().splitlines()[-1]

    def log_statuses(self, **filters) -> Counter:
        """How many keyed requests were logged per status code: RequestLog rows plus the repeated 429s
        (RepeatedThrottleCount) of the same keys. ``filters``: RequestLog lookups; those on the key also pick
        the repeats, and a status_code other than 429 leaves them out."""
        on_key = {name: value for name, value in filters.items() if name.startswith("api_key")}
        repeats = (
            f"RepeatedThrottleCount.objects.filter(**{on_key!r}).aggregate(n=Sum('repeats'))['n'] or 0"
            if filters.get("status_code", THROTTLED) == THROTTLED
            else "0"
        )
        code = (
            "import json; from django.db.models import Count, Sum; "
            "from accounts.models import RepeatedThrottleCount, RequestLog; "
            f"rows = RequestLog.objects.filter(**{filters!r}).values_list('status_code').annotate(n=Count('id')); "
            f"print(json.dumps([dict(rows), {repeats}]))"
        )
        rows, repeated = json.loads(self.manage("shell", "-c", code).strip().splitlines()[-1])
        return Counter({int(status): n for status, n in rows.items()}) + Counter({THROTTLED: repeated})

    def accounted_statuses(self) -> Counter:
        """How many requests were accounted for per status code: the keyed ones (log_statuses) plus the
        AnonymousRequestCount counts (the rest)."""
        code = (
            "import json; from django.db.models import Sum; from accounts.models import AnonymousRequestCount; "
            "counts = AnonymousRequestCount.objects.values_list('status_code').annotate(n=Sum('count')); "
            "print(json.dumps(dict(counts)))"
        )
        counts = json.loads(self.manage("shell", "-c", code).strip().splitlines()[-1])
        return self.log_statuses() + Counter({int(status): n for status, n in counts.items()})

    def count_logs(self, **filters) -> int:
        return sum(self.log_statuses(**filters).values())

    def create_superuser(self, username: str, password: str) -> None:
        """A staff superuser in this server's database, for the admin and the staff pages."""
        self.manage(
            "createsuperuser",
            "--noinput",
            "--username",
            username,
            "--email",
            f"{username}@example.com",
            env={"DJANGO_SUPERUSER_PASSWORD": password},
        )
