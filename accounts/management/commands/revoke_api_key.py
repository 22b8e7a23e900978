from django.core.management.base import BaseCommand, CommandError
from django.db.models import Q

from accounts.models import ApiKey
from accounts.services import api_key_revoke


class Command(BaseCommand):
    help = "Revoke an API key by its name or prefix. It stops working at once on every server."

    def add_arguments(self, parser):
        parser.add_argument("name_or_prefix")

    def handle(self, *args, name_or_prefix, **options):
        api_key = ApiKey.objects.filter(Q(name=name_or_prefix) | Q(prefix=name_or_prefix)).first()
        if api_key is None:
            raise CommandError(f"No API key with name or prefix {name_or_prefix!r}.")
        api_key_revoke(api_key=api_key)
        self.stdout.write(f"Revoked API key {api_key.name!r} (prefix {api_key.prefix}).")
