import datetime as dt

from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError
from django.utils import timezone

from accounts.models import parse_model_names
from accounts.services import api_key_create


class Command(BaseCommand):
    help = "Issue an API key. The key is printed once, alone on the last line, and never stored in clear."

    def add_arguments(self, parser):
        parser.add_argument("--name", required=True, help="unique name of the key (who it is for)")
        parser.add_argument("--rate-limit", type=int, help="requests per window (default: settings)")
        parser.add_argument("--window", type=int, help="sliding window in seconds (default: settings)")
        parser.add_argument("--expires-days", type=int, help="days until the key expires (default: never)")
        parser.add_argument(
            "--models",
            default="",
            help="comma-separated model names the key may use, e.g. flowers,resnet18 (default: all)",
        )

    def handle(self, *args, name, rate_limit, window, expires_days, models, **options):
        expires_at = timezone.now() + dt.timedelta(days=expires_days) if expires_days else None
        try:
            api_key, raw_key = api_key_create(
                name=name,
                rate_limit=rate_limit,
                rate_window_seconds=window,
                expires_at=expires_at,
                allowed_models=parse_model_names(models),
            )
        except ValidationError as exc:
            raise CommandError("; ".join(f"{k}: {' '.join(v)}" for k, v in exc.message_dict.items())) from exc
        self.stdout.write(
            f"Created API key {api_key.name!r} (prefix {api_key.prefix}, "
            f"{api_key.rate_limit} requests per {api_key.rate_window_seconds}s, "
            f"models: {', '.join(api_key.allowed_models) or 'all'}). Store it now; it is not shown again:"
        )
        self.stdout.write(raw_key)
