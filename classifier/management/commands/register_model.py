"""Register a model version from a model folder or a .zip/.tar.gz of one, validated before it is stored."""

from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from classifier import versions
from classifier.models import ModelVersion


class Command(BaseCommand):
    help = "Register NAME's version V from PATH (a model folder, .zip or .tar.gz); --activate to serve it."

    def create_parser(self, prog_name, subcommand, **kwargs):
        """``--version`` is the model's version here, in place of Django's "print Django's version"."""
        return super().create_parser(prog_name, subcommand, conflict_handler="resolve", **kwargs)

    def add_arguments(self, parser):
        parser.add_argument("name")
        parser.add_argument("path", type=Path)
        parser.add_argument("--version", required=True, dest="model_version", help="The version's name, e.g. 2.")
        parser.add_argument("--activate", action="store_true", help="Activate it once it passes validation.")
        parser.add_argument("--engine", default="", choices=[value for value, _ in ModelVersion.ENGINE_CHOICES])
        parser.add_argument("--precision", default="", choices=[value for value, _ in ModelVersion.PRECISION_CHOICES])
        parser.add_argument("--notes", default="")

    def handle(
        self,
        *args,
        name: str,
        path: Path,
        model_version: str,
        activate: bool,
        engine: str,
        precision: str,
        notes: str,
        **options,
    ):
        try:
            registered = versions.model_version_register(
                name=name, version=model_version, path=path, engine=engine, precision=precision, notes=notes
            )
        except versions.ModelVersionError as exc:
            raise CommandError(str(exc)) from None
        self.stdout.write(f"{registered}: {registered.report.get('summary', '')}")
        if not registered.passed:
            raise CommandError(
                f"{registered} is registered (staged) but did not pass validation; it cannot be activated."
            )
        if activate:
            versions.model_version_activate(name=name, version=model_version)
            self.stdout.write(
                self.style.SUCCESS(f"{registered} is active; every server switches to it within seconds.")
            )
