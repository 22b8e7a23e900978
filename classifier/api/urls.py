from django.urls import path

from .views import api_v1, api_v2, ops

v1_patterns = [
    path("classify", api_v1.ClassifyView.as_view(), name="v1-classify"),
    path("usage", api_v1.UsageView.as_view(), name="v1-usage"),
    path("model/info", api_v1.ModelInfoView.as_view(), name="v1-model-info"),
]

v2_patterns = [
    path("classify", api_v2.ClassifyBatchView.as_view(), name="v2-classify"),
    path("models", api_v2.ModelsView.as_view(), name="v2-models"),
    path("usage", api_v2.UsageReportView.as_view(), name="v2-usage"),
]

ops_patterns = [
    path("healthz", ops.HealthView.as_view(), name="healthz"),
    path("readyz", ops.ReadyView.as_view(), name="readyz"),
    path("metrics", ops.MetricsView.as_view(), name="metrics"),
]
