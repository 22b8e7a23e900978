"""Reads: usage of API keys."""
import datetime as dt
import math
import time
from collections import Counter
from dataclasses import dataclass

from django.db.models import Avg, Count, Q, Sum
from django.db.models.functions import TruncDate, TruncDay, TruncHour

from .models import ApiKey, RequestLog
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


def usage_summary(
    *, api_key: ApiKey, endpoints: list[str], since: dt.datetime | None = None
) -> UsageSummary:
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
    by_endpoint = [
        EndpointUsage(endpoint=row["endpoint"], requests=row["requests"], images=row["images"] or 0)
        for row in logs.values("endpoint").annotate(requests=Count("id"), images=Sum("images")).order_by("endpoint")
    ]
    by_model = [
        ModelUsage(name=row["model_name"], version=row["model_version"], requests=row["requests"], images=row["images"] or 0)
        for row in logs.exclude(model_name="")
        .values("model_name", "model_version")
        .annotate(requests=Count("id"), images=Sum("images"))
        .order_by("model_name", "model_version")
    ]
    statuses = Counter(dict(logs.values_list("status_code").annotate(n=Count("id")).order_by()))
    times = sorted(logs.values_list("response_time_ms", flat=True))
    return UsageReport(
        since=since,
        until=until,
        requests=sum(e.requests for e in by_endpoint),
        images=sum(e.images for e in by_endpoint),
        throttled=statuses.get(THROTTLED_STATUS, 0),
        by_endpoint=by_endpoint,
        by_model=by_model,
        by_status={str(code): count for code, count in sorted(statuses.items())},
        latency_ms={f"p{q}": percentile(times, q) for q in (50, 95, 99)},
        daily=_daily(logs, since=since, until=until),
    )


def percentile(sorted_values: list[float], q: float) -> float | None:
    """The nearest-rank ``q``-th percentile (0 < q <= 100) of ascending values, 2 places; None when empty."""
    if not sorted_values:
        return None
    rank = max(1, math.ceil(q / 100.0 * len(sorted_values)))
    return round(sorted_values[rank - 1], 2)


def _daily(logs, *, since: dt.datetime | None, until: dt.datetime) -> list[DayUsage]:
    rows = {
        row["day"]: row
        for row in logs.annotate(day=TruncDate("created_at", tzinfo=dt.timezone.utc))
        .values("day")
        .annotate(requests=Count("id"), images=Sum("images"))
        .order_by("day")
    }
    if not rows and since is None:
        return []
    first = since.astimezone(dt.timezone.utc).date() if since is not None else min(rows)
    last = (until - dt.timedelta(microseconds=1)).astimezone(dt.timezone.utc).date()
    days = []
    for offset in range((last - first).days + 1):
        day = first + dt.timedelta(days=offset)
        row = rows.get(day, {"requests": 0, "images": 0})
        days.append(DayUsage(date=day, requests=row["requests"], images=row["images"] or 0))
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


def request_logs_in_range(
    *, since: dt.datetime, until: dt.datetime, api_key: ApiKey | None = None
):
    """Logged API requests created in [since, until), of ``api_key`` alone when given."""
    logs = RequestLog.objects.filter(created_at__gte=since, created_at__lt=until)
    return logs.filter(api_key=api_key) if api_key is not None else logs


def bucket_start(moment: dt.datetime, bucket: str) -> dt.datetime:
    """The start (UTC) of the hour or day that holds ``moment``."""
    moment = moment.astimezone(dt.timezone.utc)
    start = moment.replace(minute=0, second=0, microsecond=0)
    return start.replace(hour=0) if bucket == "day" else start


def usage_timeseries(
    *, since: dt.datetime, until: dt.datetime, bucket: str, api_key: ApiKey | None = None, max_series: int = 8
) -> UsageTimeseries:
    """Requests per key per hour or day over [since, until), zeros included.

    The ``max_series`` busiest keys get a series each; the rest are summed into OTHER_KEYS_LABEL.
    """
    if bucket not in BUCKETS:
        raise ValueError(f"bucket must be one of {sorted(BUCKETS)}, not {bucket!r}")
    step = BUCKETS[bucket]
    starts = []
    moment = bucket_start(since, bucket)
    while moment < until:
        starts.append(moment)
        moment += step
    index = {start: i for i, start in enumerate(starts)}
    trunc = (TruncDay if bucket == "day" else TruncHour)("created_at", tzinfo=dt.timezone.utc)
    rows = (
        request_logs_in_range(since=since, until=until, api_key=api_key)
        .annotate(bucket=trunc)
        .values("api_key__name", "bucket")
        .annotate(n=Count("id"))
        .order_by()
    )
    counts: dict[str, list[int]] = {}
    for row in rows:
        label = row["api_key__name"] or NO_KEY_LABEL
        counts.setdefault(label, [0] * len(starts))[index[row["bucket"].astimezone(dt.timezone.utc)]] += row["n"]
    ranked = sorted(counts.items(), key=lambda item: (-sum(item[1]), item[0]))
    series = [KeySeries(label=label, counts=values) for label, values in ranked[:max_series]]
    if len(ranked) > max_series:
        rest = [sum(values) for values in zip(*(values for _, values in ranked[max_series:]))]
        series.append(KeySeries(label=OTHER_KEYS_LABEL, counts=rest))
    return UsageTimeseries(bucket=bucket, starts=starts, series=series)


def status_mix(*, since: dt.datetime, until: dt.datetime, api_key: ApiKey | None = None) -> dict[str, int]:
    """How many requests ended with each status code, by code ascending."""
    rows = (
        request_logs_in_range(since=since, until=until, api_key=api_key)
        .values_list("status_code")
        .annotate(n=Count("id"))
        .order_by("status_code")
    )
    return {str(code): n for code, n in rows}


def latency_percentiles(
    *, since: dt.datetime, until: dt.datetime, api_key: ApiKey | None = None
) -> dict[str, float | None]:
    """p50, p95 and p99 (nearest rank) of the response times in milliseconds; None when there were none."""
    times = sorted(
        request_logs_in_range(since=since, until=until, api_key=api_key).values_list("response_time_ms", flat=True)
    )
    return {f"p{q}": percentile(times, q) for q in (50, 95, 99)}


def top_keys(
    *, since: dt.datetime, until: dt.datetime, api_key: ApiKey | None = None, limit: int = 10
) -> list[KeyUsage]:
    """The keys with the most requests, busiest first (requests without a key count as one row)."""
    rows = (
        request_logs_in_range(since=since, until=until, api_key=api_key)
        .values("api_key_id", "api_key__name", "api_key__prefix")
        .annotate(
            requests=Count("id"),
            images=Sum("images"),
            throttled=Count("id", filter=Q(status_code=THROTTLED_STATUS)),
            errors=Count("id", filter=Q(status_code__gte=400) & ~Q(status_code=THROTTLED_STATUS)),
        )
        .order_by("-requests", "api_key__name")[:limit]
    )
    return [
        KeyUsage(
            key_id=row["api_key_id"],
            name=row["api_key__name"] or NO_KEY_LABEL,
            prefix=row["api_key__prefix"] or "",
            requests=row["requests"],
            images=row["images"] or 0,
            throttled=row["throttled"],
            errors=row["errors"],
        )
        for row in rows
    ]


def usage_dashboard(
    *, since: dt.datetime, until: dt.datetime, bucket: str, api_key: ApiKey | None = None
) -> UsageDashboard:
    """Everything the staff usage dashboard shows for [since, until), of one key or of all."""
    mix = status_mix(since=since, until=until, api_key=api_key)
    return UsageDashboard(
        since=since,
        until=until,
        requests=sum(mix.values()),
        throttled=mix.get(str(THROTTLED_STATUS), 0),
        timeseries=usage_timeseries(since=since, until=until, bucket=bucket, api_key=api_key),
        status_mix=mix,
        latency_ms=latency_percentiles(since=since, until=until, api_key=api_key),
        top_keys=top_keys(since=since, until=until, api_key=api_key),
    )


def api_keys_for_filter():
    """Every key, active or not, by name: the choices of the dashboard's key filter."""
    return ApiKey.objects.order_by("name")
