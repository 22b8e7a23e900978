"""Writes for API keys and request logs."""
import datetime as dt

from django.core.exceptions import ValidationError
from django.core.validators import validate_ipv46_address
from django.db import connection
from django.utils import timezone

from . import crypto
from .models import ApiKey, RequestLog
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
) -> tuple[ApiKey, str]:
    """Create a key and return it with its plaintext, which is never available again.

    ``allowed_models``: the model names it may call (None or empty: every model). Raises ValidationError.
    """
    generated = crypto.generate_key()
    api_key = ApiKey(
        name=name, owner=owner, prefix=generated.prefix, hashed_key=generated.hashed_key, expires_at=expires_at,
        allowed_models=list(allowed_models or []),
    )
    if rate_limit is not None:
        api_key.rate_limit = rate_limit
    if rate_window_seconds is not None:
        api_key.rate_window_seconds = rate_window_seconds
    api_key.full_clean(exclude=["prefix", "hashed_key"])
    api_key.save()
    return api_key, generated.raw_key


def api_key_assign_secret(*, api_key: ApiKey) -> str:
    """Give an unsaved key (built by the admin form) a fresh secret, save it, return the plaintext."""
    generated = crypto.generate_key()
    api_key.prefix = generated.prefix
    api_key.hashed_key = generated.hashed_key
    api_key.save()
    return generated.raw_key


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


_LOG_FIELDS = [RequestLog._meta.get_field(name) for name in (
    "api_key", "endpoint", "method", "status_code", "response_time_ms", "created_at", "client_ip", "request_id", "images",
    "model_name", "model_version",
)]
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
        api_key_id, endpoint[:200], method[:10], status_code, round(response_time_ms, 3), timezone.now(),
        _ip_address_or_none(client_ip), request_id[:64], images, model_name[:64], model_version[:64],
    )
    params = [field.get_db_prep_save(value, connection) for field, value in zip(_LOG_FIELDS, values)]
    with connection.cursor() as cursor:
        cursor.execute(_LOG_INSERT_SQL, params)


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
