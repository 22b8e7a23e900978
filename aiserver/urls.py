from django.contrib import admin
from django.urls import include, path, re_path
from drf_spectacular.views import SpectacularAPIView, SpectacularRedocView, SpectacularSwaggerSplitView

from accounts.urls import staff_patterns
from aiserver.csp import with_policy
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
    # The split view serves its start-up script from ?script, so the page runs no inline script (see CSP).
    path("api/docs/", SpectacularSwaggerSplitView.as_view(url_name="schema", template_name="docs/swagger_ui.html"),
         name="swagger-ui"),
    path("api/redoc/", with_policy(SpectacularRedocView.as_view(url_name="schema", template_name="docs/redoc.html"),
                                   setting="CONTENT_SECURITY_POLICY_REDOC"), name="redoc"),
    re_path(r"^api/", views.ApiNotFoundView.as_view()),
    path("admin/", admin.site.urls),
]
