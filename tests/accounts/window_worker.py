"""A worker process for the cross-process window tests: runs DatabaseWindowStore.acquire on command.

Run as ``python -m tests.accounts.window_worker`` with DATABASE_URL set. It reads one command a
line on stdin and answers one line on stdout:

    setup COUNT                             -> migrate, create COUNT keys, answer their ids
    connect                                 -> open the database connection, answer "ok"
    acquire KEY_ID LIMIT WINDOW NOW TIMES   -> acquire one unit TIMES times at NOW, answer how many were admitted
    quota STORE KEY_ID ALLOWANCE NOW TIMES  -> the same against a monthly allowance (window never full), in the
                                               database store or, STORE a redis:// URL, in that Redis

The test writes the same ``acquire`` line to every worker at once: each worker waits on its
stdin until then, so the line is the start signal that releases them together.
"""

import os
import sys

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tests.accounts.window_worker_settings")

import django  # noqa: E402

django.setup()

from django.core.management import call_command  # noqa: E402
from django.db import connection  # noqa: E402

from accounts.services import api_key_create  # noqa: E402
from accounts.windows import DatabaseWindowStore, QuotaRule, RedisWindowStore  # noqa: E402


def answer(command: str) -> str:
    """The reply to one command line (see above); raises ValueError for a command it does not know."""
    name, *args = command.split()
    if name == "setup":
        call_command("migrate", verbosity=0, interactive=False)
        keys = [api_key_create(name=f"window-race-{number}")[0] for number in range(int(args[0]))]
        return " ".join(str(api_key.pk) for api_key in keys)
    if name == "connect":
        connection.ensure_connection()
        return "ok"
    if name == "acquire":
        key_id, limit, window, now, times = int(args[0]), int(args[1]), int(args[2]), float(args[3]), int(args[4])
        store = DatabaseWindowStore()
        admitted = sum(
            store.acquire(key_id=key_id, limit=limit, window=window, cost=1, now=now).allowed for _ in range(times)
        )
        return str(admitted)
    if name == "quota":
        key_id, allowance, now, times = int(args[1]), int(args[2]), float(args[3]), int(args[4])
        store = DatabaseWindowStore() if args[0] == "database" else RedisWindowStore(args[0])
        rule = QuotaRule(allowance=allowance, block=True)
        admitted = sum(
            store.acquire(key_id=key_id, limit=1_000_000, window=60, cost=1, now=now, quota=rule).allowed
            for _ in range(times)
        )
        return str(admitted)
    raise ValueError(f"unknown command {name!r}")


def serve() -> None:
    """Answer commands from stdin until it closes; a failing command answers "error ..." and serving goes on."""
    for line in sys.stdin:
        try:
            reply = answer(line)
        except Exception as exc:  # the test reports it; the worker keeps serving
            reply = f"error {type(exc).__name__}: {exc}".replace("\n", " ")
        sys.stdout.write(reply + "\n")
        sys.stdout.flush()


if __name__ == "__main__":
    serve()
