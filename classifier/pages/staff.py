"""The staff usage dashboard and monthly statements: every key's traffic (reads only, through accounts' selectors)."""

import datetime as dt

from django.contrib import admin
from django.contrib.admin.views.decorators import staff_member_required
from django.contrib.auth.decorators import permission_required
from django.http import HttpResponse, JsonResponse
from django.shortcuts import render
from django.utils import timezone

from accounts.forms import UsageFilterForm
from accounts.models import month_start
from accounts.selectors import UsageDashboard, usage_dashboard
from accounts.statements import BadMonth, parse_month, plan_use, statement_csv, statement_dict, usage_statement

# The dashboard shows every key's name, prefix and traffic: what the key and log admin pages show.
USAGE_DASHBOARD_PERMISSIONS = ("accounts.view_apikey", "accounts.view_requestlog")
# A statement also shows the plans and their prices.
STATEMENT_PERMISSIONS = (*USAGE_DASHBOARD_PERMISSIONS, "accounts.view_plan")
STATEMENT_FORMATS = ("csv", "json")


@staff_member_required
@permission_required(USAGE_DASHBOARD_PERMISSIONS, raise_exception=True)
def usage_dashboard_view(request):
    """Requests over time per key, status mix, latency percentiles, top keys and throttling, filtered by GET."""
    form = UsageFilterForm(request.GET)
    selected = form.selection(now=timezone.now())
    dashboard = usage_dashboard(
        since=selected.since, until=selected.until, bucket=selected.bucket, api_key=selected.api_key
    )
    return render(
        request,
        "staff/usage.html",
        {
            **admin.site.each_context(request),
            "title": "API usage",
            "form": form,
            "dashboard": dashboard,
            "chart_data": chart_data(dashboard),
            "plan_use": plan_use(now=timezone.now()) if request.user.has_perm("accounts.view_plan") else None,
            "statement_months": _recent_months(timezone.now()),
        },
    )


def _recent_months(now: dt.datetime) -> list[str]:
    """This month and the last one, "YYYY-MM", for the statement links."""
    this = month_start(now)
    return [f"{this:%Y-%m}", f"{month_start(this - dt.timedelta(days=1)):%Y-%m}"]


@staff_member_required
@permission_required(STATEMENT_PERMISSIONS, raise_exception=True)
def statement_view(request):
    """The monthly statement as a download: ``?month=YYYY-MM`` (default: this month, UTC), ``&format=csv``
    (default) or ``json``. A bad month or format is 400 with the one error shape."""
    month_text = request.GET.get("month") or f"{timezone.now():%Y-%m}"
    answer = request.GET.get("format") or "csv"
    try:
        month = parse_month(month_text)
    except BadMonth as exc:
        return JsonResponse({"detail": str(exc), "code": "invalid_month"}, status=400)
    if answer not in STATEMENT_FORMATS:
        return JsonResponse(
            {"detail": f"format must be csv or json, not {answer[:20]!r}.", "code": "invalid_format"}, status=400
        )
    statement = usage_statement(month=month)
    filename = f"statement-{statement.month}.{answer}"
    if answer == "json":
        response: HttpResponse = JsonResponse(statement_dict(statement))
    else:
        response = HttpResponse(statement_csv(statement), content_type="text/csv; charset=utf-8")
    response["Content-Disposition"] = f'attachment; filename="{filename}"'
    return response


def chart_data(dashboard: UsageDashboard) -> dict:
    """The dashboard's charts as plain JSON for the page's script (rendered with json_script)."""
    series = dashboard.timeseries
    return {
        "bucket": series.bucket,
        "starts": [start.isoformat() for start in series.starts],
        "series": [{"label": s.label, "counts": s.counts} for s in series.series],
        "status_mix": dashboard.status_mix,
        "latency_ms": dashboard.latency_ms,
    }
