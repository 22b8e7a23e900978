"""Activate NAME@V: every server switches to it; activating an earlier version is the roll-back."""

from django.core.management.base import BaseCommand, CommandError

from classifier import versions


class Command(BaseCommand):
    help = "Activate NAME@VERSION (a validated version); an earlier version rolls back to it."

    def add_arguments(self, parser):
        parser.add_argument("model", help="NAME@VERSION")

    def handle(self, *args, model: str, **options):
        name, at, version = model.partition("@")
        if not (name and at and version):
            raise CommandError("Give the model as NAME@VERSION, e.g. flowers@2.")
        try:
            activated = versions.model_version_activate(name=name, version=version)
        except versions.ModelVersionError as exc:
            raise CommandError(str(exc)) from None
        self.stdout.write(self.style.SUCCESS(f"{activated} is active; every server switches to it within seconds."))
