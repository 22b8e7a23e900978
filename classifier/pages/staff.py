"""The staff usage dashboard: every key's traffic (reads only, through accounts' selectors)."""

from django.contrib import admin
from django.contrib.admin.views.decorators import staff_member_required
from django.contrib.auth.decorators import permission_required
from django.shortcuts import render
from django.utils import timezone

from accounts.forms import UsageFilterForm
from accounts.selectors import UsageDashboard, usage_dashboard

# The dashboard shows every key's name, prefix and traffic: what the key and log admin pages show.
USAGE_DASHBOARD_PERMISSIONS = ("accounts.view_apikey", "accounts.view_requestlog")


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
        },
    )


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
