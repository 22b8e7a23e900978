import datetime as dt

from django.core.management.base import BaseCommand, CommandError
from django.utils import timezone

from accounts.services import (
    anonymous_request_count_prune,
    repeated_throttle_count_prune,
    request_log_analyze,
    request_log_prune,
)


class Command(BaseCommand):
    help = (
        "Delete request log rows, repeated-429 counts and anonymous request counts older than DAYS days, keeping the "
        "tables bounded, "
        "then refresh their planner statistics."
    )

    def add_arguments(self, parser):
        parser.add_argument("--older-than", type=int, required=True, metavar="DAYS")

    def handle(self, *args, older_than, **options):
        if older_than < 0:
            raise CommandError("--older-than must be 0 or more days.")
        before = timezone.now() - dt.timedelta(days=older_than)
        deleted = request_log_prune(before=before)
        repeats = repeated_throttle_count_prune(before=before)
        counts = anonymous_request_count_prune(before=before)
        request_log_analyze()
        self.stdout.write(
            f"Deleted {deleted} request log row(s), {repeats} repeated-429 count row(s) and {counts} anonymous count "
            f"row(s) older than {older_than} day(s)."
        )
