"""Writes for API keys, request logs and the counts of requests without a key."""

import datetime as dt
import ipaddress
import re
import threading
from decimal import Decimal

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.validators import validate_ipv46_address
from django.db import IntegrityError, connection, transaction
from django.utils import timezone

from . import crypto
from .models import (
    AnonymousRequestCount,
    ApiKey,
    OverageMode,
    Plan,
    RepeatedThrottleCount,
    RequestLog,
    default_rate_limit,
    default_rate_window,
)
from .selectors import api_key_by_prefix

LAST_USED_RESOLUTION = dt.timedelta(seconds=60)  # last_used_at is refreshed at most this often


def api_key_create(
    *,
    name: str,
    owner=None,
    rate_limit: int | None = None,
    rate_window_seconds: int | None = None,
    expires_at: dt.datetime | None = None,
    allowed_models: list[str] | None = None,
    plan: Plan | None = None,
) -> tuple[ApiKey, str]:
    """Create a key and return it with its plaintext, which is never available again.

    ``allowed_models``: the model names it may call (None or empty: every model, or its plan's). With a
    ``plan``, a rate limit or window left None is the plan's; without one, the default. Raises ValidationError.
    """
    api_key = ApiKey(
        name=name, owner=owner, expires_at=expires_at, allowed_models=list(allowed_models or []), plan=plan
    )
    if rate_limit is not None or plan is not None:
        api_key.rate_limit = rate_limit
    if rate_window_seconds is not None or plan is not None:
        api_key.rate_window_seconds = rate_window_seconds
    api_key.full_clean(exclude=["prefix", "hashed_key"])
    return api_key, api_key_assign_secret(api_key=api_key)


class KeyGenerationFailed(Exception):
    """Every generated key's prefix was taken (crypto.KEY_GENERATION_ATTEMPTS times): the random source is broken."""


def api_key_assign_secret(*, api_key: ApiKey) -> str:
    """Give an unsaved key a fresh secret, save it and return the plaintext.

    A generated prefix that another key already has is replaced by a fresh key, up to
    crypto.KEY_GENERATION_ATTEMPTS times (then KeyGenerationFailed). Any other IntegrityError
    (a taken name) is raised as it is.
    """
    for _ in range(crypto.KEY_GENERATION_ATTEMPTS):
        generated = crypto.generate_key()
        api_key.prefix, api_key.hashed_key = generated.prefix, generated.hashed_key
        try:
            with transaction.atomic():
                api_key.save()
        except IntegrityError:
            if not ApiKey.objects.filter(prefix=generated.prefix).exists():
                raise
            continue
        return generated.raw_key
    raise KeyGenerationFailed(f"{crypto.KEY_GENERATION_ATTEMPTS} generated key prefixes were all taken.")


def api_key_set_plan(*, api_key: ApiKey, plan: Plan | None, keep_own_limit: bool = False) -> ApiKey:
    """Move ``api_key`` to ``plan`` (None: no plan) at once. What the key used this month stays counted; the
    new plan's allowance applies from its next request. Onto a plan, the key takes the plan's rate limit and
    window (its own are cleared) unless ``keep_own_limit``; off a plan, a key without its own gets the defaults."""
    fields = {"plan": plan}
    if plan is not None and not keep_own_limit:
        fields.update(rate_limit=None, rate_window_seconds=None)
    elif plan is None:
        fields["rate_limit"] = default_rate_limit() if api_key.rate_limit is None else api_key.rate_limit
        fields["rate_window_seconds"] = (
            default_rate_window() if api_key.rate_window_seconds is None else api_key.rate_window_seconds
        )
    ApiKey.objects.filter(pk=api_key.pk).update(**fields)
    for name, value in fields.items():
        setattr(api_key, name, value)
    return api_key


def plan_create(
    *,
    name: str,
    monthly_images: int | None,
    rate_limit: int | None = None,
    rate_window_seconds: int | None = None,
    allowed_models: list[str] | None = None,
    overage: str = OverageMode.BLOCK,
    price_per_1000_images: Decimal | int | str = 0,
    price_per_1000_overage_images: Decimal | int | str = 0,
) -> Plan:
    """Create and return a plan (``monthly_images`` None: unlimited; a rate limit or window left None: the
    defaults). Raises ValidationError for a taken name or a bad value (a negative allowance, an unknown
    overage mode, a bad model name)."""
    plan = Plan(
        name=name,
        monthly_images=monthly_images,
        allowed_models=list(allowed_models or []),
        overage=overage,
        price_per_1000_images=Decimal(str(price_per_1000_images)),
        price_per_1000_overage_images=Decimal(str(price_per_1000_overage_images)),
    )
    if rate_limit is not None:
        plan.rate_limit = rate_limit
    if rate_window_seconds is not None:
        plan.rate_window_seconds = rate_window_seconds
    plan.full_clean()
    plan.save()
    return plan


def api_key_revoke(*, api_key: ApiKey) -> ApiKey:
    """Revoke ``api_key`` for good; revoking twice keeps the first time."""
    if api_key.revoked_at is None:
        api_key.revoked_at = timezone.now()
        ApiKey.objects.filter(pk=api_key.pk, revoked_at__isnull=True).update(revoked_at=api_key.revoked_at)
    return api_key


def api_key_authenticate(*, raw_key: str) -> ApiKey | None:
    """Return the active key matching ``raw_key`` (constant-time check), or None."""
    prefix = crypto.parse_prefix(raw_key)
    api_key = api_key_by_prefix(prefix=prefix) if prefix else None
    if not crypto.verify_key(raw_key, api_key.hashed_key if api_key else None):
        return None
    now = timezone.now()
    if not api_key.is_active(now):
        return None
    if api_key.last_used_at is None or now - api_key.last_used_at >= LAST_USED_RESOLUTION:
        ApiKey.objects.filter(pk=api_key.pk).update(last_used_at=now)
        api_key.last_used_at = now
    return api_key


_LOG_FIELDS = [
    RequestLog._meta.get_field(name)
    for name in (
        "api_key",
        "endpoint",
        "method",
        "status_code",
        "response_time_ms",
        "created_at",
        "client_ip",
        "request_id",
        "images",
        "model_name",
        "model_version",
    )
]
# One plain INSERT: the ORM's create() (instance, signals, compiling) costs several times the statement's own
# CPU, and every API request writes a row. Values still go through each field's get_db_prep_save.
_LOG_INSERT_SQL = (
    f"INSERT INTO {RequestLog._meta.db_table} ({', '.join(field.column for field in _LOG_FIELDS)}) "
    f"VALUES ({', '.join(['%s'] * len(_LOG_FIELDS))})"
)


def request_log_create(
    *,
    api_key_id: int | None,
    endpoint: str,
    method: str,
    status_code: int,
    response_time_ms: float,
    client_ip: str | None,
    request_id: str = "",
    images: int = 0,
    model_name: str = "",
    model_version: str = "",
) -> None:
    """Write one request's log row (autocommit: it stands even if the request failed).

    ``model_name`` and ``model_version``: the model that answered a classification; blank otherwise.
    """
    values = (
        api_key_id,
        printable(endpoint)[:200],
        printable(method)[:10],
        status_code,
        round(response_time_ms, 3),
        timezone.now(),
        _ip_address_or_none(client_ip),
        printable(request_id)[:64],
        images,
        printable(model_name)[:64],
        printable(model_version)[:64],
    )
    params = [field.get_db_prep_save(value, connection) for field, value in zip(_LOG_FIELDS, values)]
    with connection.cursor() as cursor:
        cursor.execute(_LOG_INSERT_SQL, params)


_REPEATED = RepeatedThrottleCount._meta.db_table
# One upsert per 429: the minute's first creates the (key, minute, route) row at 0 repeats and returns 0; each
# later one raises it by 1 and returns the new count (SQLite 3.35+ and PostgreSQL read RETURNING). Exact across
# processes: the database, not a process, decides which 429 was the first.
_REPEATED_UPSERT_SQL = (
    f"INSERT INTO {_REPEATED} (api_key_id, minute, endpoint, repeats) VALUES (%s, %s, %s, 0) "
    f"ON CONFLICT (api_key_id, minute, endpoint) DO UPDATE SET repeats = {_REPEATED}.repeats + 1 RETURNING repeats"
)


def repeated_throttle_count(*, api_key_id: int, endpoint: str, now: dt.datetime | None = None) -> bool:
    """Count one 429 of ``api_key_id`` on ``endpoint``. True when it is the first of its key, route and minute
    (the caller logs it as a RequestLog row), False when it was counted as a repeat (no row)."""
    minute = (now or timezone.now()).replace(second=0, microsecond=0)
    minute_value = RepeatedThrottleCount._meta.get_field("minute").get_db_prep_save(minute, connection)
    with connection.cursor() as cursor:
        cursor.execute(_REPEATED_UPSERT_SQL, [api_key_id, minute_value, printable(endpoint)[:200]])
        (repeats,) = cursor.fetchone()
    return repeats == 0


def repeated_throttle_count_prune(*, before: dt.datetime) -> int:
    """Delete the repeated-429 counts of minutes before ``before``; return how many rows."""
    return RepeatedThrottleCount.objects.filter(minute__lt=before).delete()[0]


_CONTROL_CHARACTERS = re.compile(r"[\x00-\x1f\x7f-\x9f]")


def printable(text: str) -> str:
    """``text`` without control characters (NUL, newlines, escapes): PostgreSQL refuses NUL in text columns,
    and a stored newline or escape would forge lines in anything that prints the value."""
    return _CONTROL_CHARACTERS.sub("", text)


_ANONYMOUS = AnonymousRequestCount._meta.db_table
# One upsert per request: the (minute, client, route, status) row is created at 1 or its count raised by 1
# (SQLite 3.24+ and PostgreSQL both read ON CONFLICT ... DO UPDATE).
_ANONYMOUS_UPSERT_SQL = (
    f"INSERT INTO {_ANONYMOUS} (minute, client, route, status_code, count) VALUES (%s, %s, %s, %s, 1) "
    f"ON CONFLICT (minute, client, route, status_code) DO UPDATE SET count = {_ANONYMOUS}.count + 1"
)
_ANONYMOUS_CLIENTS_SQL = f"SELECT COUNT(DISTINCT client) FROM {_ANONYMOUS} WHERE minute = %s AND client <> %s"


def anonymous_request_count_increment(
    *, route: str, status_code: int, client_ip: str | None, now: dt.datetime | None = None
) -> None:
    """Count one request that carried no valid key: +1 on its minute's (client, route, status) row.

    The client is grouped (client_group) and, past ACCOUNTS_ANONYMOUS_CLIENTS_PER_MINUTE distinct
    clients in the minute, counted as OVERFLOW_CLIENT, so a flood from many addresses adds a bounded
    number of rows a minute.
    """
    minute = (now or timezone.now()).replace(second=0, microsecond=0)
    client = anonymous_clients.admit(client_group(client_ip), minute=minute)
    minute_value = AnonymousRequestCount._meta.get_field("minute").get_db_prep_save(minute, connection)
    with connection.cursor() as cursor:
        cursor.execute(_ANONYMOUS_UPSERT_SQL, [minute_value, client, printable(route)[:200], status_code])


def client_group(client_ip: str | None) -> str:
    """What a client is counted as: its IPv4 address, its IPv6 network (ACCOUNTS_ANONYMOUS_IPV6_PREFIX_BITS
    leading bits, e.g. "2001:db8:1:2::/64"), or UNKNOWN_CLIENT when it is no address."""
    try:
        address = ipaddress.ip_address(client_ip or "")
    except ValueError:
        return AnonymousRequestCount.UNKNOWN_CLIENT
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            return str(address.ipv4_mapped)
        bits = settings.ACCOUNTS_ANONYMOUS_IPV6_PREFIX_BITS
        return str(ipaddress.IPv6Network(f"{address}/{bits}", strict=False))
    return str(address)


class AnonymousClients:
    """Which clients have their own counts in the current minute, within ACCOUNTS_ANONYMOUS_CLIENTS_PER_MINUTE.

    Every process remembers the clients it admitted this minute (at most the cap) and asks the database
    how many distinct clients the minute holds only when a new one comes; once the minute is full it
    asks no more. Processes admitting at the same moment can overshoot the cap by one client each.
    """

    def __init__(self):
        self._lock = threading.Lock()
        self._minute: dt.datetime | None = None
        self._admitted: set[str] = set()
        self._full = False

    def admit(self, client: str, *, minute: dt.datetime) -> str:
        """``client`` when it has (or may have) its own count this minute, else OVERFLOW_CLIENT."""
        cap = settings.ACCOUNTS_ANONYMOUS_CLIENTS_PER_MINUTE
        with self._lock:
            if minute != self._minute:
                self._minute, self._admitted, self._full = minute, set(), False
            if client in self._admitted:
                return client
            if not self._full and len(self._admitted) < cap:
                self._full = self._clients_in(minute) >= cap
            if self._full or len(self._admitted) >= cap:
                return AnonymousRequestCount.OVERFLOW_CLIENT
            self._admitted.add(client)
            return client

    @staticmethod
    def _clients_in(minute: dt.datetime) -> int:
        value = AnonymousRequestCount._meta.get_field("minute").get_db_prep_save(minute, connection)
        with connection.cursor() as cursor:
            cursor.execute(_ANONYMOUS_CLIENTS_SQL, [value, AnonymousRequestCount.OVERFLOW_CLIENT])
            return cursor.fetchone()[0]


anonymous_clients = AnonymousClients()  # one per process


def _ip_address_or_none(value: str | None) -> str | None:
    """``value`` when it is an IPv4 or IPv6 address, else None.

    The address is the ASGI server's ``client``, which need not be one: uvicorn trusting every proxy
    (``--forwarded-allow-ips='*'``) passes on whatever a caller put first in X-Forwarded-For, and test
    clients say "testclient". PostgreSQL's inet column refuses such a value (the request would fail
    and leave no log row); SQLite would store it as it is.
    """
    if not value:
        return None
    try:
        validate_ipv46_address(value)
    except ValidationError:
        return None
    return value


def request_log_prune(*, before: dt.datetime, batch_size: int = 10_000) -> int:
    """Delete log rows created before ``before`` in batches (short locks); return how many."""
    deleted = 0
    while True:
        ids = list(RequestLog.objects.filter(created_at__lt=before).values_list("id", flat=True)[:batch_size])
        if not ids:
            return deleted
        deleted += RequestLog.objects.filter(id__in=ids).delete()[0]


def anonymous_request_count_prune(*, before: dt.datetime) -> int:
    """Delete the anonymous counts of minutes before ``before``; return how many rows."""
    return AnonymousRequestCount.objects.filter(minute__lt=before).delete()[0]


def request_log_analyze() -> None:
    """Refresh the planner's statistics of the log tables (SQLite reads the dashboard's per-key counts by
    skipping through an index only once ANALYZE has measured it)."""
    with connection.cursor() as cursor:
        for table in (RequestLog._meta.db_table, AnonymousRequestCount._meta.db_table):
            cursor.execute(f"ANALYZE {table}")
