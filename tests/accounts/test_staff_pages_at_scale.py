"""The staff pages stay fast with a million request-log rows: bounded, indexed queries only."""

import datetime as dt
import time

import pytest
from django.contrib.auth.models import User
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from accounts.models import RequestLog
from accounts.services import api_key_create

pytestmark = pytest.mark.django_db
ROWS = 1_000_000
KEYS = 20
TABLE = RequestLog._meta.db_table
STAFF_PAGE_SECONDS = 1.0  # the target for /staff/usage/ and the admin's log list
TRIES = 3

STATUS_SQL = "CASE WHEN n %% 50 = 0 THEN 500 WHEN n %% 10 = 0 THEN 429 WHEN n %% 7 = 0 THEN 400 ELSE 200 END"


def seed_request_logs(*, rows: int, key_ids: list[int], since: dt.datetime, span: dt.timedelta) -> None:
    """``rows`` log rows spread evenly over [since, since + span), round-robin over ``key_ids``, in one statement."""
    table = TABLE
    first, step = min(key_ids), len(key_ids)
    seconds = span.total_seconds() / rows
    columns = (
        "api_key_id, endpoint, method, status_code, response_time_ms, created_at, client_ip, request_id, images, "
        "model_name, model_version"
    )
    if connection.vendor == "postgresql":
        sql = (
            f"INSERT INTO {table} ({columns}) SELECT {first} + n %% {step}, '/api/v2/classify', 'POST', {STATUS_SQL}, "
            f"(n %% 997) / 10.0, %s::timestamptz + n * interval '{seconds} seconds', '127.0.0.1', '', 1, 'resnet18', '' "
            f"FROM generate_series(0, {rows - 1}) AS n"
        )
        params = [since]
    else:
        sql = (
            f"WITH RECURSIVE seq(n) AS (SELECT 0 UNION ALL SELECT n + 1 FROM seq WHERE n < {rows - 1}) "
            f"INSERT INTO {table} ({columns}) SELECT {first} + n %% {step}, '/api/v2/classify', 'POST', {STATUS_SQL}, "
            f"(n %% 997) / 10.0, strftime('%%Y-%%m-%%d %%H:%%M:%%f', %s, '+' || (n * {seconds}) || ' seconds'), "
            f"'127.0.0.1', '', 1, 'resnet18', '' FROM seq"
        )
        params = [since.astimezone(dt.UTC).strftime("%Y-%m-%d %H:%M:%S")]
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        if connection.vendor == "postgresql":
            cursor.execute(f"ANALYZE {table}")
        else:
            cursor.execute("ANALYZE")


def timed_get(client: Client, url: str, *, tries: int = TRIES):
    """The page's answer, its fastest time of ``tries`` (what it costs, not what busy neighbours on the
    machine cost it), every time, and the queries of the first try."""
    times = []
    for attempt in range(tries):
        with CaptureQueriesContext(connection) as captured:
            started = time.perf_counter()
            response = client.get(url)
            times.append(time.perf_counter() - started)
        if attempt == 0:
            queries = captured
    return response, min(times), times, queries


def test_staff_pages_read_a_million_log_rows_in_a_fixed_number_of_bounded_queries(capsys):
    """What keeps the staff pages fast at 1M rows is asserted; their times (target: STAFF_PAGE_SECONDS) are
    printed, not asserted, as a wall-clock bound fails on a busy machine (house rule: no timed tests)."""
    key_ids = [api_key_create(name=f"load-{i}")[0].pk for i in range(KEYS)]
    assert key_ids == list(range(min(key_ids), min(key_ids) + KEYS))
    now = timezone.now()
    started = time.perf_counter()
    seed_request_logs(rows=ROWS, key_ids=key_ids, since=now - dt.timedelta(hours=23), span=dt.timedelta(hours=23))
    seeded = time.perf_counter() - started
    assert RequestLog.objects.count() == ROWS
    client = Client()
    client.force_login(User.objects.create_superuser("admin", "admin@example.com", "pw-for-tests-only"))
    client.get("/admin/")  # session and permissions warm

    dashboard, dashboard_s, dashboard_times, dashboard_q = timed_get(client, "/staff/usage/")
    changelist, changelist_s, changelist_times, changelist_q = timed_get(client, "/admin/accounts/requestlog/")

    with capsys.disabled():
        print(
            f"\n[{connection.vendor}] target {STAFF_PAGE_SECONDS} s; seeded {ROWS} rows in {seeded:.1f} s; /staff/usage/ {dashboard_s:.3f} s "
            f"(of {', '.join(f'{t:.3f}' for t in dashboard_times)}; {len(dashboard_q)} queries); admin log list "
            f"{changelist_s:.3f} s (of {', '.join(f'{t:.3f}' for t in changelist_times)}; {len(changelist_q)} "
            f"queries, {len(changelist.content)} bytes)"
        )
        for query in [*dashboard_q.captured_queries, *changelist_q.captured_queries]:
            if float(query["time"]) >= 0.05:
                print(f"  {query['time']} s: {query['sql'][:120]}")
    assert dashboard.status_code == 200 and changelist.status_code == 200
    log_reads = [q["sql"] for q in [*dashboard_q.captured_queries, *changelist_q.captured_queries] if TABLE in q["sql"]]
    assert not [sql for sql in log_reads if "DISTINCT" in sql]  # no filter choices scanned out of the log
    assert not [sql for sql in log_reads if "created_at" not in sql and "LIMIT" not in sql and "COUNT(*)" not in sql]
    # A fixed number, whatever the rows (the dashboard's plan chart: 2 of them; the repeated 429s: 2).
    assert len(dashboard_q) <= 18 and len(changelist_q) <= 6
