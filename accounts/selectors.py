"""Reads: usage of API keys."""

import datetime as dt
import math
import time
from collections import Counter, defaultdict
from collections.abc import Iterator
from dataclasses import dataclass

from django.conf import settings
from django.db import connection
from django.db.models import Avg, Count, Q, Sum
from django.db.models.functions import Mod, Substr, TruncDate

from .models import AnonymousRequestCount, ApiKey, RequestLog
from .queries import PreparedQuery
from .windows import DatabaseWindowStore, WindowState

THROTTLED_STATUS = 429

_KEY_BY_PREFIX = PreparedQuery(lambda prefix: ApiKey.objects.filter(prefix=prefix).order_by())


def api_key_by_prefix(*, prefix: str) -> ApiKey | None:
    """The key with ``prefix`` (unique), or None. Every API request makes this lookup; it runs precompiled SQL."""
    found = _KEY_BY_PREFIX.fetch(prefix)
    return found[0] if found else None


@dataclass(frozen=True)
class UsageSummary:
    total_requests: int
    successful_requests: int
    success_rate: float  # percent, 2 places
    avg_response_time_ms: float


def usage_summary(*, api_key: ApiKey, endpoints: list[str], since: dt.datetime | None = None) -> UsageSummary:
    """Summarise ``api_key``'s requests to ``endpoints`` (paths) since ``since`` (all time if None)."""
    logs = RequestLog.objects.filter(api_key=api_key, endpoint__in=endpoints)
    if since is not None:
        logs = logs.filter(created_at__gte=since)
    row = logs.aggregate(
        total=Count("id"),
        ok=Count("id", filter=Q(status_code__gte=200, status_code__lt=300)),
        avg=Avg("response_time_ms"),
    )
    total, ok = row["total"], row["ok"]
    return UsageSummary(
        total_requests=total,
        successful_requests=ok,
        success_rate=round(100.0 * ok / total, 2) if total else 0.0,
        avg_response_time_ms=round(row["avg"] or 0.0, 2),
    )


@dataclass(frozen=True)
class EndpointUsage:
    endpoint: str
    requests: int
    images: int


@dataclass(frozen=True)
class ModelUsage:
    name: str
    version: str  # "": unversioned
    requests: int
    images: int


@dataclass(frozen=True)
class DayUsage:
    date: dt.date
    requests: int
    images: int


@dataclass(frozen=True)
class UsageReport:
    since: dt.datetime | None
    until: dt.datetime
    requests: int
    images: int  # images admitted for classification (v1: 1 per admitted request)
    throttled: int  # requests refused with 429
    by_endpoint: list[EndpointUsage]
    by_model: list[ModelUsage]  # the requests a model answered, by model and version (refused ones have none)
    by_status: dict[str, int]
    latency_ms: dict[str, float | None]  # p50, p95, p99 of the response times
    daily: list[DayUsage]  # every UTC day of the range, oldest first, zeros included


def usage_report(
    *, api_key: ApiKey, endpoints: list[str], since: dt.datetime | None, until: dt.datetime
) -> UsageReport:
    """Report ``api_key``'s requests to ``endpoints`` (paths) created in [since, until); since None: from the first."""
    logs = RequestLog.objects.filter(api_key=api_key, endpoint__in=endpoints, created_at__lt=until)
    if since is not None:
        logs = logs.filter(created_at__gte=since)
    endpoint_totals: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    day_totals: dict[dt.date, list[int]] = defaultdict(lambda: [0, 0])
    statuses: Counter = Counter()
    for group in _usage_groups(logs):
        for totals in (endpoint_totals[group.endpoint], day_totals[group.day]):
            totals[0] += group.requests
            totals[1] += group.images
        statuses[group.status_code] += group.requests
    by_endpoint = [
        EndpointUsage(endpoint=name, requests=n, images=images) for name, (n, images) in sorted(endpoint_totals.items())
    ]
    by_model = [
        ModelUsage(
            name=row["model_name"], version=row["model_version"], requests=row["requests"], images=row["images"] or 0
        )
        for row in logs.exclude(model_name="")
        .values("model_name", "model_version")
        .annotate(requests=Count("id"), images=Sum("images"))
        .order_by("model_name", "model_version")
    ]
    return UsageReport(
        since=since,
        until=until,
        requests=sum(e.requests for e in by_endpoint),
        images=sum(e.images for e in by_endpoint),
        throttled=statuses.get(THROTTLED_STATUS, 0),
        by_endpoint=by_endpoint,
        by_model=by_model,
        by_status={str(code): count for code, count in sorted(statuses.items())},
        latency_ms=percentiles_of(logs, total=sum(statuses.values())),
        daily=_daily(day_totals, since=since, until=until),
    )


@dataclass(frozen=True)
class _UsageGroup:
    endpoint: str
    status_code: int
    day: dt.date  # UTC
    requests: int
    images: int


def _usage_groups(logs) -> Iterator[_UsageGroup]:
    """``logs`` counted per endpoint, status and UTC day in one pass (at most endpoints x statuses x days groups).

    SQLite keeps datetimes as UTC text, so the first ten characters are the UTC day; its TruncDate calls a
    Python function per row (measured: the report took three times as long).
    """
    sqlite = connection.vendor == "sqlite"
    day = Substr("created_at", 1, 10) if sqlite else TruncDate("created_at", tzinfo=dt.UTC)
    rows = logs.annotate(day=day).values("endpoint", "status_code", "day").annotate(n=Count("id"), images=Sum("images"))
    for row in rows.order_by():
        yield _UsageGroup(
            endpoint=row["endpoint"],
            status_code=row["status_code"],
            day=dt.date.fromisoformat(row["day"]) if sqlite else row["day"],
            requests=row["n"],
            images=row["images"] or 0,
        )


def percentile(sorted_values: list[float], q: float) -> float | None:
    """The nearest-rank ``q``-th percentile (0 < q <= 100) of ascending values, 2 places; None when empty."""
    if not sorted_values:
        return None
    rank = max(1, math.ceil(q / 100.0 * len(sorted_values)))
    return round(sorted_values[rank - 1], 2)


def _daily(day_totals: dict[dt.date, list[int]], *, since: dt.datetime | None, until: dt.datetime) -> list[DayUsage]:
    """Every UTC day of [since, until) with its [requests, images] (zeros included); since None: from the first."""
    if not day_totals and since is None:
        return []
    first = since.astimezone(dt.UTC).date() if since is not None else min(day_totals)
    last = (until - dt.timedelta(microseconds=1)).astimezone(dt.UTC).date()
    days = []
    for offset in range((last - first).days + 1):
        day = first + dt.timedelta(days=offset)
        requests, images = day_totals.get(day, (0, 0))
        days.append(DayUsage(date=day, requests=requests, images=images))
    return days


def rate_limit_state(*, api_key: ApiKey, store=None, now: float | None = None) -> WindowState:
    """``api_key``'s sliding window as it stands (nothing consumed); ``store`` defaults to the database."""
    store = store or DatabaseWindowStore()
    return store.peek(
        key_id=api_key.pk,
        limit=api_key.rate_limit,
        window=api_key.rate_window_seconds,
        now=time.time() if now is None else now,
    )


# --- The staff usage dashboard: every key's requests to the API (all logged endpoints) -----------

BUCKETS = {"hour": dt.timedelta(hours=1), "day": dt.timedelta(days=1)}
NO_KEY_LABEL = "(no key)"  # requests that carried no valid key: 401s, public endpoints
OTHER_KEYS_LABEL = "(other keys)"


@dataclass(frozen=True)
class KeySeries:
    label: str  # the key's name, NO_KEY_LABEL or OTHER_KEYS_LABEL
    counts: list[int]  # one per bucket of the timeseries


@dataclass(frozen=True)
class UsageTimeseries:
    bucket: str  # "hour" or "day"
    starts: list[dt.datetime]  # the start of every bucket in the range, oldest first, UTC
    series: list[KeySeries]  # the busiest keys first


@dataclass(frozen=True)
class KeyUsage:
    key_id: int | None
    name: str
    prefix: str
    requests: int
    images: int
    throttled: int
    errors: int  # 4xx and 5xx other than 429


@dataclass(frozen=True)
class UsageDashboard:
    since: dt.datetime
    until: dt.datetime
    requests: int
    throttled: int
    timeseries: UsageTimeseries
    status_mix: dict[str, int]
    latency_ms: dict[str, float | None]
    top_keys: list[KeyUsage]
    anonymous: "AnonymousUsage | None"  # requests without a key; None when one key is shown


def request_logs_in_range(*, since: dt.datetime, until: dt.datetime, api_key: ApiKey | None = None):
    """Logged API requests created in [since, until), of ``api_key`` alone when given."""
    logs = RequestLog.objects.filter(created_at__gte=since, created_at__lt=until)
    return logs.filter(api_key=api_key) if api_key is not None else logs


def bucket_start(moment: dt.datetime, bucket: str) -> dt.datetime:
    """The start (UTC) of the hour or day that holds ``moment``."""
    moment = moment.astimezone(dt.UTC)
    start = moment.replace(minute=0, second=0, microsecond=0)
    return start.replace(hour=0) if bucket == "day" else start


@dataclass(frozen=True)
class KeyStatusCount:
    key_id: int | None
    status_code: int
    requests: int
    images: int


def key_status_counts(*, since: dt.datetime, until: dt.datetime, api_key: ApiKey | None = None) -> list[KeyStatusCount]:
    """Requests and images per (key, status code) in [since, until), at most keys x status codes rows, from
    which the dashboard's totals, status mix and top keys are all summed. The covering index
    requestlog_key_status_time holds the groups in order (SQLite skips through it per group once ANALYZE
    has run: no sort of the range's rows)."""
    rows = (
        request_logs_in_range(since=since, until=until, api_key=api_key)
        .values_list("api_key_id", "status_code")
        .annotate(requests=Count("*"), images=Sum("images"))
        .order_by()
    )
    return [KeyStatusCount(key_id, status, requests, images or 0) for key_id, status, requests, images in rows]


def usage_timeseries(
    *,
    since: dt.datetime,
    until: dt.datetime,
    bucket: str,
    api_key: ApiKey | None = None,
    max_series: int = 8,
    counts: list[KeyStatusCount] | None = None,
) -> UsageTimeseries:
    """Requests per key per hour or day over [since, until), zeros included.

    The ``max_series`` busiest keys get a series each; the rest are summed into OTHER_KEYS_LABEL.
    ``counts``: key_status_counts of the same range, when the caller has them.
    """
    if bucket not in BUCKETS:
        raise ValueError(f"bucket must be one of {sorted(BUCKETS)}, not {bucket!r}")
    step = BUCKETS[bucket]
    starts = []
    moment = bucket_start(since, bucket)
    while moment < until:
        starts.append(moment)
        moment += step
    per_key = Counter()
    for row in counts if counts is not None else key_status_counts(since=since, until=until, api_key=api_key):
        per_key[row.key_id] += row.requests
    names = _key_names([key_id for key_id in per_key if key_id is not None])
    ranked = sorted(per_key, key=lambda key_id: (-per_key[key_id], names.get(key_id, NO_KEY_LABEL)))
    shown = ranked[:max_series]
    edges = [max(start, since) for start in starts] + [until]
    count = _bucket_counts_grouped if connection.vendor == "postgresql" else _bucket_counts
    counted = count(shown, starts, step, edges, with_total=len(ranked) > max_series)
    series = [
        KeySeries(label=names[key_id] if key_id is not None else NO_KEY_LABEL, counts=counted[key_id])
        for key_id in shown
    ]
    if len(ranked) > max_series:
        total = counted[_ALL_KEYS]
        rest = [total[i] - sum(counted[key_id][i] for key_id in shown) for i in range(len(starts))]
        series.append(KeySeries(label=OTHER_KEYS_LABEL, counts=rest))
    return UsageTimeseries(bucket=bucket, starts=starts, series=series)


_ALL_KEYS = "all"
_NO_KEY_SERIES, _OTHER_SERIES = 0, -1  # the grouped query's series ids besides key ids (which are >= 1)


def _bucket_counts_grouped(
    key_ids: list[int | None],
    starts: list[dt.datetime],
    step: dt.timedelta,
    edges: list[dt.datetime],
    *,
    with_total: bool,
) -> dict:
    """_bucket_counts for PostgreSQL: one GROUP BY (series, bucket) over the range, at most
    (max_series + 1) x buckets rows. PostgreSQL's index range counts would visit the table for every
    row (until a VACUUM marks its pages all-visible); its native date arithmetic groups fast instead."""
    shown = [key_id for key_id in key_ids if key_id is not None]
    only_shown = (
        ""
        if with_total
        else ("AND (api_key_id = ANY(%s)" + (" OR api_key_id IS NULL" if None in key_ids else "") + ")")
    )
    sql = (
        f"SELECT CASE WHEN api_key_id = ANY(%s) THEN api_key_id WHEN api_key_id IS NULL THEN {_NO_KEY_SERIES} "
        f"ELSE {_OTHER_SERIES} END, date_bin(%s, created_at, %s), COUNT(*) "
        f"FROM {RequestLog._meta.db_table} WHERE created_at >= %s AND created_at < %s {only_shown} GROUP BY 1, 2"
    )
    params = [shown, step, starts[0], edges[0], edges[-1], *([] if with_total else [shown])]
    counted = {key_id: [0] * len(starts) for key_id in [*key_ids, _ALL_KEYS]}
    key_of_series = {key_id: key_id for key_id in shown} | {_NO_KEY_SERIES: None}
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        for series, bucket_at, n in cursor.fetchall():
            bucket = (bucket_at - starts[0]) // step
            if series in key_of_series and key_of_series[series] in counted:
                counted[key_of_series[series]][bucket] += n
            counted[_ALL_KEYS][bucket] += n
    return counted


def _bucket_counts(
    key_ids: list[int | None],
    starts: list[dt.datetime],
    step: dt.timedelta,
    edges: list[dt.datetime],
    *,
    with_total: bool,
) -> dict:
    """{key id: [requests in [edges[i], edges[i+1]) for each i]}, plus _ALL_KEYS with ``with_total``.

    One statement of range counts, each answered from an index (requestlog_key_time for one key,
    created_at for all) without sorting or grouping the range's rows: at most (max_series + 1) x buckets
    counts, whatever the number of rows.
    """
    table, placeholder = RequestLog._meta.db_table, "%s"
    prep = RequestLog._meta.get_field("created_at").get_db_prep_value
    bounds = [prep(edge, connection) for edge in edges]
    columns, params = [], []
    for key_id in [*key_ids, *([_ALL_KEYS] if with_total else [])]:
        key_sql = {None: "api_key_id IS NULL AND ", _ALL_KEYS: ""}.get(key_id, f"api_key_id = {placeholder} AND ")
        for low, high in zip(bounds, bounds[1:]):
            columns.append(
                f"(SELECT COUNT(*) FROM {table} WHERE {key_sql}created_at >= {placeholder} AND created_at < {placeholder})"
            )
            params += ([] if key_id in (None, _ALL_KEYS) else [key_id]) + [low, high]
    if not columns:
        return {}
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT {', '.join(columns)}", params)
        values = list(cursor.fetchone())
    width = len(bounds) - 1
    keys = [*key_ids, *([_ALL_KEYS] if with_total else [])]
    return {key_id: values[i * width : (i + 1) * width] for i, key_id in enumerate(keys)}


def _key_names(key_ids: list[int]) -> dict[int, str]:
    return dict(ApiKey.objects.filter(pk__in=key_ids).values_list("pk", "name")) if key_ids else {}


def status_mix(
    *,
    since: dt.datetime,
    until: dt.datetime,
    api_key: ApiKey | None = None,
    counts: list[KeyStatusCount] | None = None,
) -> dict[str, int]:
    """How many requests ended with each status code, by code ascending."""
    mix = Counter()
    for row in counts if counts is not None else key_status_counts(since=since, until=until, api_key=api_key):
        mix[row.status_code] += row.requests
    return {str(code): mix[code] for code in sorted(mix)}


def latency_percentiles(
    *, since: dt.datetime, until: dt.datetime, api_key: ApiKey | None = None, total: int | None = None
) -> dict[str, float | None]:
    """p50, p95 and p99 (nearest rank) of the response times in milliseconds; None when there were none.

    PostgreSQL computes them exactly in SQL (``percentile_disc``: the nearest rank). Elsewhere at most
    ACCOUNTS_DASHBOARD_LATENCY_SAMPLE_ROWS times are read: all of them when the range holds no more,
    else an even sample (evenly spaced ids). ``total``: how many requests the range holds, when known.
    """
    logs = request_logs_in_range(since=since, until=until, api_key=api_key)
    if connection.vendor == "postgresql" or api_key is not None:
        return percentiles_of(logs, total=total)
    total = logs.count() if total is None else total
    limit = settings.ACCOUNTS_DASHBOARD_LATENCY_SAMPLE_ROWS
    if total <= limit:
        return percentiles_of(logs, total=total)
    times = _sampled_times_by_id(logs, since=since, until=until, limit=limit)
    return {f"p{q}": percentile(times, q) for q in PERCENTILES}


def percentiles_of(logs, *, total: int | None = None) -> dict[str, float | None]:
    """p50, p95 and p99 (nearest rank) of ``logs``' response times: exact in SQL on PostgreSQL; elsewhere
    all of them when there are at most ACCOUNTS_DASHBOARD_LATENCY_SAMPLE_ROWS, else every n-th row's (one
    key's rows are spread over the ids, read through requestlog_key_time). ``total``: len(logs), when known."""
    if connection.vendor == "postgresql":
        return _percentiles_in_sql(logs)
    total = logs.count() if total is None else total
    limit = settings.ACCOUNTS_DASHBOARD_LATENCY_SAMPLE_ROWS
    if total > limit:
        logs = logs.annotate(sample=Mod("id", math.ceil(total / limit))).filter(sample=0)
    times = sorted(logs.values_list("response_time_ms", flat=True))
    return {f"p{q}": percentile(times, q) for q in PERCENTILES}


def _sampled_times_by_id(logs, *, since: dt.datetime, until: dt.datetime, limit: int) -> list[float]:
    """The response times of at most ``limit`` rows at evenly spaced ids over the range's id span, sorted.

    Ids grow with created_at, so the range's rows are (nearly) one id span: ``limit`` primary-key
    lookups instead of a pass over the range.
    """
    by_time = logs.order_by("created_at", "id").values_list("id", flat=True)
    first, last = by_time.first(), by_time.last()
    if first is None or last is None or last < first:
        return []
    step = max(1, math.ceil((last - first + 1) / limit))
    table = RequestLog._meta.db_table
    prep = RequestLog._meta.get_field("created_at").get_db_prep_value
    sql = (
        f"WITH RECURSIVE sample(id) AS (SELECT %s UNION ALL SELECT id + %s FROM sample WHERE id + %s <= %s) "
        f"SELECT t.response_time_ms FROM sample JOIN {table} t ON t.id = sample.id "
        "WHERE t.created_at >= %s AND t.created_at < %s ORDER BY t.response_time_ms"
    )
    with connection.cursor() as cursor:
        cursor.execute(sql, [first, step, step, last, prep(since, connection), prep(until, connection)])
        return [row[0] for row in cursor.fetchall()]


PERCENTILES = (50, 95, 99)


def _percentiles_in_sql(logs) -> dict[str, float | None]:
    sql, params = logs.order_by().values_list("response_time_ms").query.sql_with_params()
    fractions = ", ".join(str(q / 100.0) for q in PERCENTILES)
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT percentile_disc(ARRAY[{fractions}]) WITHIN GROUP (ORDER BY t.response_time_ms) FROM ({sql}) t",
            params,
        )
        values = cursor.fetchone()[0] or [None] * len(PERCENTILES)
    return {f"p{q}": None if v is None else round(v, 2) for q, v in zip(PERCENTILES, values)}


def top_keys(
    *,
    since: dt.datetime,
    until: dt.datetime,
    api_key: ApiKey | None = None,
    limit: int = 10,
    counts: list[KeyStatusCount] | None = None,
) -> list[KeyUsage]:
    """The keys with the most requests, busiest first (requests without a key count as one row)."""
    totals: dict[int | None, dict[str, int]] = {}
    for row in counts if counts is not None else key_status_counts(since=since, until=until, api_key=api_key):
        total = totals.setdefault(row.key_id, {"requests": 0, "images": 0, "throttled": 0, "errors": 0})
        total["requests"] += row.requests
        total["images"] += row.images
        total["throttled"] += row.requests if row.status_code == THROTTLED_STATUS else 0
        total["errors"] += row.requests if row.status_code >= 400 and row.status_code != THROTTLED_STATUS else 0
    keys = {
        key.pk: key for key in ApiKey.objects.filter(pk__in=[k for k in totals if k is not None]).only("name", "prefix")
    }
    rows = [
        KeyUsage(
            key_id=key_id,
            name=keys[key_id].name if key_id in keys else NO_KEY_LABEL,
            prefix=keys[key_id].prefix if key_id in keys else "",
            **total,
        )
        for key_id, total in totals.items()
    ]
    return sorted(rows, key=lambda row: (-row.requests, row.name))[:limit]


@dataclass(frozen=True)
class AnonymousUsage:
    """Requests without a valid key over a range (AnonymousRequestCount): totals, by status, busiest clients."""

    requests: int
    by_status: dict[str, int]
    by_route: dict[str, int]
    top_clients: list[tuple[str, int]]  # (client, requests), busiest first


def anonymous_usage(*, since: dt.datetime, until: dt.datetime, limit: int = 10) -> AnonymousUsage:
    """The anonymous counts of the minutes in [since, until), read through the (minute, ...) unique index."""
    counts = AnonymousRequestCount.objects.filter(minute__gte=bucket_minute(since), minute__lt=until).order_by()
    by_status = dict(counts.values_list("status_code").annotate(n=Sum("count")).order_by("status_code"))
    by_route = dict(counts.values_list("route").annotate(n=Sum("count")).order_by("-n", "route")[:limit])
    top_clients = list(counts.values_list("client").annotate(n=Sum("count")).order_by("-n", "client")[:limit])
    return AnonymousUsage(
        requests=sum(by_status.values()),
        by_status={str(code): n for code, n in by_status.items()},
        by_route=by_route,
        top_clients=top_clients,
    )


def bucket_minute(moment: dt.datetime) -> dt.datetime:
    """The start of the minute that holds ``moment``."""
    return moment.replace(second=0, microsecond=0)


def usage_dashboard(
    *, since: dt.datetime, until: dt.datetime, bucket: str, api_key: ApiKey | None = None
) -> UsageDashboard:
    """Everything the staff usage dashboard shows for [since, until), of one key or of all.

    Three reads of the log's range (key x status counts, the timeseries, the latency percentiles), and
    the anonymous counts when no key is chosen, each bounded in the rows it returns.
    """
    counts = key_status_counts(since=since, until=until, api_key=api_key)
    mix = status_mix(since=since, until=until, counts=counts)
    requests = sum(mix.values())
    return UsageDashboard(
        since=since,
        until=until,
        requests=requests,
        throttled=mix.get(str(THROTTLED_STATUS), 0),
        timeseries=usage_timeseries(since=since, until=until, bucket=bucket, api_key=api_key, counts=counts),
        status_mix=mix,
        latency_ms=latency_percentiles(since=since, until=until, api_key=api_key, total=requests),
        top_keys=top_keys(since=since, until=until, counts=counts),
        anonymous=anonymous_usage(since=since, until=until) if api_key is None else None,
    )


def api_keys_for_filter():
    """Every key, active or not, by name: the choices of the dashboard's key filter."""
    return ApiKey.objects.order_by("name")
