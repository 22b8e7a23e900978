"""Admin: a thin UI over the key services. Keys are shown once; logs are read-only."""

from django.contrib import admin, messages
from django.db.models import Q
from django.utils.html import format_html

from . import services
from .forms import ApiKeyAdminForm, PlanAdminForm
from .models import AnonymousRequestCount, ApiKey, Plan, RepeatedThrottleCount, RequestLog


@admin.register(Plan)
class PlanAdmin(admin.ModelAdmin):
    """Plans: a monthly allowance, a rate limit, models, overage and prices. A plan with keys cannot be deleted
    (move its keys first: set_key_plan)."""

    form = PlanAdminForm
    list_display = [
        "name",
        "monthly_images",
        "overage",
        "rate_limit",
        "rate_window_seconds",
        "model_access",
        "price_per_1000_images",
        "price_per_1000_overage_images",
        "keys",
    ]
    search_fields = ["name"]
    readonly_fields = ["created_at"]

    @admin.display(description="models")
    def model_access(self, obj: Plan) -> str:
        return ", ".join(obj.allowed_models) or "all"

    @admin.display(description="keys")
    def keys(self, obj: Plan) -> int:
        return obj.api_keys.count()


@admin.register(ApiKey)
class ApiKeyAdmin(admin.ModelAdmin):
    form = ApiKeyAdminForm
    list_display = [
        "name",
        "prefix",
        "owner",
        "active",
        "plan",
        "rate_limit",
        "rate_window_seconds",
        "model_access",
        "expires_at",
        "last_used_at",
        "created_at",
    ]
    list_filter = [("revoked_at", admin.EmptyFieldListFilter), "plan", "expires_at", "created_at"]
    search_fields = ["name", "prefix", "owner__username", "owner__email"]
    readonly_fields = ["prefix", "created_at", "revoked_at", "last_used_at"]
    fields = [
        "name",
        "owner",
        "plan",
        "rate_limit",
        "rate_window_seconds",
        "allowed_models",
        "expires_at",
        *readonly_fields,
    ]
    list_select_related = ["plan"]
    actions = ["revoke_keys"]

    @admin.display(boolean=True, description="active")
    def active(self, obj: ApiKey) -> bool:
        return obj.is_active()

    @admin.display(description="models")
    def model_access(self, obj: ApiKey) -> str:
        return ", ".join(obj.allowed_models) or "all"

    def save_model(self, request, obj: ApiKey, form, change: bool) -> None:
        if change:
            super().save_model(request, obj, form, change)
            return
        raw_key = services.api_key_assign_secret(api_key=obj)
        messages.warning(
            request,
            format_html(
                "The new API key for “{}” is <code>{}</code> "
                "— copy it now: it is stored only as a hash and will not be shown again.",
                obj.name,
                raw_key,
            ),
        )

    @admin.action(description="Revoke selected API keys", permissions=["change"])
    def revoke_keys(self, request, queryset) -> None:
        revoked = 0
        for api_key in queryset.filter(revoked_at__isnull=True):
            services.api_key_revoke(api_key=api_key)
            revoked += 1
        self.message_user(request, f"Revoked {revoked} API key(s).", messages.SUCCESS)


class StatusClassFilter(admin.SimpleListFilter):
    """Status codes by class: fixed choices, so the list costs no DISTINCT scan of the log."""

    title = "status"
    parameter_name = "status"
    CLASSES = {
        "2xx": Q(status_code__gte=200, status_code__lt=300),
        "4xx": Q(status_code__gte=400, status_code__lt=500) & ~Q(status_code=429),
        "429": Q(status_code=429),
        "5xx": Q(status_code__gte=500),
    }

    def lookups(self, request, model_admin):
        return [(value, {"429": "429 throttled"}.get(value, value)) for value in self.CLASSES]

    def queryset(self, request, queryset):
        return queryset.filter(self.CLASSES[self.value()]) if self.value() in self.CLASSES else queryset


class ReadOnlyAdmin(admin.ModelAdmin):
    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        return False


@admin.register(RequestLog)
class RequestLogAdmin(ReadOnlyAdmin):
    """Read-only, and cheap at millions of rows: newest first through the created_at index, filters with
    fixed choices (no DISTINCT over the log), no full count, the key joined in the one list query."""

    list_display = [
        "created_at",
        "api_key",
        "method",
        "endpoint",
        "status_code",
        "response_time_ms",
        "images",
        "model_name",
        "model_version",
        "client_ip",
    ]
    list_filter = [StatusClassFilter, ("api_key", admin.RelatedFieldListFilter), "created_at"]
    search_fields = ["=request_id", "=api_key__prefix"]
    list_select_related = ["api_key"]
    show_full_result_count = False


@admin.register(AnonymousRequestCount)
class AnonymousRequestCountAdmin(ReadOnlyAdmin):
    """Requests without a valid key, counted per minute, client, route and status."""

    list_display = ["minute", "client", "route", "status_code", "count"]
    list_filter = [StatusClassFilter, "minute"]
    search_fields = ["=client", "=route"]
    show_full_result_count = False


@admin.register(RepeatedThrottleCount)
class RepeatedThrottleCountAdmin(ReadOnlyAdmin):
    """A key's 429s after the first on a route in a minute (the first is in the request log)."""

    list_display = ["minute", "api_key", "endpoint", "repeats"]
    list_filter = [("api_key", admin.RelatedFieldListFilter), "minute"]
    search_fields = ["=api_key__prefix", "=endpoint"]
    list_select_related = ["api_key"]
    show_full_result_count = False
