"""Who may call the API (ApiKey), what they used (RequestLog, RateLimitEvent, UsageRateLimitEvent) and who
called without a key (AnonymousRequestCount)."""

import re

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import models
from django.db.models import Q
from django.utils import timezone


def _default_rate_limit() -> int:
    return settings.ACCOUNTS_DEFAULT_RATE_LIMIT


def _default_rate_window() -> int:
    return settings.ACCOUNTS_DEFAULT_RATE_WINDOW_SECONDS


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
    rate_limit = models.PositiveIntegerField(
        default=_default_rate_limit, help_text="Requests (v2: images) admitted per window."
    )
    rate_window_seconds = models.PositiveIntegerField(
        default=_default_rate_window, help_text="Length of the sliding window in seconds."
    )
    allowed_models = models.JSONField(
        default=list,
        blank=True,
        validators=[validate_model_names],
        help_text="The models this key may call, by name (as /api/v2/models lists them). Empty: every model.",
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

    def may_use_model(self, name: str) -> bool:
        """Whether this key may call model ``name`` (a bare name: no "@version"); empty allowed_models: every one."""
        return not self.allowed_models or name in self.allowed_models

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
