"""The validation gate's separate process: validate one model folder, write the JSON report to a file."""

import json
from pathlib import Path

from django.core.management.base import BaseCommand

from classifier.runtime.validation import validate_folder


class Command(BaseCommand):
    help = "Validate a model folder (loads, labels, forward pass, latency) and write the report as JSON."

    def add_arguments(self, parser):
        parser.add_argument("folder", type=Path)
        parser.add_argument("--output", type=Path, required=True, help="Where to write the JSON report.")
        parser.add_argument("--engine", default="")
        parser.add_argument("--precision", default="")

    def handle(self, *args, folder: Path, output: Path, engine: str, precision: str, **options):
        report = validate_folder(folder, engine=engine, precision=precision)
        output.write_text(json.dumps(report))
        self.stdout.write(report["summary"])
