from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError

from accounts.models import OverageMode, parse_model_names
from accounts.services import plan_create

from ._errors import validation_message


class Command(BaseCommand):
    help = "Create a plan: a monthly image allowance, a rate limit, the models it may use and its prices."

    def add_arguments(self, parser):
        parser.add_argument("name", help="unique name of the plan, e.g. free or pro")
        parser.add_argument("--monthly-images", type=int, help="images a key may use per month (default: unlimited)")
        parser.add_argument("--rate-limit", type=int, help="requests (v2: images) per window (default: settings)")
        parser.add_argument("--window", type=int, help="sliding window in seconds (default: settings)")
        parser.add_argument("--models", default="", help="comma-separated model names (default: all)")
        parser.add_argument(
            "--overage",
            default=OverageMode.BLOCK,
            help="past the allowance: block (429 quota_exceeded, the default) or allow (served, billed as overage)",
        )
        parser.add_argument("--price", default="0", help="price per 1,000 images within the allowance")
        parser.add_argument("--overage-price", default="0", help="price per 1,000 images past the allowance")

    def handle(self, *args, name, monthly_images, rate_limit, window, models, overage, price, overage_price, **options):
        try:
            plan = plan_create(
                name=name,
                monthly_images=monthly_images,
                rate_limit=rate_limit,
                rate_window_seconds=window,
                allowed_models=parse_model_names(models),
                overage=overage,
                price_per_1000_images=_price(price, "--price"),
                price_per_1000_overage_images=_price(overage_price, "--overage-price"),
            )
        except ValidationError as exc:
            raise CommandError(validation_message(exc)) from exc
        allowance = "unlimited" if plan.monthly_images is None else f"{plan.monthly_images} images"
        self.stdout.write(
            f"Created plan {plan.name!r}: {allowance} a month ({plan.overage} past it), "
            f"{plan.rate_limit} requests per {plan.rate_window_seconds}s, "
            f"models: {', '.join(plan.allowed_models) or 'all'}, "
            f"{plan.price_per_1000_images} per 1,000 images, {plan.price_per_1000_overage_images} per 1,000 overage."
        )


def _price(text: str, option: str):
    from decimal import Decimal, InvalidOperation

    try:
        value = Decimal(text)
    except InvalidOperation:
        raise CommandError(f"{option}: not a number: {text!r}") from None
    if not value.is_finite():
        raise CommandError(f"{option}: not a number: {text!r}")
    return value
