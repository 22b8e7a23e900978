from django.urls import path

from . import views

v1_patterns = [
    path("classify", views.ClassifyView.as_view(), name="v1-classify"),
    path("usage", views.UsageView.as_view(), name="v1-usage"),
    path("model/info", views.ModelInfoView.as_view(), name="v1-model-info"),
]
