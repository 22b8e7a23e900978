from django.urls import path

from . import staff, views

page_patterns = [
    path("", views.LandingView.as_view(), name="landing"),
    path("try/", views.TryView.as_view(), name="try"),
    path("staff/usage/", staff.usage_dashboard_view, name="staff-usage"),
    path("staff/statements/", staff.statement_view, name="staff-statements"),
]
