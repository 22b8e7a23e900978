"""Who may call the API (ApiKey) on what terms (Plan), what they used (RequestLog, RepeatedThrottleCount,
RateLimitEvent, UsageRateLimitEvent, MonthlyUsage) and who called without a key (AnonymousRequestCount)."""

import datetime as dt
import re
from decimal import Decimal

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.validators import MinValueValidator, RegexValidator
from django.db import models
from django.db.models import Q
from django.utils import timezone


def _default_rate_limit() -> int:
    return settings.ACCOUNTS_DEFAULT_RATE_LIMIT


def _default_rate_window() -> int:
    return settings.ACCOUNTS_DEFAULT_RATE_WINDOW_SECONDS


default_rate_limit, default_rate_window = _default_rate_limit, _default_rate_window  # public names (forms)


# A model's name as a key's allowed_models holds it: what CLASSIFIER_MODELS names (torchvision names, a
# folder's name), without the "@version" a v2 request may add (access is judged by the name alone).
MODEL_NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")


def parse_model_names(text: str) -> list[str]:
    """The names in a comma-separated list ("flowers, resnet18"), in order, blanks and repeats dropped."""
    names = [name.strip() for name in (text or "").split(",")]
    return list(dict.fromkeys(name for name in names if name))


def validate_model_names(value) -> None:
    """``value`` is a list of distinct model names (MODEL_NAME_PATTERN); raises ValidationError."""
    if not isinstance(value, list) or not all(isinstance(name, str) for name in value):
        raise ValidationError("A list of model names is expected.", code="invalid_model_names")
    bad = [name for name in value if not MODEL_NAME_PATTERN.match(name)]
    if bad:
        raise ValidationError(
            "Not a model name: %(names)s (letters, digits, '_', '.', '-', up to 64, no '@version').",
            code="invalid_model_name",
            params={"names": ", ".join(repr(name) for name in bad)},
        )
    if len(set(value)) != len(value):
        raise ValidationError("A model is named twice.", code="duplicate_model_name")


class OverageMode(models.TextChoices):
    """What a plan does past its monthly allowance."""

    BLOCK = "block", "block (429 quota_exceeded)"
    ALLOW = "allow", "allow (served, counted as overage)"


_PRICE = {"max_digits": 12, "decimal_places": 4, "default": Decimal(0), "validators": [MinValueValidator(Decimal(0))]}


class Plan(models.Model):
    """What a key may do: its rate limit and window, its monthly allowance of images, its models, what happens
    past the allowance, and the prices its statement shows (no payment is processed). A key's own rate limit,
    window and models, where set, override its plan's."""

    name = models.CharField(max_length=50, unique=True, validators=[RegexValidator(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")])
    rate_limit = models.PositiveIntegerField(
        default=_default_rate_limit, help_text="Requests (v2: images) admitted per window."
    )
    rate_window_seconds = models.PositiveIntegerField(
        default=_default_rate_window, help_text="Length of the sliding window in seconds."
    )
    monthly_images = models.PositiveIntegerField(
        null=True,
        blank=True,
        help_text="Images (v1: one a request) each key may use per calendar month (UTC). Empty: unlimited.",
    )
    allowed_models = models.JSONField(
        default=list,
        blank=True,
        validators=[validate_model_names],
        help_text="The models its keys may call, by name. Empty: every model.",
    )
    overage = models.CharField(
        max_length=5,
        choices=OverageMode.choices,
        default=OverageMode.BLOCK,
        help_text="Past the monthly allowance: refuse (429 quota_exceeded) or serve and count as overage.",
    )
    price_per_1000_images = models.DecimalField(**_PRICE, help_text="Price of 1,000 images within the allowance.")
    price_per_1000_overage_images = models.DecimalField(**_PRICE, help_text="Price of 1,000 images past it.")
    created_at = models.DateTimeField(default=timezone.now, editable=False)

    class Meta:
        ordering = ["name"]
        constraints = [
            models.CheckConstraint(condition=Q(rate_limit__gte=1), name="plan_rate_limit_positive"),
            models.CheckConstraint(condition=Q(rate_window_seconds__gte=1), name="plan_rate_window_positive"),
        ]

    def __str__(self) -> str:
        return self.name

    @property
    def blocks_overage(self) -> bool:
        return self.overage == OverageMode.BLOCK


class ApiKey(models.Model):
    name = models.CharField(max_length=100, unique=True)
    owner = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="api_keys"
    )
    prefix = models.CharField(max_length=16, unique=True, editable=False)
    hashed_key = models.CharField(max_length=64, editable=False)
    created_at = models.DateTimeField(default=timezone.now, editable=False)
    expires_at = models.DateTimeField(null=True, blank=True, help_text="Empty: never expires.")
    revoked_at = models.DateTimeField(null=True, blank=True, editable=False)
    last_used_at = models.DateTimeField(null=True, blank=True, editable=False)
    plan = models.ForeignKey(
        Plan,
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="api_keys",
        help_text="Empty: no plan (no monthly quota; the key's own limit).",
    )
    rate_limit = models.PositiveIntegerField(
        default=_default_rate_limit,
        null=True,
        blank=True,
        help_text="Requests (v2: images) admitted per window. Empty: the plan's.",
    )
    rate_window_seconds = models.PositiveIntegerField(
        default=_default_rate_window,
        null=True,
        blank=True,
        help_text="Length of the sliding window in seconds. Empty: the plan's.",
    )
    allowed_models = models.JSONField(
        default=list,
        blank=True,
        validators=[validate_model_names],
        help_text="The models this key may call, by name (as /api/v2/models lists them). Empty: the plan's "
        "(no plan, or the plan's empty: every model).",
    )

    class Meta:
        verbose_name = "API key"
        ordering = ["-created_at"]
        constraints = [
            models.CheckConstraint(condition=Q(rate_limit__gte=1), name="apikey_rate_limit_positive"),
            models.CheckConstraint(condition=Q(rate_window_seconds__gte=1), name="apikey_rate_window_positive"),
        ]

    def __str__(self) -> str:
        return f"{self.name} ({self.prefix})"

    @property
    def is_revoked(self) -> bool:
        return self.revoked_at is not None

    def is_expired(self, now=None) -> bool:
        return self.expires_at is not None and self.expires_at <= (now or timezone.now())

    def is_active(self, now=None) -> bool:
        return not self.is_revoked and not self.is_expired(now)

    @property
    def effective_rate_limit(self) -> int:
        """The key's own rate limit, else its plan's, else the default (ACCOUNTS_DEFAULT_RATE_LIMIT)."""
        if self.rate_limit is not None:
            return self.rate_limit
        return self.plan.rate_limit if self.plan_id is not None else _default_rate_limit()

    @property
    def effective_rate_window_seconds(self) -> int:
        """The key's own window, else its plan's, else the default (ACCOUNTS_DEFAULT_RATE_WINDOW_SECONDS)."""
        if self.rate_window_seconds is not None:
            return self.rate_window_seconds
        return self.plan.rate_window_seconds if self.plan_id is not None else _default_rate_window()

    @property
    def effective_allowed_models(self) -> list[str]:
        """The key's own model list, else its plan's; empty: every model."""
        if self.allowed_models or self.plan_id is None:
            return self.allowed_models
        return self.plan.allowed_models

    def may_use_model(self, name: str) -> bool:
        """Whether this key may call model ``name`` (a bare name: no "@version"); empty allowed_models (the key's
        and its plan's): every one."""
        allowed = self.effective_allowed_models
        return not allowed or name in allowed

    def save(self, *args, **kwargs):  # noqa: DJ012 - beside the rules it enforces, not above them
        # A revoked key stays revoked: no edit may clear the stored revocation.
        if self.pk is not None and self.revoked_at is None:
            stored = ApiKey.objects.filter(pk=self.pk).values_list("revoked_at", flat=True).first()
            if stored is not None:
                self.revoked_at = stored
        super().save(*args, **kwargs)


class RequestLog(models.Model):
    api_key = models.ForeignKey(ApiKey, null=True, blank=True, on_delete=models.SET_NULL, related_name="logs")
    endpoint = models.CharField(max_length=200)
    method = models.CharField(max_length=10)
    status_code = models.PositiveSmallIntegerField()
    response_time_ms = models.FloatField()
    created_at = models.DateTimeField(default=timezone.now, db_index=True)
    client_ip = models.GenericIPAddressField(null=True, blank=True)
    request_id = models.CharField(max_length=64, blank=True, default="")
    images = models.PositiveIntegerField(default=0, help_text="Images this request asked to classify.")
    model_name = models.CharField(
        max_length=64, blank=True, default="", help_text="The model that answered; blank: none did."
    )
    model_version = models.CharField(
        max_length=64, blank=True, default="", help_text="Its version; blank: none or unversioned."
    )

    class Meta:
        ordering = ["-created_at"]
        indexes = [
            models.Index(fields=["api_key", "created_at"], name="requestlog_key_time"),
            # The dashboard's counts per key and status over a range, read from the index alone.
            models.Index(fields=["api_key", "status_code", "created_at", "images"], name="requestlog_key_status_time"),
            # The monthly statement's images per key and model over a month, read from the index alone.
            models.Index(
                fields=["api_key", "model_name", "model_version", "created_at", "images"],
                name="requestlog_key_model_time",
            ),
        ]
        constraints = [
            models.CheckConstraint(
                condition=Q(status_code__gte=100, status_code__lte=599), name="requestlog_status_code_valid"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.method} {self.endpoint} {self.status_code}"


class AnonymousRequestCount(models.Model):
    """How many requests under /api/ without a valid key (401s, unknown paths, public docs) one client sent.

    One row per minute, client, route and status, whose ``count`` each such request increments: a flood
    without a key adds counts, not rows. ``client`` is an IPv4 address, an IPv6 network (grouped by
    ACCOUNTS_ANONYMOUS_IPV6_PREFIX_BITS), UNKNOWN_CLIENT, or OVERFLOW_CLIENT once a minute has seen
    ACCOUNTS_ANONYMOUS_CLIENTS_PER_MINUTE distinct clients.
    """

    UNKNOWN_CLIENT = "unknown"
    OVERFLOW_CLIENT = "other clients"

    minute = models.DateTimeField(help_text="The start of the minute (UTC).")
    client = models.CharField(max_length=50)
    route = models.CharField(max_length=200, help_text='The matched route, or "unmatched".')
    status_code = models.PositiveSmallIntegerField()
    count = models.PositiveIntegerField(default=0)

    class Meta:
        verbose_name = "anonymous request count"
        ordering = ["-minute", "-count"]
        constraints = [
            models.UniqueConstraint(fields=["minute", "client", "route", "status_code"], name="anonymous_count_unique"),
            models.CheckConstraint(
                condition=Q(status_code__gte=100, status_code__lte=599), name="anonymous_count_status_code_valid"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.minute:%Y-%m-%d %H:%M} {self.client} {self.route} {self.status_code}: {self.count}"


class RepeatedThrottleCount(models.Model):
    """A key's repeated 429s on one route in one minute.

    The first 429 a key gets on a route in a minute is a RequestLog row like any request; the rest of that
    minute's 429s there raise this row's ``repeats`` instead of adding a row each, so a client that keeps
    sending over its limit adds one row a minute per route, not one per request. Every usage number adds
    these repeats to the log's 429s (accounts.selectors), dated to the start of their minute.
    """

    api_key = models.ForeignKey(ApiKey, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    minute = models.DateTimeField(help_text="The start of the minute (UTC).")
    endpoint = models.CharField(max_length=200, help_text="The matched route.")
    repeats = models.PositiveIntegerField(default=0, help_text="429s after the minute's first (which is logged).")

    class Meta:
        verbose_name = "repeated 429 count"
        ordering = ["-minute", "-repeats"]
        constraints = [
            models.UniqueConstraint(fields=["api_key", "minute", "endpoint"], name="repeated_throttle_unique"),
        ]
        indexes = [models.Index(fields=["minute", "api_key"], name="repeated_throttle_minute")]

    def __str__(self) -> str:
        return f"{self.minute:%Y-%m-%d %H:%M} key {self.api_key_id} {self.endpoint}: {self.repeats} more 429s"


class RateLimitEvent(models.Model):
    """One admitted request inside a key's sliding window (the database window store)."""

    api_key = models.ForeignKey(ApiKey, on_delete=models.CASCADE, related_name="+")
    at = models.FloatField(help_text="Unix time the request was admitted.")
    cost = models.PositiveIntegerField(default=1)

    class Meta:
        indexes = [models.Index(fields=["api_key", "at"], name="ratelimit_key_at")]

    def __str__(self) -> str:
        return f"key {self.api_key_id} at {self.at:.3f} (cost {self.cost})"


class UsageRateLimitEvent(models.Model):
    """One admitted usage request (GET /api/v1/usage or /api/v2/usage) inside its key's usage window: a table
    apart from RateLimitEvent, so reading usage never counts against the key's classification quota."""

    api_key = models.ForeignKey(ApiKey, on_delete=models.CASCADE, related_name="+")
    at = models.FloatField(help_text="Unix time the request was admitted.")
    cost = models.PositiveIntegerField(default=1)

    class Meta:
        indexes = [models.Index(fields=["api_key", "at"], name="usage_ratelimit_key_at")]

    def __str__(self) -> str:
        return f"key {self.api_key_id} at {self.at:.3f} (cost {self.cost})"


class MonthlyUsage(models.Model):
    """The images (v1: requests) a key was charged in one calendar month (UTC): the database quota store's
    counter, raised in the same transaction as the key's window (accounts.windows). Statements read the
    request log, not this."""

    api_key = models.ForeignKey(ApiKey, on_delete=models.CASCADE, related_name="+")
    month = models.DateField(help_text="The first day of the month (UTC).")
    images = models.PositiveBigIntegerField(default=0)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["api_key", "month"], name="monthly_usage_unique")]

    def __str__(self) -> str:
        return f"key {self.api_key_id} {self.month:%Y-%m}: {self.images}"


def month_start(moment: dt.datetime) -> dt.datetime:
    """The first instant (UTC) of the calendar month that holds ``moment``."""
    return moment.astimezone(dt.UTC).replace(day=1, hour=0, minute=0, second=0, microsecond=0)


def next_month_start(moment: dt.datetime) -> dt.datetime:
    """The first instant (UTC) of the calendar month after the one that holds ``moment``."""
    start = month_start(moment)
    return start.replace(year=start.year + 1, month=1) if start.month == 12 else start.replace(month=start.month + 1)
