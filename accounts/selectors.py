"""Reads: usage of API keys."""
import datetime as dt
from dataclasses import dataclass

from django.db.models import Avg, Count, Q

from .models import ApiKey, RequestLog


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
