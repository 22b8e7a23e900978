import json

from django.core.management.base import BaseCommand, CommandError

from accounts.statements import BadMonth, parse_month, statement_csv, statement_dict, usage_statement


class Command(BaseCommand):
    help = "Print a month's usage statement (per key and per plan, at the plans' prices) as CSV or JSON."

    def add_arguments(self, parser):
        parser.add_argument("--month", required=True, help="the month, YYYY-MM (UTC), e.g. 2026-11")
        parser.add_argument("--format", choices=["csv", "json"], default="csv", help="csv (default) or json")

    def handle(self, *args, month, format, **options):
        try:
            start = parse_month(month)
        except BadMonth as exc:
            raise CommandError(str(exc)) from exc
        statement = usage_statement(month=start)
        if format == "json":
            self.stdout.write(json.dumps(statement_dict(statement), indent=2))
        else:
            self.stdout.write(statement_csv(statement), ending="")
