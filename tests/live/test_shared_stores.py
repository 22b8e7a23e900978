"""Two separate servers (different ports, several worker processes) sharing PostgreSQL, and Redis."""
import base64
import uuid
from collections import Counter

import psycopg
import pytest
import requests

from tests.live.load import check_mixed_answers, mixed_traffic, send_concurrently
from tests.live.server import LiveServer
from tests.model_weights import picture
from tests.services import require_postgres, require_redis

pytestmark = pytest.mark.live
MAX_BODY_BYTES = 1024 * 1024  # small enough that the mixed load's oversized bodies are cheap to send


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
    extra = {"API_MAX_BODY_BYTES": str(MAX_BODY_BYTES)}
    if "redis" in request.param:
        extra["REDIS_URL"] = require_redis()
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
    calls = [
        requests.Request("POST", f"{live.url}/api/v1/classify", json=body, headers={"Authorization": f"Bearer {key}"})
        for live in (first, second) for _ in range(10)
    ]
    statuses = Counter(response.status_code for response in send_concurrently(calls))
    assert statuses == Counter({200: 7, 429: 13})
    assert second.count_logs() - before == 20


def test_mixed_load_on_both_servers_leaves_exactly_one_log_row_per_request(servers):
    first, second = servers
    name = f"mixed-{uuid.uuid4().hex[:6]}"
    key = first.create_key(name, rate_limit=100_000)
    small_key = second.create_key(f"{name}-small", rate_limit=6, window=3600)
    rounds = 8  # 128 requests, 16 of them with the small key
    calls = mixed_traffic(
        [first.url, second.url], key=key, small_key=small_key, oversized_bytes=MAX_BODY_BYTES + 1, rounds=rounds
    )
    before = first.log_statuses()

    responses = send_concurrently([call for call, _ in calls], concurrency=12)

    assert check_mixed_answers(calls, responses, small_limit=6) == []
    assert second.log_statuses() - before == Counter(response.status_code for response in responses)
    assert first.count_logs(api_key__name=f"{name}-small") == 2 * rounds
