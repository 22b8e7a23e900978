"""For operators and their probes: liveness, readiness, Prometheus metrics, and JSON 404s for unknown API paths."""

from django.http import HttpResponse
from drf_spectacular.utils import extend_schema
from rest_framework.authentication import SessionAuthentication
from rest_framework.exceptions import NotFound
from rest_framework.response import Response
from rest_framework.views import APIView

from ... import metrics
from ...runtime import errors as runtime_errors
from ...selectors import database_problem
from ...serving import process_runtime
from ..exceptions import DatabaseUnavailable, ModelUnavailable, RateLimiterUnavailable
from ..permissions import CanReadMetrics
from ..throttling import SlidingWindowThrottle
from .base import Endpoint


class HealthView(APIView):
    @extend_schema(exclude=True)
    def get(self, request):
        return Response({"status": "alive"})


class ReadyView(APIView):
    """200 when the default model (or ?model=NAME), the database and the window store (Redis, when REDIS_URL is set)
    answer, else 503: a replica that cannot classify leaves the balancer's rotation. The default model's 503
    gives the public reason (as /api/v1/model/info does); ?model= says only ready or not ready, the same for a
    name that does not exist, so an anonymous caller learns neither which names exist nor why one failed."""

    @extend_schema(exclude=True)
    def get(self, request):
        name = request.query_params.get("model")
        try:
            process_runtime().get(name)
        except (runtime_errors.ModelNotFound, runtime_errors.ModelUnavailable):
            if name is None:
                raise  # 503 with the reason
            raise ModelUnavailable("Not ready.") from None
        problem = database_problem()
        if problem is not None:
            raise DatabaseUnavailable(f"The database is unavailable ({problem}).")
        problem = SlidingWindowThrottle.store.problem()
        if problem is not None:
            raise RateLimiterUnavailable(f"The rate limiter's store is unavailable ({problem}).")
        return Response({"status": "ready"})


class MetricsView(APIView):
    """Prometheus metrics for scrapers sending ``Authorization: Bearer <METRICS_TOKEN>`` and for staff sessions
    allowed to read the request logs (METRICS_PERMISSION); 404 for anyone else, so the page is not advertised."""

    authentication_classes = [SessionAuthentication]
    permission_classes = [CanReadMetrics]

    @extend_schema(exclude=True)
    def get(self, request):
        body, content_type = metrics.exposition()
        return HttpResponse(body, content_type=content_type)

    def permission_denied(self, request, message=None, code=None):
        raise NotFound()


class ApiNotFoundView(Endpoint):
    """Every unknown path under /api/ answers JSON 404, whatever the method."""

    def initial(self, request, *args, **kwargs):  # before the method check: unknown paths are 404
        raise NotFound(f"No API endpoint at {request.path}.")
