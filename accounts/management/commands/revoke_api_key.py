from django.core.management.base import BaseCommand, CommandError

from accounts.models import ApiKey
from accounts.services import api_key_revoke


class Command(BaseCommand):
    help = (
        "Revoke an API key by --name or by --prefix. It stops working at once on every server. "
        "A bare NAME_OR_PREFIX is accepted only when it names exactly one key."
    )

    def add_arguments(self, parser):
        parser.add_argument("name_or_prefix", nargs="?", help="A key's name or prefix; refused if it matches two keys.")
        parser.add_argument("--name", help="The key's name.")
        parser.add_argument("--prefix", help="The key's prefix (the 8 hex characters after ais_).")

    def handle(self, *args, name_or_prefix, name, prefix, **options):
        api_key = self._find(name_or_prefix=name_or_prefix, name=name, prefix=prefix)
        api_key_revoke(api_key=api_key)
        self.stdout.write(f"Revoked API key {api_key.name!r} (prefix {api_key.prefix}).")

    @staticmethod
    def _find(*, name_or_prefix: str | None, name: str | None, prefix: str | None) -> ApiKey:
        """The one key asked for; CommandError (exit status 1) when none or more than one could be meant."""
        if sum(value is not None for value in (name_or_prefix, name, prefix)) != 1:
            raise CommandError("Give exactly one of --name NAME, --prefix PREFIX or NAME_OR_PREFIX.")
        if name is not None:
            found = list(ApiKey.objects.filter(name=name))
        elif prefix is not None:
            found = list(ApiKey.objects.filter(prefix=prefix))
        else:
            by_name = list(ApiKey.objects.filter(name=name_or_prefix))
            by_prefix = list(ApiKey.objects.filter(prefix=name_or_prefix))
            if by_name and by_prefix and by_name != by_prefix:
                raise CommandError(
                    f"{name_or_prefix!r} is the name of key {by_name[0].prefix} and the prefix of key "
                    f"{by_prefix[0].name!r}; say which with --name or --prefix. Nothing was revoked."
                )
            found = by_name or by_prefix
        if not found:
            raise CommandError(
                f"No API key with {'name' if name else 'prefix' if prefix else 'name or prefix'} "
                f"{name or prefix or name_or_prefix!r}."
            )
        return found[0]
