"""Forms of the staff pages: the usage dashboard's filter, and the admin's key form."""

import datetime as dt
from dataclasses import dataclass

from django import forms

from .models import ApiKey, Plan, default_rate_limit, default_rate_window, parse_model_names
from .selectors import api_keys_for_filter

# Period choice -> (label, how far back from now, chart bucket).
PERIODS = {
    "24h": ("Last 24 hours", dt.timedelta(hours=24), "hour"),
    "7d": ("Last 7 days", dt.timedelta(days=7), "day"),
    "30d": ("Last 30 days", dt.timedelta(days=30), "day"),
    "90d": ("Last 90 days", dt.timedelta(days=90), "day"),
}
DEFAULT_PERIOD = "24h"


@dataclass(frozen=True)
class UsageSelection:
    api_key: ApiKey | None  # None: every key
    since: dt.datetime
    until: dt.datetime
    bucket: str


class UsageFilterForm(forms.Form):
    """GET filter of the usage dashboard: one key or all, and a period ending now."""

    key = forms.ModelChoiceField(queryset=ApiKey.objects.none(), required=False, empty_label="All keys")
    period = forms.ChoiceField(
        choices=[(value, label) for value, (label, _, _) in PERIODS.items()], required=False, initial=DEFAULT_PERIOD
    )

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["key"].queryset = api_keys_for_filter()

    def selection(self, *, now: dt.datetime) -> UsageSelection:
        """What to show: the valid choices, or every key over the default period when the filter is invalid."""
        data = self.cleaned_data if self.is_valid() else {}
        _, length, bucket = PERIODS[data.get("period") or DEFAULT_PERIOD]
        return UsageSelection(api_key=data.get("key"), since=now - length, until=now, bucket=bucket)


class ModelNamesField(forms.CharField):
    """A list of model names typed as one comma-separated line ("flowers, resnet18"); empty: []."""

    def prepare_value(self, value):
        return ", ".join(value) if isinstance(value, list) else value

    def to_python(self, value) -> list[str]:
        return parse_model_names(super().to_python(value))

    def has_changed(self, initial, data) -> bool:
        return parse_model_names(self.prepare_value(initial) or "") != self.to_python(data)


class ApiKeyAdminForm(forms.ModelForm):
    """The admin's key form: allowed_models is one line of names (the model validates each name)."""

    allowed_models = ModelNamesField(
        required=False,
        label="Allowed models",
        widget=forms.TextInput(attrs={"size": 60, "placeholder": "every model"}),
        help_text="Comma-separated model names, as /api/v2/models lists them (e.g. <code>flowers, resnet18</code>). "
        "Empty: the key may use every model. A request for another model is refused with 403 model_not_allowed "
        "and spends no quota; v1 uses the default model, so list it too for v1.",
    )

    class Meta:
        model = ApiKey
        fields = "__all__"  # noqa: DJ007 - ApiKeyAdmin's fieldsets and read-only fields choose what is shown

    def clean(self):
        """A key on no plan keeps a limit and window of its own (left empty: the defaults), as before plans."""
        cleaned = super().clean()
        if not cleaned.get("plan"):
            if cleaned.get("rate_limit") is None and "rate_limit" in self.fields:
                cleaned["rate_limit"] = default_rate_limit()
            if cleaned.get("rate_window_seconds") is None and "rate_window_seconds" in self.fields:
                cleaned["rate_window_seconds"] = default_rate_window()
        return cleaned


class PlanAdminForm(forms.ModelForm):
    """The admin's plan form: allowed_models is one line of names, as on the key form."""

    allowed_models = ModelNamesField(
        required=False,
        label="Allowed models",
        widget=forms.TextInput(attrs={"size": 60, "placeholder": "every model"}),
        help_text="Comma-separated model names. Empty: every model. A key's own list, where set, overrides it.",
    )

    class Meta:
        model = Plan
        fields = "__all__"  # noqa: DJ007 - PlanAdmin chooses what is shown
