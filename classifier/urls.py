from django.urls import path

from . import views, views_v2

v1_patterns = [
    path("classify", views.ClassifyView.as_view(), name="v1-classify"),
    path("usage", views.UsageView.as_view(), name="v1-usage"),
    path("model/info", views.ModelInfoView.as_view(), name="v1-model-info"),
]

v2_patterns = [
    path("classify", views_v2.ClassifyBatchView.as_view(), name="v2-classify"),
    path("models", views_v2.ModelsView.as_view(), name="v2-models"),
    path("usage", views_v2.UsageReportView.as_view(), name="v2-usage"),
]
