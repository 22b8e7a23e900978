"""Forms of the staff pages: the usage dashboard's filter."""
import datetime as dt
from dataclasses import dataclass

from django import forms

from .models import ApiKey
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
