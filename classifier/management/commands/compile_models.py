"""Compile every model this deployment serves, ahead of the servers: the CLASSIFIER_MODELS models and the
active registered versions. Serving workers then only load artifacts (no torch in them)."""

from django.core.management.base import BaseCommand, CommandError

from classifier import selectors, versions
from classifier.runtime.errors import ArtifactError
from classifier.runtime.registry import compiled_artifact, configured_sources, plan_for
from classifier.runtime.sources import ModelSource
from classifier.runtime_settings import runtime_config


class Command(BaseCommand):
    help = (
        "Compile the configured models and the active versions into the artifact store (CLASSIFIER_ENGINE_CACHE_DIR)."
    )

    def handle(self, *args, **options):
        config = runtime_config()
        sources = configured_sources(config)
        for model_version in selectors.active_versions():
            folder = versions.model_version_local_folder(model_version=model_version)
            sources.append(
                ModelSource(
                    name=model_version.name,
                    architecture=None,
                    folder=folder,
                    version=model_version.version,
                    engine=model_version.engine,
                    precision=model_version.precision,
                )
            )
        failed = []
        for source in sources:
            label = f"{source.name}@{source.version or 'settings'}"
            try:
                plan = plan_for(source, config)
                if not plan.compiled:
                    self.stdout.write(f"{label}: served by eager {plan.engine} {plan.precision}; nothing to compile")
                    continue
                compiled = compiled_artifact(source, plan, config)
            except ArtifactError as exc:
                failed.append(label)
                self.stderr.write(f"{label}: {exc}")
                continue
            agreement = compiled.manifest.get("report", {}).get("agreement", {}).get("max_difference")
            self.stdout.write(
                f"{label}: {compiled.provenance} ({compiled.manifest['engine']} {compiled.manifest['precision']}, "
                f"key {compiled.key}, largest difference from eager torch {agreement})"
            )
        if failed:
            raise CommandError(f"could not compile {', '.join(failed)}")
