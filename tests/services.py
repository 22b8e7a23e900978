"""The real PostgreSQL and Redis of the project's machines, for the scale-out tests.

Tests that need one skip when it is absent, except under CI (CI=true), where a missing
service fails the run instead of silently testing less.
"""
import os

import pytest

REDIS_URL = os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379/15")
POSTGRES_URL = os.environ.get("TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test")


def _unavailable(what: str, exc: Exception):
    message = f"{what} is not reachable ({exc})"
    if os.environ.get("CI", "").lower() == "true":
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


def require_postgres() -> str:
    """Return the PostgreSQL URL, or skip/fail."""
    import psycopg

    try:
        psycopg.connect(POSTGRES_URL, connect_timeout=2).close()
    except psycopg.Error as exc:
        _unavailable("PostgreSQL", exc)
    return POSTGRES_URL
