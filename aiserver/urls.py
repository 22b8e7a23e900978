from django.contrib import admin
from django.urls import include, path, re_path
from drf_spectacular.views import SpectacularAPIView, SpectacularRedocView, SpectacularSwaggerSplitView

from aiserver.csp import with_policy
from classifier.api.urls import ops_patterns, v1_patterns, v2_patterns
from classifier.api.views.ops import ApiNotFoundView
from classifier.pages.urls import page_patterns

urlpatterns = [
    path("", include(page_patterns)),
    path("", include(ops_patterns)),
    path("api/v1/", include(v1_patterns)),
    path("api/v2/", include(v2_patterns)),
    path("api/schema/", SpectacularAPIView.as_view(), name="schema"),
    # The split view serves its start-up script from ?script, so the page runs no inline script (see CSP).
    path(
        "api/docs/",
        SpectacularSwaggerSplitView.as_view(url_name="schema", template_name="docs/swagger_ui.html"),
        name="swagger-ui",
    ),
    path(
        "api/redoc/",
        with_policy(
            SpectacularRedocView.as_view(url_name="schema", template_name="docs/redoc.html"),
            setting="CONTENT_SECURITY_POLICY_REDOC",
        ),
        name="redoc",
    ),
    re_path(r"^api/", ApiNotFoundView.as_view()),
    path("admin/", admin.site.urls),
]
