"""Two separate servers (different ports, several worker processes) sharing PostgreSQL, and Redis."""
import base64
import uuid
from collections import Counter

import psycopg
import pytest

from tests.live.server import LiveServer
from tests.live.test_sqlite_workers import fire
from tests.model_weights import picture
from tests.services import require_postgres, require_redis

pytestmark = pytest.mark.live


@pytest.fixture(scope="module")
def postgres_database():
    """A throwaway PostgreSQL database on the project's server, dropped afterwards."""
    admin_url = require_postgres()
    name = f"aiserver_live_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    yield admin_url.rsplit("/", 1)[0] + f"/{name}"
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(scope="module", params=["postgres", "postgres+redis"])
def servers(request, postgres_database, weights_path):
    extra = {"REDIS_URL": require_redis()} if "redis" in request.param else {}
    first = LiveServer(database_url=postgres_database, weights=str(weights_path), workers=2, extra_env=extra).start()
    second = LiveServer(database_url=postgres_database, weights=str(weights_path), workers=1, extra_env=extra).start()
    yield first, second
    first.stop()
    second.stop()


def test_two_servers_sharing_the_store_admit_exactly_the_limit(servers):
    first, second = servers
    key = first.create_key(f"shared-{uuid.uuid4().hex[:6]}", rate_limit=7)
    body = {"image": base64.b64encode(picture("goldfish")).decode()}
    before = first.count_logs()
    statuses = fire_both(first, second, key, body, per_server=10)
    assert statuses == Counter({200: 7, 429: 13})
    assert second.count_logs() - before == 20


def fire_both(first, second, key, body, per_server):
    """Fire at both servers at once; return the combined status counts."""
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(2) as pool:
        results = pool.map(lambda s: fire(f"{s.url}/api/v1/classify", key, per_server, body), (first, second))
        return sum(results, Counter())
