"""The monthly quota under real concurrency: worker processes released together on one key's allowance.

Each round is 48 attempts (8 processes x 6) against a 12-image allowance, in the database store (SQLite file,
PostgreSQL) and in Redis beside PostgreSQL; every round must admit exactly 12. The window is never full, so
only the quota's count-then-charge is under test.
"""

import pytest

from tests.accounts.test_windows_across_processes import WindowWorkers
from tests.services import require_redis, throwaway_postgres_database

WORKERS = 8
ATTEMPTS_PER_WORKER = 6  # 48 attempts a round
ALLOWANCE = 12
ROUNDS = 4
MID_MONTH = 1_794_830_400.0  # 2026-11-16 12:00 UTC


@pytest.fixture
def postgres_database():
    with throwaway_postgres_database("aiserver_quota") as url:
        yield url


@pytest.fixture(params=["sqlite", "postgres", "postgres+redis"])
def setup(request, tmp_path):
    if request.param == "sqlite":
        database_url, store = f"sqlite:///{tmp_path / 'quota.sqlite3'}", "database"
    else:
        database_url = request.getfixturevalue("postgres_database")
        store = require_redis() if "redis" in request.param else "database"
    workers = WindowWorkers(database_url, WORKERS)
    yield workers, store
    workers.close()


def test_workers_released_together_admit_exactly_the_allowance_every_round(setup):
    workers, store = setup
    key_ids = workers.ask(workers.processes[0], f"setup {ROUNDS}").split()
    workers.ask_all("connect")

    admitted = []
    for key_id in key_ids:
        replies = workers.ask_all(f"quota {store} {key_id} {ALLOWANCE} {MID_MONTH} {ATTEMPTS_PER_WORKER}")
        admitted.append(sum(int(reply) for reply in replies))

    assert admitted == [ALLOWANCE] * ROUNDS, f"admitted per round: {admitted}"
