"""The public pages: what this server is, and a page to classify images from the browser."""

from django.conf import settings
from django.urls import reverse
from django.views.generic import TemplateView

from ..runtime.registry import LOADED
from ..serving import process_runtime


class LandingView(TemplateView):
    """What this server is, its models and whether it is ready, links, and a curl example."""

    template_name = "index.html"

    def get_context_data(self, **kwargs):
        return {
            **super().get_context_data(**kwargs),
            "models": process_runtime().describe(),
            "ready": process_runtime().slot().status == LOADED,
        }


class TryView(TemplateView):
    """Classify images from the browser through the public API v2 (the page's script does the calling)."""

    template_name = "try.html"

    def get_context_data(self, **kwargs):
        return {
            **super().get_context_data(**kwargs),
            "models": process_runtime().describe(),
            "max_top_k": settings.CLASSIFIER_MAX_TOP_K,
            "default_top_k": settings.CLASSIFIER_TOP_K,
            # for the page's text and, as JSON, for its script
            "try_config": {
                "classify_url": reverse("v2-classify"),
                "max_batch_images": settings.CLASSIFIER_MAX_BATCH_IMAGES,
            },
        }
