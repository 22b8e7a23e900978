"""The real PostgreSQL and Redis of the project's machines, for the scale-out tests.

Tests that need one skip when it is absent, except under CI (``under_ci()``), where a missing
service fails the run instead of silently testing less.
"""

import os
import uuid
from collections.abc import Iterator, Mapping
from contextlib import contextmanager

import pytest

CI_TRUE_VALUES = frozenset({"1", "true", "yes", "on"})  # what CI=... may say, in any case

REDIS_URL = os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379/15")
POSTGRES_URL = os.environ.get("TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test")


def under_ci(environ: Mapping[str, str] = os.environ) -> bool:
    """Whether this run is CI's: CI set to 1, true, yes or on (any case). Then what a test needs
    and cannot find fails it instead of skipping it."""
    return environ.get("CI", "").strip().lower() in CI_TRUE_VALUES


def _unavailable(what: str, exc: Exception):
    message = f"{what} is not reachable ({exc})"
    if under_ci():
        pytest.fail(f"{message}; CI must run against it", pytrace=False)
    pytest.skip(message)


def require_redis() -> str:
    """Return a flushed Redis database URL for this test, or skip/fail."""
    import redis

    try:
        client = redis.Redis.from_url(REDIS_URL, socket_connect_timeout=1)
        client.flushdb()
    except (redis.RedisError, OSError) as exc:
        _unavailable("Redis", exc)
    return REDIS_URL


def unreachable_redis_url() -> str:
    """A Redis URL on a local port nothing listens on (bound, then closed): every connection is refused."""
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"redis://127.0.0.1:{port}/0"


def require_postgres() -> str:
    """Return the PostgreSQL URL, or skip/fail."""
    import psycopg

    try:
        psycopg.connect(POSTGRES_URL, connect_timeout=2).close()
    except psycopg.Error as exc:
        _unavailable("PostgreSQL", exc)
    return POSTGRES_URL


@contextmanager
def throwaway_postgres_database(prefix: str) -> Iterator[str]:
    """A new database on the project's PostgreSQL server, named ``prefix`` and a random suffix; yields
    its URL and drops it afterwards. Skips or fails as require_postgres() does."""
    import psycopg

    admin_url = require_postgres()
    name = f"{prefix}_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        yield admin_url.rsplit("/", 1)[0] + f"/{name}"
    finally:
        with psycopg.connect(admin_url, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
