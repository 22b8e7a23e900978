from django.contrib import admin
from django.urls import include, path, re_path
from drf_spectacular.views import SpectacularAPIView, SpectacularRedocView, SpectacularSwaggerView

from accounts.urls import staff_patterns
from classifier import views
from classifier.urls import v1_patterns, v2_patterns

urlpatterns = [
    path("", views.LandingView.as_view(), name="landing"),
    path("try/", views.TryView.as_view(), name="try"),
    path("staff/", include(staff_patterns)),
    path("healthz", views.HealthView.as_view(), name="healthz"),
    path("readyz", views.ReadyView.as_view(), name="readyz"),
    path("metrics", views.MetricsView.as_view(), name="metrics"),
    path("api/v1/", include(v1_patterns)),
    path("api/v2/", include(v2_patterns)),
    path("api/schema/", SpectacularAPIView.as_view(), name="schema"),
    path("api/docs/", SpectacularSwaggerView.as_view(url_name="schema"), name="swagger-ui"),
    path("api/redoc/", SpectacularRedocView.as_view(url_name="schema", template_name="docs/redoc.html"), name="redoc"),
    re_path(r"^api/", views.ApiNotFoundView.as_view()),
    path("admin/", admin.site.urls),
]
