from django.urls import path

from . import views

staff_patterns = [
    path("usage/", views.usage_dashboard_view, name="staff-usage"),
]
