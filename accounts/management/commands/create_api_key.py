import datetime as dt

from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError
from django.utils import timezone

from accounts.models import Plan, parse_model_names
from accounts.services import api_key_create

from ._errors import validation_message


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
            help="comma-separated model names the key may use, e.g. flowers,resnet18 (default: all, or the plan's)",
        )
        parser.add_argument("--plan", help="the plan the key is on (its limit and models unless given here)")

    def handle(self, *args, name, rate_limit, window, expires_days, models, plan=None, **options):
        on_plan = None
        if plan:
            on_plan = Plan.objects.filter(name=plan).first()
            if on_plan is None:
                known = ", ".join(Plan.objects.values_list("name", flat=True)) or "none yet (see create_plan)"
                raise CommandError(f"No plan named {plan!r}; plans: {known}.")
        expires_at = timezone.now() + dt.timedelta(days=expires_days) if expires_days else None
        try:
            api_key, raw_key = api_key_create(
                name=name,
                rate_limit=rate_limit,
                rate_window_seconds=window,
                expires_at=expires_at,
                allowed_models=parse_model_names(models),
                plan=on_plan,
            )
        except ValidationError as exc:
            raise CommandError(validation_message(exc)) from exc
        on = f"plan {on_plan.name!r}, " if on_plan else ""
        self.stdout.write(
            f"Created API key {api_key.name!r} (prefix {api_key.prefix}, {on}"
            f"{api_key.effective_rate_limit} requests per {api_key.effective_rate_window_seconds}s, "
            f"models: {', '.join(api_key.effective_allowed_models) or 'all'}). Store it now; it is not shown again:"
        )
        self.stdout.write(raw_key)
