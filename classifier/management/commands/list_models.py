"""List the registered model versions and, read-only, the models configured in settings."""

from django.core.management.base import BaseCommand

from classifier.runtime.registry import configured_sources
from classifier.runtime_settings import runtime_config
from classifier.selectors import model_versions_list


class Command(BaseCommand):
    help = "List the models from settings and every registered version with its status and validation."

    def handle(self, *args, **options):
        for source in configured_sources(runtime_config()):
            self.stdout.write(f"{source.name}@settings\tsettings\t{source.described}\t(CLASSIFIER_MODELS, read-only)")
        for model_version in model_versions_list():
            validated = "validated" if model_version.passed else "NOT VALIDATED"
            self.stdout.write(
                f"{model_version}\t{model_version.status}\t{validated}\t{model_version.sha256[:12]}\t"
                f"{model_version.report.get('summary', '')[:100]}"
            )
