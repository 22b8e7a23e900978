"""Reads: usage of API keys."""
import datetime as dt
import math
import time
from collections import Counter
from dataclasses import dataclass

from django.db.models import Avg, Count, Q, Sum
from django.db.models.functions import TruncDate

from .models import ApiKey, RequestLog
from .windows import DatabaseWindowStore, WindowState

THROTTLED_STATUS = 429


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
    statuses = Counter(dict(logs.values_list("status_code").annotate(n=Count("id")).order_by()))
    times = sorted(logs.values_list("response_time_ms", flat=True))
    return UsageReport(
        since=since,
        until=until,
        requests=sum(e.requests for e in by_endpoint),
        images=sum(e.images for e in by_endpoint),
        throttled=statuses.get(THROTTLED_STATUS, 0),
        by_endpoint=by_endpoint,
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
