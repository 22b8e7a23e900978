from django.core.management.base import BaseCommand, CommandError

from accounts.models import ApiKey, Plan
from accounts.services import api_key_set_plan


class Command(BaseCommand):
    help = (
        "Move an API key to a plan at once (or off any plan with --none). What it used this month stays counted; "
        "the new allowance applies from its next request. The key takes the plan's rate limit and window unless "
        "--keep-own-limit."
    )

    def add_arguments(self, parser):
        parser.add_argument("prefix", help="the key's prefix, as the admin and the request log show it")
        parser.add_argument("plan", nargs="?", help="the plan's name")
        parser.add_argument("--none", action="store_true", help="take the key off its plan")
        parser.add_argument(
            "--keep-own-limit", action="store_true", help="keep the key's own rate limit and window over the plan's"
        )

    def handle(self, *args, prefix, plan, none, keep_own_limit, **options):
        if bool(plan) == none:
            raise CommandError("Name a plan, or give --none to take the key off its plan.")
        api_key = ApiKey.objects.filter(prefix=prefix).first()
        if api_key is None:
            raise CommandError(f"No API key with prefix {prefix!r}.")
        new_plan = None
        if plan:
            new_plan = Plan.objects.filter(name=plan).first()
            if new_plan is None:
                known = ", ".join(Plan.objects.values_list("name", flat=True)) or "none yet (see create_plan)"
                raise CommandError(f"No plan named {plan!r}; plans: {known}.")
        api_key_set_plan(api_key=api_key, plan=new_plan, keep_own_limit=keep_own_limit)
        self.stdout.write(
            f"API key {api_key.name!r} ({api_key.prefix}) is now on {plan!r}."
            if plan
            else f"API key {api_key.name!r} ({api_key.prefix}) is on no plan now."
        )
