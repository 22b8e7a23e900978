"""Reads: usage of API keys.

Every usage number (requests, images, successes, throttled, errors, requests by status, average and
percentile latency) is read through one ``UsageQuery`` and summed by one ``UsageTally``, whichever of
v1's summary, v2's report or the staff dashboard shows it. Request counts add a key's repeated 429s
(RepeatedThrottleCount, dated to their minute) to its log rows; latencies are the log rows'.
"""

import bisect
import datetime as dt
import math
import time
from collections import Counter, defaultdict
from collections.abc import Hashable, Iterable
from dataclasses import dataclass, field
from typing import Any

from django.conf import settings
from django.db import connection
from django.db.models import Avg, CharField, Count, F, Q, QuerySet, Sum, Value, Window
from django.db.models.functions import Mod, RowNumber, Substr, TruncDate

from .models import AnonymousRequestCount, ApiKey, RepeatedThrottleCount, RequestLog
from .queries import PreparedQuery
from .windows import DatabaseWindowStore, WindowState, quota_rule

THROTTLED_STATUS = 429
PERCENTILES = (50, 95, 99)
MINUTE = dt.timedelta(minutes=1)
DAY = "day"  # a field UsageQuery.status_counts can group by: the UTC day of created_at

_KEY_BY_PREFIX = PreparedQuery(lambda prefix: ApiKey.objects.select_related("plan").filter(prefix=prefix).order_by())


def api_key_by_prefix(*, prefix: str) -> ApiKey | None:
    """The key with ``prefix`` (unique) and its plan (joined: no second query), or None. Every API request makes
    this lookup; it runs precompiled SQL."""
    found = _KEY_BY_PREFIX.fetch(prefix)
    return found[0] if found else None


# --- The one query builder and the one tally of usage numbers -------------------------------------


@dataclass(frozen=True)
class StatusCount:
    """Requests and images of one group of logged requests: its values of the grouped fields, its status."""

    group: tuple[Any, ...]
    status_code: int
    requests: int
    images: int
    repeats: int = 0  # of ``requests``, the repeated 429s, which have no log row


@dataclass(frozen=True)
class UsageTally:
    """The sums of some StatusCount rows: the one place requests are counted and classed by status."""

    requests: int = 0
    images: int = 0
    successful: int = 0  # 2xx
    throttled: int = 0  # 429
    errors: int = 0  # 4xx and 5xx other than 429
    by_status: dict[str, int] = field(default_factory=dict)  # by code ascending
    logged: int = 0  # of ``requests``, those with a log row (which have latencies)

    @classmethod
    def of(cls, counts: Iterable[StatusCount]) -> "UsageTally":
        statuses: Counter[int] = Counter()
        images = repeats = 0
        for row in counts:
            statuses[row.status_code] += row.requests
            images += row.images
            repeats += row.repeats
        return cls(
            logged=sum(statuses.values()) - repeats,
            requests=sum(statuses.values()),
            images=images,
            successful=sum(n for code, n in statuses.items() if 200 <= code < 300),
            throttled=statuses[THROTTLED_STATUS],
            errors=sum(n for code, n in statuses.items() if code >= 400 and code != THROTTLED_STATUS),
            by_status={str(code): statuses[code] for code in sorted(statuses)},
        )

    @property
    def success_rate(self) -> float:
        """Successful requests in percent, 2 places; 0.0 without requests."""
        return round(100.0 * self.successful / self.requests, 2) if self.requests else 0.0


def tally_by(counts: Iterable[StatusCount], position: int) -> dict[Hashable, UsageTally]:
    """One UsageTally per value of the grouped field at ``position`` of ``counts``' groups."""
    groups: dict[Hashable, list[StatusCount]] = defaultdict(list)
    for row in counts:
        groups[row.group[position]].append(row)
    return {value: UsageTally.of(rows) for value, rows in groups.items()}


@dataclass(frozen=True)
class UsageQuery:
    """The logged requests a usage number covers: of one key or all, to some endpoints or all, created in
    [since, until) (None: unbounded). Each read below is the only code that computes its number."""

    api_key: ApiKey | None = None
    endpoints: tuple[str, ...] | None = None  # paths
    since: dt.datetime | None = None
    until: dt.datetime | None = None

    def logs(self) -> QuerySet[RequestLog]:
        """The RequestLog rows covered, unordered."""
        since = Q(created_at__gte=self.since) if self.since is not None else None
        return self._covered(RequestLog.objects.order_by(), since=since, at="created_at")

    def repeats(self) -> QuerySet[RepeatedThrottleCount]:
        """The repeated-429 counts of the minutes that overlap [since, until), unordered. On minute bounds (days,
        hours, months) that is exact; a bound inside a minute takes the whole minute."""
        since = Q(minute__gt=self.since - MINUTE) if self.since is not None else None
        return self._covered(RepeatedThrottleCount.objects.order_by(), since=since, at="minute")

    def _covered(self, rows: QuerySet, *, since: Q | None, at: str) -> QuerySet:
        """``rows`` of the key and the endpoints, matching ``since`` (None: unbounded), with ``at`` before until."""
        if self.api_key is not None:
            rows = rows.filter(api_key=self.api_key)
        if self.endpoints is not None:
            rows = rows.filter(endpoint__in=self.endpoints)
        if since is not None:
            rows = rows.filter(since)
        if self.until is not None:
            rows = rows.filter(**{f"{at}__lt": self.until})
        return rows

    def status_counts(self, *fields: str) -> list[StatusCount]:
        """Requests and images per value of ``fields`` (RequestLog columns or DAY) and status code, in one
        GROUP BY of the log and one of the repeated 429s: a row per group, whatever the number of requests.

        SQLite keeps datetimes as UTC text, so DAY is its first ten characters there; SQLite's TruncDate
        calls a Python function per row (measured: v2's report took three times as long).
        """
        logs = _with_day(self.logs(), "created_at") if DAY in fields else self.logs()
        rows = logs.values_list(*fields, "status_code").annotate(requests=Count("*"), images=Sum("images"))
        counted: dict[tuple, list[int]] = {}  # (group, status): [requests, images, repeats]
        for *group, status_code, requests, images in rows:
            counted[(_group(group, fields), status_code)] = [requests, images or 0, 0]
        for row in self.repeat_counts(*fields):
            numbers = counted.setdefault((row.group, THROTTLED_STATUS), [0, 0, 0])
            numbers[0] += row.requests
            numbers[2] += row.repeats
        return [StatusCount(group, status, *numbers) for (group, status), numbers in counted.items()]

    def repeat_counts(self, *fields: str) -> list[StatusCount]:
        """The repeated 429s alone, per value of ``fields`` as in status_counts: a key's, a route's and a day's
        are theirs; a refused request names no model, so model fields are blank."""
        repeats = self.repeats().filter(repeats__gt=0)
        if DAY in fields:
            repeats = _with_day(repeats, "minute")
        blank = {name: Value("", output_field=CharField()) for name in fields if name in _BLANK_FOR_REPEATS}
        rows = repeats.annotate(**blank).values_list(*fields).annotate(n=Sum("repeats"))
        return [StatusCount(_group(group, fields), THROTTLED_STATUS, n, 0, repeats=n) for *group, n in rows]

    def average_response_time_ms(self) -> float:
        """The mean response time in milliseconds, 2 places; 0.0 without requests."""
        return round(self.logs().aggregate(avg=Avg("response_time_ms"))["avg"] or 0.0, 2)

    def latency_percentiles(self, *, total: int | None = None) -> dict[str, float | None]:
        """p50, p95 and p99 (nearest rank) of the response times in milliseconds, 2 places; None without any.

        PostgreSQL computes them exactly in SQL (``percentile_disc``: the nearest rank); elsewhere they come
        from response_time_sample. ``total``: how many requests are covered, when the caller knows.
        """
        if connection.vendor == "postgresql":
            return self._percentiles_in_sql()
        times = self.response_time_sample(total=total)
        return {f"p{q}": percentile(times, q) for q in PERCENTILES}

    def response_time_sample(self, *, total: int | None = None) -> list[float]:
        """At most ACCOUNTS_DASHBOARD_LATENCY_SAMPLE_ROWS response times, ascending: all of them when no more
        are covered, else an even sample. Every key's requests over a range: the rows at evenly spaced ids
        (``limit`` primary-key lookups); one key's or some endpoints' (spread over the ids): every n-th row
        in time order. ``total``: how many requests are covered, when the caller knows.
        """
        limit = settings.ACCOUNTS_DASHBOARD_LATENCY_SAMPLE_ROWS
        logs = self.logs()
        total = logs.count() if total is None else total
        if total <= limit:
            times = list(logs.values_list("response_time_ms", flat=True)[:limit])
        elif self.api_key is None and self.endpoints is None and self.since and self.until:
            return self._times_at_spaced_ids(self.since, self.until, limit=limit)
        else:
            times = self._times_at_spaced_rows(step=math.ceil(total / limit), limit=limit)
        return sorted(times)

    def _times_at_spaced_rows(self, *, step: int, limit: int) -> list[float]:
        """The response times of every ``step``-th row by created_at (from the middle of the first step)."""
        numbered = self.logs().annotate(row=Window(RowNumber(), order_by=[F("created_at").asc(), F("id").asc()]))
        sampled = numbered.annotate(phase=Mod(F("row") - 1, step)).filter(phase=step // 2)
        return list(sampled.values_list("response_time_ms", flat=True)[:limit])

    def _times_at_spaced_ids(self, since: dt.datetime, until: dt.datetime, *, limit: int) -> list[float]:
        """The response times of at most ``limit`` rows at evenly spaced ids over [since, until)'s id span,
        ascending. Ids grow with created_at, so the range's rows are (nearly) one id span: ``limit``
        primary-key lookups instead of a pass over the range."""
        by_time = self.logs().order_by("created_at", "id").values_list("id", flat=True)
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

    def _percentiles_in_sql(self) -> dict[str, float | None]:
        sql, params = self.logs().values_list("response_time_ms").query.sql_with_params()
        fractions = ", ".join(str(q / 100.0) for q in PERCENTILES)
        with connection.cursor() as cursor:
            cursor.execute(
                f"SELECT percentile_disc(ARRAY[{fractions}]) WITHIN GROUP (ORDER BY t.response_time_ms) FROM ({sql}) t",
                params,
            )
            values = cursor.fetchone()[0] or [None] * len(PERCENTILES)
        return {f"p{q}": None if v is None else round(v, 2) for q, v in zip(PERCENTILES, values)}


_BLANK_FOR_REPEATS = frozenset({"model_name", "model_version"})


def _with_day(rows: QuerySet, column: str) -> QuerySet:
    """``rows`` with ``day``: the UTC day of ``column`` (on SQLite its text's first ten characters)."""
    sqlite = connection.vendor == "sqlite"
    return rows.annotate(day=Substr(column, 1, 10) if sqlite else TruncDate(column, tzinfo=dt.UTC))


def _group(values: list, fields: tuple[str, ...]) -> tuple:
    """A group's values as a tuple, DAY as a date (SQLite gives its text)."""
    if DAY in fields and isinstance(values[fields.index(DAY)], str):
        values = list(values)
        values[fields.index(DAY)] = dt.date.fromisoformat(values[fields.index(DAY)])
    return tuple(values)


def percentile(sorted_values: list[float], q: float) -> float | None:
    """The nearest-rank ``q``-th percentile (0 < q <= 100) of ascending values, 2 places; None when empty."""
    if not sorted_values:
        return None
    rank = max(1, math.ceil(q / 100.0 * len(sorted_values)))
    return round(sorted_values[rank - 1], 2)


# --- v1's summary and v2's report: one key's requests to some endpoints --------------------------


@dataclass(frozen=True)
class UsageSummary:
    total_requests: int
    successful_requests: int
    success_rate: float  # percent, 2 places
    avg_response_time_ms: float


def usage_summary(*, api_key: ApiKey, endpoints: list[str], since: dt.datetime | None = None) -> UsageSummary:
    """Summarise ``api_key``'s requests to ``endpoints`` (paths) since ``since`` (all time if None)."""
    query = UsageQuery(api_key=api_key, endpoints=tuple(endpoints), since=since)
    tally = UsageTally.of(query.status_counts())
    return UsageSummary(
        total_requests=tally.requests,
        successful_requests=tally.successful,
        success_rate=tally.success_rate,
        avg_response_time_ms=query.average_response_time_ms(),
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
    query = UsageQuery(api_key=api_key, endpoints=tuple(endpoints), since=since, until=until)
    counts = query.status_counts("endpoint", DAY)  # at most endpoints x days x statuses rows
    tally = UsageTally.of(counts)
    by_endpoint = [
        EndpointUsage(endpoint=str(name), requests=t.requests, images=t.images)
        for name, t in sorted(tally_by(counts, 0).items(), key=lambda item: str(item[0]))
    ]
    by_model = [
        ModelUsage(
            name=row["model_name"], version=row["model_version"], requests=row["requests"], images=row["images"] or 0
        )
        for row in query.logs()
        .exclude(model_name="")
        .values("model_name", "model_version")
        .annotate(requests=Count("id"), images=Sum("images"))
        .order_by("model_name", "model_version")
    ]
    return UsageReport(
        since=since,
        until=until,
        requests=tally.requests,
        images=tally.images,
        throttled=tally.throttled,
        by_endpoint=by_endpoint,
        by_model=by_model,
        by_status=tally.by_status,
        latency_ms=query.latency_percentiles(total=tally.logged),
        daily=_daily(tally_by(counts, 1), since=since, until=until),
    )


def _daily(by_day: dict, *, since: dt.datetime | None, until: dt.datetime) -> list[DayUsage]:
    """Every UTC day of [since, until) with its tally's requests and images (zeros included); since None:
    from the first day in ``by_day``."""
    if not by_day and since is None:
        return []
    first = since.astimezone(dt.UTC).date() if since is not None else min(by_day)
    last = (until - dt.timedelta(microseconds=1)).astimezone(dt.UTC).date()
    days = []
    for offset in range((last - first).days + 1):
        day = first + dt.timedelta(days=offset)
        tally = by_day.get(day, UsageTally())
        days.append(DayUsage(date=day, requests=tally.requests, images=tally.images))
    return days


def rate_limit_state(*, api_key: ApiKey, store=None, now: float | None = None) -> WindowState:
    """``api_key``'s sliding window as it stands (nothing consumed), with its monthly quota when it is on a
    plan; ``store`` defaults to the database."""
    store = store or DatabaseWindowStore()
    return store.peek(
        key_id=api_key.pk,
        limit=api_key.effective_rate_limit,
        window=api_key.effective_rate_window_seconds,
        now=time.time() if now is None else now,
        quota=quota_rule(api_key),
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


def bucket_start(moment: dt.datetime, bucket: str) -> dt.datetime:
    """The start (UTC) of the hour or day that holds ``moment``."""
    moment = moment.astimezone(dt.UTC)
    start = moment.replace(minute=0, second=0, microsecond=0)
    return start.replace(hour=0) if bucket == "day" else start


def key_status_counts(*, since: dt.datetime, until: dt.datetime, api_key: ApiKey | None = None) -> list[StatusCount]:
    """Requests and images per (key id, status code) in [since, until), at most keys x status codes rows, from
    which the dashboard's totals, status mix and top keys are all tallied. The covering index
    requestlog_key_status_time holds the groups in order (SQLite skips through it per group once ANALYZE
    has run: no sort of the range's rows)."""
    return UsageQuery(api_key=api_key, since=since, until=until).status_counts("api_key_id")


def usage_timeseries(
    *,
    since: dt.datetime,
    until: dt.datetime,
    bucket: str,
    api_key: ApiKey | None = None,
    max_series: int = 8,
    counts: list[StatusCount] | None = None,
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
    counts = counts if counts is not None else key_status_counts(since=since, until=until, api_key=api_key)
    per_key = {key_id: tally.requests for key_id, tally in tally_by(counts, 0).items()}
    names = _key_names([key_id for key_id in per_key if key_id is not None])
    ranked = sorted(per_key, key=lambda key_id: (-per_key[key_id], names.get(key_id, NO_KEY_LABEL)))
    shown = ranked[:max_series]
    edges = [max(start, since) for start in starts] + [until]
    count = _bucket_counts_grouped if connection.vendor == "postgresql" else _bucket_counts
    counted = count(shown, starts, step, edges, with_total=len(ranked) > max_series)
    _add_repeats(counted, UsageQuery(api_key=api_key, since=since, until=until), edges)
    series = [
        KeySeries(label=names[key_id] if key_id is not None else NO_KEY_LABEL, counts=counted[key_id])
        for key_id in shown
    ]
    if len(ranked) > max_series:
        total = counted[_ALL_KEYS]
        rest = [total[i] - sum(counted[key_id][i] for key_id in shown) for i in range(len(starts))]
        series.append(KeySeries(label=OTHER_KEYS_LABEL, counts=rest))
    return UsageTimeseries(bucket=bucket, starts=starts, series=series)


def _add_repeats(counted: dict, query: UsageQuery, edges: list[dt.datetime]) -> None:
    """Add the repeated 429s of ``query`` to ``counted``'s buckets (bounded by edges), per key shown and in the
    total: one GROUP BY (key, minute), a row per minute in which a key was refused more than once."""
    rows = query.repeats().filter(repeats__gt=0).values_list("api_key_id", "minute").annotate(n=Sum("repeats"))
    for key_id, minute, repeats in rows:
        if minute >= edges[-1]:
            continue
        bucket = max(bisect.bisect_right(edges, minute) - 1, 0)  # a minute that began before since: the first
        for series in (key_id, _ALL_KEYS):
            if series in counted:
                counted[series][bucket] += repeats


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
    counts: list[StatusCount] | None = None,
) -> dict[str, int]:
    """How many requests ended with each status code, by code ascending. ``counts``: key_status_counts of
    the same range, when the caller has them."""
    return UsageTally.of(
        counts if counts is not None else key_status_counts(since=since, until=until, api_key=api_key)
    ).by_status


def latency_percentiles(
    *, since: dt.datetime, until: dt.datetime, api_key: ApiKey | None = None, total: int | None = None
) -> dict[str, float | None]:
    """p50, p95 and p99 of the response times in [since, until), of ``api_key`` alone when given
    (UsageQuery.latency_percentiles)."""
    return UsageQuery(api_key=api_key, since=since, until=until).latency_percentiles(total=total)


def top_keys(
    *,
    since: dt.datetime,
    until: dt.datetime,
    api_key: ApiKey | None = None,
    limit: int = 10,
    counts: list[StatusCount] | None = None,
) -> list[KeyUsage]:
    """The keys with the most requests, busiest first (requests without a key count as one row)."""
    by_key = tally_by(counts if counts is not None else key_status_counts(since=since, until=until, api_key=api_key), 0)
    keys = {
        key.pk: key for key in ApiKey.objects.filter(pk__in=[k for k in by_key if k is not None]).only("name", "prefix")
    }
    rows = [
        KeyUsage(
            key_id=key_id,
            name=keys[key_id].name if key_id in keys else NO_KEY_LABEL,
            prefix=keys[key_id].prefix if key_id in keys else "",
            requests=tally.requests,
            images=tally.images,
            throttled=tally.throttled,
            errors=tally.errors,
        )
        for key_id, tally in by_key.items()
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
    query = UsageQuery(api_key=api_key, since=since, until=until)
    counts = query.status_counts("api_key_id")
    tally = UsageTally.of(counts)
    return UsageDashboard(
        since=since,
        until=until,
        requests=tally.requests,
        throttled=tally.throttled,
        timeseries=usage_timeseries(since=since, until=until, bucket=bucket, api_key=api_key, counts=counts),
        status_mix=tally.by_status,
        latency_ms=query.latency_percentiles(total=tally.logged),
        top_keys=top_keys(since=since, until=until, counts=counts),
        anonymous=anonymous_usage(since=since, until=until) if api_key is None else None,
    )


def api_keys_for_filter():
    """Every key, active or not, by name: the choices of the dashboard's key filter."""
    return ApiKey.objects.order_by("name")
