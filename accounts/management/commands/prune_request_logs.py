import datetime as dt

from django.core.management.base import BaseCommand, CommandError
from django.utils import timezone

from accounts.services import request_log_prune


class Command(BaseCommand):
    help = "Delete request log rows older than DAYS days, keeping the log table bounded."

    def add_arguments(self, parser):
        parser.add_argument("--older-than", type=int, required=True, metavar="DAYS")

    def handle(self, *args, older_than, **options):
        if older_than < 0:
            raise CommandError("--older-than must be 0 or more days.")
        deleted = request_log_prune(before=timezone.now() - dt.timedelta(days=older_than))
        self.stdout.write(f"Deleted {deleted} request log row(s) older than {older_than} day(s).")
