"""The production server in one command: uvicorn on aiserver.asgi with the slow-client defences, so no deployment
can forget them (`make run`, the container image, the Kubernetes manifests and the live tests all start it).

The command replaces its own process with uvicorn (``exec``), so SIGTERM from a process manager reaches uvicorn's
main process, which drains its workers (``--timeout-graceful-shutdown``). uvicorn reads its other options from the
environment too: ``WEB_CONCURRENCY`` (workers), ``FORWARDED_ALLOW_IPS`` (which proxies' ``X-Forwarded-For`` to
trust), ``UVICORN_LOG_LEVEL`` and the like; anything after ``--`` is passed to it as is.
"""

import contextlib
import os
import secrets
import sys
import tempfile
from pathlib import Path

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.core.management import call_command
from django.core.management.base import BaseCommand, CommandError

from classifier.checks import require_secret_key

# uvicorn's slow-client defences (docs/deployment.md, docs/security.md): the protocol that times out half-sent heads
# (aiserver.protocols), the bound on a head's size, the connections (and requests) per worker, the keep-alive idle
# time.
UVICORN_FLAGS = [
    "--http",
    "aiserver.protocols:H11Protocol",
    "--h11-max-incomplete-event-size",
    "65536",
    "--limit-concurrency",
    "512",
    "--timeout-keep-alive",
    "5",
]
# On SIGTERM a worker stops accepting, finishes the requests it has (at most this long), then exits: longer than the
# slowest request (CLASSIFIER_INFERENCE_TIMEOUT_SECONDS, 30, plus decoding); a process manager must wait longer still.
GRACEFUL_SHUTDOWN_SECONDS = 35


def uvicorn_command(*, host: str, port: int, extra: list[str]) -> list[str]:
    """The uvicorn command line ``serve`` runs: the flags above, then ``extra`` (later flags win)."""
    return [
        sys.executable,
        "-m",
        "uvicorn",
        "aiserver.asgi:application",
        "--host",
        host,
        "--port",
        str(port),
        "--timeout-graceful-shutdown",
        str(GRACEFUL_SHUTDOWN_SECONDS),
        *UVICORN_FLAGS,
        *extra,
    ]


class Command(BaseCommand):
    help = (
        "Serve the API with uvicorn and the deployed slow-client flags (exec: SIGTERM drains). "
        "Extra uvicorn options after --, e.g. `manage.py serve -- --workers 2`."
    )
    # The server runs the system checks itself when it starts (aiserver.asgi), with the deployment checks it needs.
    requires_system_checks: list[str] = []

    def add_arguments(self, parser):
        parser.add_argument("--host", default=os.environ.get("HOST", "127.0.0.1"), help="address to listen on ($HOST)")
        parser.add_argument("--port", type=int, default=int(os.environ.get("PORT", "8000")), help="port ($PORT)")
        parser.add_argument(
            "--migrate", action="store_true", help="apply migrations first (a lone server on SQLite; not for replicas)"
        )
        parser.add_argument("uvicorn_args", nargs="*", help="options passed to uvicorn as they are (after --)")

    def handle(self, *args, host, port, migrate, uvicorn_args, **options):
        written = ensure_secret_key_file()
        try:
            require_secret_key()
        except ImproperlyConfigured as exc:
            if not written:
                raise CommandError(str(exc)) from None
        if migrate:
            call_command("migrate", "--noinput", verbosity=0)
        command = uvicorn_command(host=host, port=port, extra=list(uvicorn_args))
        sys.stdout.flush()
        sys.stderr.flush()
        os.execv(command[0], command)


def ensure_secret_key_file() -> bool:
    """With no DJANGO_SECRET_KEY and a DJANGO_SECRET_KEY_FILE that does not exist yet, write a new random secret
    there, readable by this user only, whole or not at all (containers sharing the volume may race: the first
    wins). Return whether this call or a concurrent one wrote it (the settings read it when uvicorn starts)."""
    path = settings.DJANGO_SECRET_KEY_FILE
    if os.environ.get("DJANGO_SECRET_KEY") or not path or os.path.exists(path):
        return False
    folder = Path(path).parent
    folder.mkdir(parents=True, exist_ok=True)
    descriptor, draft = tempfile.mkstemp(dir=folder, prefix=".secret-")  # mode 0600
    try:
        with os.fdopen(descriptor, "w") as file:
            file.write(secrets.token_urlsafe(50) + "\n")
        with contextlib.suppress(FileExistsError):  # another container's is already there: keep it
            os.link(draft, path)  # atomic
    finally:
        os.unlink(draft)
    return True
