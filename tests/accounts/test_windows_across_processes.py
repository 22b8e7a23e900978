"""DatabaseWindowStore under real concurrency: worker processes released together on one key.

The store counts a key's units and records the new one in one transaction (SQLite: IMMEDIATE,
PostgreSQL: the key's row locked FOR UPDATE). Without it, workers that count at the same moment
all see room and together admit more than the limit. One burst can miss that race, so each test
runs several rounds, every one a burst of more attempts than places from workers that a start
signal releases together, and every round must admit exactly the limit.
"""

import os
import subprocess
import sys

import pytest

from tests.live.server import ROOT
from tests.services import throwaway_postgres_database

WORKERS = 8  # processes; more than the cores, so the OS also switches between them mid-acquire
ROUNDS = 8
LIMIT = 10
ATTEMPTS_PER_WORKER = 4  # 32 attempts a round for 10 places
WINDOW_SECONDS = 10
NOW = 1000.0  # the clock the workers pass to the store (every acquire of a round falls in one window)


class WindowWorkers:
    """``count`` tests.accounts.window_worker processes on one database; see that module for the commands."""

    def __init__(self, database_url: str, count: int):
        env = {
            **os.environ,
            "DATABASE_URL": database_url,
            "DJANGO_SETTINGS_MODULE": "tests.accounts.window_worker_settings",
        }
        self.processes = [
            subprocess.Popen(
                [sys.executable, "-m", "tests.accounts.window_worker"],
                cwd=ROOT,
                env=env,
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                text=True,
            )
            for _ in range(count)
        ]

    def ask(self, process: subprocess.Popen, command: str) -> str:
        self._send(process, command)
        return self._reply(process)

    def ask_all(self, command: str) -> list[str]:
        """Send ``command`` to every worker before reading any answer, so they start it together."""
        for process in self.processes:
            self._send(process, command)
        return [self._reply(process) for process in self.processes]

    @staticmethod
    def _send(process: subprocess.Popen, command: str) -> None:
        process.stdin.write(command + "\n")
        process.stdin.flush()

    @staticmethod
    def _reply(process: subprocess.Popen) -> str:
        reply = process.stdout.readline().strip()
        if not reply or reply.startswith("error"):
            raise AssertionError(f"window worker failed: {reply or 'no answer (see its stderr)'}")
        return reply

    def close(self) -> None:
        """Stop the workers; they keep nothing (the database is thrown away), so they need no clean exit."""
        for process in self.processes:
            process.kill()
        for process in self.processes:
            process.wait(30)
            process.stdin.close()
            process.stdout.close()


@pytest.fixture
def postgres_database():
    with throwaway_postgres_database("aiserver_windows") as url:
        yield url


@pytest.fixture(params=["sqlite", "postgres"])
def database_url(request, tmp_path):
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'windows.sqlite3'}"  # a file: every worker opens the same database
    return request.getfixturevalue("postgres_database")


@pytest.fixture
def workers(database_url):
    workers = WindowWorkers(database_url, WORKERS)
    yield workers
    workers.close()


def test_workers_released_together_admit_exactly_the_limit_every_round(workers):
    key_ids = workers.ask(workers.processes[0], f"setup {ROUNDS}").split()  # a fresh key, so an empty window, a round
    workers.ask_all("connect")  # connected before the first burst, so no worker starts late

    admitted = []
    for key_id in key_ids:
        replies = workers.ask_all(f"acquire {key_id} {LIMIT} {WINDOW_SECONDS} {NOW} {ATTEMPTS_PER_WORKER}")
        admitted.append(sum(int(reply) for reply in replies))

    assert admitted == [LIMIT] * ROUNDS, f"admitted per round: {admitted}"
