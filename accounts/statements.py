"""Monthly statements: what each key and each plan used in a calendar month (UTC), and what it costs at the
plan's prices, read from the request log (so a statement adds up to the log exactly), and its CSV and JSON.

Three bounded reads of the month, each answered from a covering index of the log (no table rows, and on SQLite
no sort of the month's rows): requests and images per key and status (UsageQuery.status_counts, tallied by
UsageTally as every other usage number is), per key and model (requestlog_key_model_time), and per key and day
(one range count per day, each grouped by key in index order). PostgreSQL reads all of it in one hashed GROUP BY
(key, day, model, version, status) instead, faster there. Measured with
``python -m bench.plans`` on 1M rows: see docs/admin.md.
"""

import csv
import datetime as dt
import io
import re
from collections import defaultdict
from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal

from django.db import connection
from django.db.models import Count, Sum

from .models import ApiKey, Plan, month_start, next_month_start
from .selectors import DAY, DayUsage, ModelUsage, UsageQuery, UsageTally, tally_by

NO_PLAN = "(no plan)"
DELETED_KEY = "(deleted key)"  # log rows whose key was deleted (RequestLog.api_key is SET_NULL)
CENT = Decimal("0.01")
_MONTH = re.compile(r"^(\d{4})-(\d{2})$")


class BadMonth(ValueError):
    """A month that is not YYYY-MM with a month 01-12."""


def parse_month(text: str) -> dt.datetime:
    """The first instant (UTC) of month ``text`` ("2026-11"); raises BadMonth."""
    match = _MONTH.match(text or "")
    if not match or not 1 <= int(match[2]) <= 12 or int(match[1]) < 1:
        raise BadMonth(f"Not a month: {text!r}; expected YYYY-MM, e.g. 2026-11.")
    return dt.datetime(int(match[1]), int(match[2]), 1, tzinfo=dt.UTC)


def amount(*, images: int, allowance: int | None, price: Decimal, overage_price: Decimal) -> tuple[int, Decimal]:
    """(overage images, amount rounded to the cent) for ``images`` in a month at a plan's prices per 1,000:
    images within ``allowance`` (None: all) at ``price``, the rest at ``overage_price``."""
    overage = 0 if allowance is None else max(0, images - allowance)
    total = (Decimal(images - overage) * price + Decimal(overage) * overage_price) / 1000
    return overage, total.quantize(CENT, rounding=ROUND_HALF_UP)


@dataclass(frozen=True)
class KeyStatement:
    key_id: int | None
    name: str
    prefix: str
    plan: str  # the key's plan now, or NO_PLAN
    revoked: bool
    requests: int  # every logged request, refused ones included
    images: int  # images charged (v1: one a request), as the quota counts them
    allowance: int | None
    overage_images: int
    amount: Decimal
    by_model: list[ModelUsage]
    by_day: list[DayUsage]  # every day of the month, zeros included


@dataclass(frozen=True)
class PlanStatement:
    plan: str
    keys: int  # keys with requests this month
    monthly_images: int | None  # allowance per key
    overage: str
    price_per_1000_images: Decimal
    price_per_1000_overage_images: Decimal
    requests: int
    images: int
    overage_images: int
    amount: Decimal


@dataclass(frozen=True)
class Statement:
    month: str  # "2026-11"
    start: dt.datetime
    end: dt.datetime  # exclusive: the next month's start
    requests: int
    images: int
    amount: Decimal
    plans: list[PlanStatement]  # every plan, then NO_PLAN when keys without one were used
    keys: list[KeyStatement]  # by plan, then key name


def usage_statement(*, month: dt.datetime) -> Statement:
    """The statement of the calendar month (UTC) that holds ``month``: each key that made requests in it (revoked
    and deleted keys too) and each plan, at the key's plan now."""
    start = month_start(month)
    end = next_month_start(month)
    query = UsageQuery(since=start, until=end)
    days = [start.date() + dt.timedelta(days=n) for n in range((end - start).days)]
    if connection.vendor == "postgresql":
        totals, models, daily = _counts_in_one_pass(query)
    else:
        totals, models, daily = tally_by(query.status_counts("api_key_id"), 0), _model_counts(query), _day_counts(days)
    keys = {key.pk: key for key in ApiKey.objects.filter(pk__in=[key_id for key_id in totals if key_id is not None])}
    plans = {plan.pk: plan for plan in Plan.objects.all()}
    lines = [
        _key_statement(
            key_id,
            keys.get(key_id),
            plans,
            tally,
            models.get(key_id, []),
            [daily.get((key_id, day)) for day in days],
            days,
        )
        for key_id, tally in totals.items()
    ]
    lines.sort(key=lambda line: (line.plan == NO_PLAN, line.plan, line.name, line.prefix))
    return Statement(
        month=f"{start:%Y-%m}",
        start=start,
        end=end,
        requests=sum(line.requests for line in lines),
        images=sum(line.images for line in lines),
        amount=sum((line.amount for line in lines), Decimal("0.00")),
        plans=_plan_statements(lines, plans),
        keys=lines,
    )


def _model_counts(query: UsageQuery) -> dict[int | None, list[ModelUsage]]:
    """Per key: requests and images per model and version that answered (refused requests name none)."""
    rows = (
        query.logs()
        .exclude(model_name="")
        .values_list("api_key_id", "model_name", "model_version")
        .annotate(requests=Count("*"), images=Sum("images"))
        .order_by("api_key_id", "model_name", "model_version")
    )
    by_key: dict[int | None, list[ModelUsage]] = defaultdict(list)
    for key_id, name, version, requests, images in rows:
        by_key[key_id].append(ModelUsage(name=name, version=version, requests=requests, images=images or 0))
    return by_key


def _counts_in_one_pass(query: UsageQuery) -> tuple[dict, dict, dict]:
    """PostgreSQL: the per-key totals, models and days from one GROUP BY (key, day, model, version, status): one
    hashed pass over the month, faster there than three index reads (measured)."""
    counts = query.status_counts("api_key_id", DAY, "model_name", "model_version")
    totals = tally_by(counts, 0)
    models: dict[tuple, list[int]] = {}
    daily: dict[tuple, tuple[int, int]] = {}
    for row in counts:
        key_id, day, name, version = row.group
        requests, images = daily.get((key_id, day), (0, 0))
        daily[(key_id, day)] = (requests + row.requests, images + row.images)
        if name:
            model = models.setdefault((key_id, name, version), [0, 0])
            model[0], model[1] = model[0] + row.requests, model[1] + row.images
    by_key: dict[int | None, list[ModelUsage]] = defaultdict(list)
    for (key_id, name, version), (requests, images) in sorted(
        models.items(), key=lambda item: (item[0][1], item[0][2])
    ):
        by_key[key_id].append(ModelUsage(name=name, version=version, requests=requests, images=images))
    return totals, by_key, daily


def _day_counts(days: list[dt.date]) -> dict[tuple, tuple[int, int]]:
    """SQLite: {(key id, day): (requests, images)}, a range count per day grouped by key in the index's order (no
    sort of the month's rows)."""
    counted: dict[tuple, tuple[int, int]] = {}
    for day in days:
        since = dt.datetime.combine(day, dt.time(), tzinfo=dt.UTC)
        in_day = UsageQuery(since=since, until=since + dt.timedelta(days=1)).logs()
        for key_id, requests, images in in_day.values_list("api_key_id").annotate(n=Count("*"), i=Sum("images")):
            counted[(key_id, day)] = (requests, images or 0)
    start = dt.datetime.combine(days[0], dt.time(), tzinfo=dt.UTC)
    for row in UsageQuery(since=start, until=start + dt.timedelta(days=len(days))).repeat_counts("api_key_id", DAY):
        requests, images = counted.get(row.group, (0, 0))
        counted[row.group] = (requests + row.requests, images)
    return counted


def _key_statement(
    key_id, key: ApiKey | None, plans: dict, tally: UsageTally, by_model: list[ModelUsage], daily: list, days
) -> KeyStatement:
    plan = plans.get(key.plan_id) if key is not None and key.plan_id is not None else None
    allowance = plan.monthly_images if plan else None
    overage, total = (0, Decimal("0.00"))
    if plan is not None:
        overage, total = amount(
            images=tally.images,
            allowance=allowance,
            price=plan.price_per_1000_images,
            overage_price=plan.price_per_1000_overage_images,
        )
    return KeyStatement(
        key_id=key_id,
        name=key.name if key else DELETED_KEY,
        prefix=key.prefix if key else "",
        plan=plan.name if plan else NO_PLAN,
        revoked=bool(key and key.is_revoked),
        requests=tally.requests,
        images=tally.images,
        allowance=allowance,
        overage_images=overage,
        amount=total,
        by_model=by_model,
        by_day=[
            DayUsage(date=day, requests=n[0], images=n[1]) if n else DayUsage(day, 0, 0) for day, n in zip(days, daily)
        ],
    )


def _plan_statements(lines: list[KeyStatement], plans: dict) -> list[PlanStatement]:
    by_plan: dict[str, list[KeyStatement]] = defaultdict(list)
    for line in lines:
        by_plan[line.plan].append(line)
    statements = []
    for plan in sorted(plans.values(), key=lambda p: p.name):
        used = by_plan.get(plan.name, [])
        statements.append(
            PlanStatement(
                plan=plan.name,
                keys=len(used),
                monthly_images=plan.monthly_images,
                overage=plan.overage,
                price_per_1000_images=plan.price_per_1000_images,
                price_per_1000_overage_images=plan.price_per_1000_overage_images,
                requests=sum(line.requests for line in used),
                images=sum(line.images for line in used),
                overage_images=sum(line.overage_images for line in used),
                amount=sum((line.amount for line in used), Decimal("0.00")),
            )
        )
    if NO_PLAN in by_plan:
        used = by_plan[NO_PLAN]
        statements.append(
            PlanStatement(
                plan=NO_PLAN,
                keys=len(used),
                monthly_images=None,
                overage="",
                price_per_1000_images=Decimal(0),
                price_per_1000_overage_images=Decimal(0),
                requests=sum(line.requests for line in used),
                images=sum(line.images for line in used),
                overage_images=0,
                amount=Decimal("0.00"),
            )
        )
    return statements


# --- the dashboard's chart: each plan's use this month against its allowance -----------------------------------


@dataclass(frozen=True)
class PlanUse:
    plan: str
    keys: int  # keys on the plan now
    allowance: int | None  # the plan's allowance x its keys; None: unlimited
    images: int  # images its keys were charged this month

    @property
    def percent(self) -> float | None:
        """Images against allowance in percent (may pass 100 with overage); None when unlimited or no keys."""
        return round(100.0 * self.images / self.allowance, 1) if self.allowance else None


def plan_use(*, now: dt.datetime) -> list[PlanUse]:
    """Every plan's images this month (UTC) against its allowance times its keys, by plan name: one read of
    the month's (key, status) counts through the covering index, as the dashboard's other numbers."""
    start = month_start(now)
    counts = UsageQuery(since=start, until=next_month_start(now)).status_counts("api_key_id")
    images = {key_id: tally.images for key_id, tally in tally_by(counts, 0).items()}
    plans: dict[str, tuple[int | None, list[int]]] = {}
    # One query: every plan with its keys' ids (a LEFT JOIN: a plan without keys comes with None).
    for name, allowance, key_id in Plan.objects.values_list("name", "monthly_images", "api_keys__id").order_by("name"):
        plans.setdefault(name, (allowance, []))[1].extend([key_id] if key_id is not None else [])
    return [
        PlanUse(
            plan=name,
            keys=len(key_ids),
            allowance=None if allowance is None else allowance * len(key_ids),
            images=sum(images.get(key_id, 0) for key_id in key_ids),
        )
        for name, (allowance, key_ids) in plans.items()
    ]


# --- renderings -------------------------------------------------------------------------------------------------

CSV_COLUMNS = [
    "month",
    "kind",  # plan, key, model (a key's images by model), day (a key's images by day)
    "plan",
    "key_name",
    "key_prefix",
    "revoked",
    "model",
    "model_version",
    "day",
    "requests",
    "images",
    "allowance",
    "overage_images",
    "amount",
]


def statement_csv(statement: Statement) -> str:
    """The statement as CSV: a row per plan, per key, per key and model, per key and day (``kind`` says which);
    blank cells where a column does not apply. The ``key`` rows add up to the ``plan`` rows."""
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=CSV_COLUMNS, lineterminator="\n")
    writer.writeheader()
    base = {"month": statement.month}
    for plan in statement.plans:
        writer.writerow(
            {
                **base,
                "kind": "plan",
                "plan": plan.plan,
                "requests": plan.requests,
                "images": plan.images,
                "allowance": _blank(plan.monthly_images),
                "overage_images": plan.overage_images,
                "amount": plan.amount,
            }
        )
    for line in statement.keys:
        key = {**base, "plan": line.plan, "key_name": _csv_safe(line.name), "key_prefix": line.prefix}
        writer.writerow(
            {
                **key,
                "kind": "key",
                "revoked": "yes" if line.revoked else "no",
                "requests": line.requests,
                "images": line.images,
                "allowance": _blank(line.allowance),
                "overage_images": line.overage_images,
                "amount": line.amount,
            }
        )
        for model in line.by_model:
            writer.writerow(
                {
                    **key,
                    "kind": "model",
                    "model": model.name,
                    "model_version": model.version,
                    "requests": model.requests,
                    "images": model.images,
                }
            )
        for day in line.by_day:
            if day.requests:
                writer.writerow(
                    {**key, "kind": "day", "day": day.date.isoformat(), "requests": day.requests, "images": day.images}
                )
    return out.getvalue()


def _blank(value) -> str:
    return "" if value is None else str(value)


def _csv_safe(text: str) -> str:
    """A cell a spreadsheet will not run as a formula (a key's name is chosen by staff, but may come from a customer)."""
    return "'" + text if text[:1] in ("=", "+", "-", "@") else text


def statement_dict(statement: Statement) -> dict:
    """The statement as JSON-ready data (amounts as strings with two places, dates ISO 8601)."""
    return {
        "month": statement.month,
        "start": statement.start.isoformat(),
        "end": statement.end.isoformat(),
        "requests": statement.requests,
        "images": statement.images,
        "amount": str(statement.amount),
        "plans": [
            {
                "plan": plan.plan,
                "keys": plan.keys,
                "monthly_images": plan.monthly_images,
                "overage": plan.overage,
                "price_per_1000_images": str(plan.price_per_1000_images),
                "price_per_1000_overage_images": str(plan.price_per_1000_overage_images),
                "requests": plan.requests,
                "images": plan.images,
                "overage_images": plan.overage_images,
                "amount": str(plan.amount),
            }
            for plan in statement.plans
        ],
        "keys": [
            {
                "name": line.name,
                "prefix": line.prefix,
                "plan": line.plan,
                "revoked": line.revoked,
                "requests": line.requests,
                "images": line.images,
                "allowance": line.allowance,
                "overage_images": line.overage_images,
                "amount": str(line.amount),
                "by_model": [
                    {"model": m.name, "version": m.version, "requests": m.requests, "images": m.images}
                    for m in line.by_model
                ],
                "by_day": [
                    {"date": d.date.isoformat(), "requests": d.requests, "images": d.images} for d in line.by_day
                ],
            }
            for line in statement.keys
        ],
    }
