"""Monthly statements: per key and per plan, from the request log (they add up to it exactly), at the plans'
prices; their CSV and JSON; and the plan commands (create_plan, set_key_plan, create_api_key --plan)."""

import csv
import datetime as dt
import io
import json
from decimal import Decimal
from io import StringIO

import pytest
from django.core.management import CommandError, call_command
from django.db.models import Sum

from accounts.models import ApiKey, Plan, RepeatedThrottleCount, RequestLog
from accounts.services import api_key_create, api_key_revoke, api_key_set_plan, plan_create
from accounts.statements import (
    BadMonth,
    amount,
    parse_month,
    plan_use,
    statement_csv,
    statement_dict,
    usage_statement,
)

pytestmark = pytest.mark.django_db
NOV = dt.datetime(2026, 11, 1, tzinfo=dt.UTC)
LAST_MS_OF_NOV = dt.datetime(2026, 11, 30, 23, 59, 59, 999000, tzinfo=dt.UTC)
DEC = dt.datetime(2026, 12, 1, tzinfo=dt.UTC)


def log(api_key, *, at, images=1, status=200, model="resnet18", version=""):
    return RequestLog.objects.create(
        api_key=api_key,
        endpoint="/api/v2/classify",
        method="POST",
        status_code=status,
        response_time_ms=5.0,
        created_at=at,
        images=images,
        model_name=model if status == 200 else "",
        model_version=version if status == 200 else "",
    )


@pytest.fixture
def month_of_traffic():
    """free (1,000 a month, blocks) and pro (2,000, overage at a price), keys on each, one revoked, one on no plan,
    one deleted, and requests on both sides of November's edges."""
    free = plan_create(name="free", monthly_images=1000, rate_limit=100)
    pro = plan_create(
        name="pro",
        monthly_images=2000,
        overage="allow",
        rate_limit=100,
        price_per_1000_images="10.00",
        price_per_1000_overage_images="15.00",
    )
    alice = api_key_create(name="alice", plan=free)[0]
    bob = api_key_create(name="bob", plan=pro)[0]
    carol = api_key_create(name="carol", plan=pro)[0]
    legacy = api_key_create(name="legacy")[0]
    gone = api_key_create(name="gone")[0]
    log(alice, at=NOV, images=600)
    log(alice, at=LAST_MS_OF_NOV, images=400)  # the last millisecond: November
    log(alice, at=DEC, images=7)  # midnight: December
    log(alice, at=NOV - dt.timedelta(microseconds=1), images=9)  # October
    log(alice, at=NOV + dt.timedelta(days=3), images=0, status=429)
    log(bob, at=NOV + dt.timedelta(days=1), images=2500, model="flowers", version="3")
    log(bob, at=NOV + dt.timedelta(days=2), images=1)
    log(carol, at=NOV + dt.timedelta(days=5), images=120)
    api_key_revoke(api_key=carol)
    log(legacy, at=NOV + dt.timedelta(days=9), images=4)
    log(gone, at=NOV + dt.timedelta(days=9), images=2)
    gone.delete()
    return {"free": free, "pro": pro, "alice": alice, "bob": bob, "carol": carol, "legacy": legacy}


def november_log():
    logs = RequestLog.objects.filter(created_at__gte=NOV, created_at__lt=DEC)
    return logs.count(), logs.aggregate(n=Sum("images"))["n"]


def test_the_statement_adds_up_to_the_request_log_exactly(month_of_traffic):
    statement = usage_statement(month=NOV)
    requests, images = november_log()
    assert (statement.requests, statement.images) == (requests, images) == (8, 3627)
    assert sum(line.requests for line in statement.keys) == requests
    assert sum(plan.images for plan in statement.plans) == images
    for line in statement.keys:
        assert sum(day.images for day in line.by_day) == line.images
        assert sum(day.requests for day in line.by_day) == line.requests
        assert len(line.by_day) == 30


def test_the_month_edges_follow_the_log_to_the_millisecond(month_of_traffic):
    alice = next(line for line in usage_statement(month=NOV).keys if line.name == "alice")
    assert (alice.requests, alice.images) == (3, 1000)  # Nov 1 00:00 and Nov 30 23:59:59.999, not Oct 31 or Dec 1
    assert usage_statement(month=DEC).images == 7


def test_amounts_follow_each_keys_allowance_and_the_plans_prices(month_of_traffic):
    statement = usage_statement(month=NOV)
    lines = {line.name: line for line in statement.keys}
    assert (lines["bob"].images, lines["bob"].overage_images, lines["bob"].amount) == (2501, 501, Decimal("27.52"))
    assert (lines["carol"].overage_images, lines["carol"].amount) == (0, Decimal("1.20"))
    assert lines["alice"].amount == Decimal("0.00")  # free costs nothing
    plans = {plan.plan: plan for plan in statement.plans}
    assert plans["pro"].amount == Decimal("28.72") and plans["pro"].keys == 2 and plans["pro"].overage_images == 501
    assert plans["(no plan)"].images == 6 and statement.amount == Decimal("28.72")


def test_a_revoked_key_and_a_deleted_keys_use_stay_in_the_statement(month_of_traffic):
    lines = {line.name: line for line in usage_statement(month=NOV).keys}
    assert lines["carol"].revoked and lines["carol"].images == 120
    assert lines["(deleted key)"].images == 2 and lines["(deleted key)"].plan == "(no plan)"


def test_a_key_is_billed_at_its_plan_now_after_a_change(month_of_traffic):
    api_key_set_plan(api_key=month_of_traffic["legacy"], plan=month_of_traffic["pro"])
    lines = {line.name: line for line in usage_statement(month=NOV).keys}
    assert lines["legacy"].plan == "pro" and lines["legacy"].amount == Decimal("0.04")


def test_statement_breaks_down_by_model_and_by_day(month_of_traffic):
    bob = next(line for line in usage_statement(month=NOV).keys if line.name == "bob")
    assert [(m.name, m.version, m.images) for m in bob.by_model] == [("flowers", "3", 2500), ("resnet18", "", 1)]
    assert [(d.date, d.images) for d in bob.by_day if d.requests] == [
        (dt.date(2026, 11, 2), 2500),
        (dt.date(2026, 11, 3), 1),
    ]


def test_csv_has_a_row_per_plan_key_model_and_day_and_its_key_rows_add_up(month_of_traffic):
    rows = list(csv.DictReader(io.StringIO(statement_csv(usage_statement(month=NOV)))))
    keys = [row for row in rows if row["kind"] == "key"]
    assert sum(int(row["images"]) for row in keys) == november_log()[1]
    assert sum(int(row["images"]) for row in rows if row["kind"] == "plan") == november_log()[1]
    pro = next(row for row in rows if row["kind"] == "plan" and row["plan"] == "pro")
    assert (pro["allowance"], pro["overage_images"], pro["amount"]) == ("2000", "501", "28.72")
    assert {row["kind"] for row in rows} == {"plan", "key", "model", "day"}
    assert all(row["month"] == "2026-11" for row in rows)


def test_csv_cells_never_start_a_formula(db):
    api_key = api_key_create(name="=HYPERLINK(1)")[0]
    log(api_key, at=NOV)
    rows = list(csv.DictReader(io.StringIO(statement_csv(usage_statement(month=NOV)))))
    assert {row["key_name"] for row in rows if row["kind"] == "key"} == {"'=HYPERLINK(1)"}


def test_json_gives_the_same_numbers(month_of_traffic):
    data = json.loads(json.dumps(statement_dict(usage_statement(month=NOV))))
    assert (data["month"], data["requests"], data["images"], data["amount"]) == ("2026-11", 8, 3627, "28.72")
    bob = next(key for key in data["keys"] if key["name"] == "bob")
    assert bob["by_model"][0] == {"model": "flowers", "version": "3", "requests": 1, "images": 2500}


def test_an_empty_month_lists_every_plan_at_zero(db):
    plan_create(name="free", monthly_images=10)
    statement = usage_statement(month=NOV)
    assert statement.keys == [] and [(p.plan, p.images, p.amount) for p in statement.plans] == [
        ("free", 0, Decimal("0.00"))
    ]


@pytest.mark.parametrize("text", ["2026-13", "2026-00", "2026-1", "26-11", "", "2026-11-01", "november", "0000-01"])
def test_a_bad_month_is_refused_clearly(text):
    with pytest.raises(BadMonth, match="YYYY-MM"):
        parse_month(text)


def test_amount_rounds_to_the_cent():
    assert amount(images=1, allowance=None, price=Decimal("4.995"), overage_price=Decimal(0)) == (0, Decimal("0.00"))
    assert amount(images=1001, allowance=1000, price=Decimal(1), overage_price=Decimal(5)) == (1, Decimal("1.01"))


def test_plan_use_sets_each_plans_images_this_month_against_its_allowance(month_of_traffic):
    use = {row.plan: row for row in plan_use(now=NOV + dt.timedelta(days=10))}
    assert (use["free"].keys, use["free"].allowance, use["free"].images, use["free"].percent) == (1, 1000, 1000, 100.0)
    assert (use["pro"].allowance, use["pro"].images) == (4000, 2621)


# --- the commands ------------------------------------------------------------------------------------------------


def test_usage_statement_prints_csv_and_json(month_of_traffic):
    out = StringIO()
    call_command("usage_statement", "--month", "2026-11", "--format", "csv", stdout=out)
    assert out.getvalue() == statement_csv(usage_statement(month=NOV))
    out = StringIO()
    call_command("usage_statement", "--month", "2026-11", "--format", "json", stdout=out)
    assert json.loads(out.getvalue())["images"] == 3627


@pytest.mark.parametrize("month", ["2026-13", "13-2026", "x"])
def test_usage_statement_refuses_a_bad_month(month):
    with pytest.raises(CommandError, match="Not a month"):
        call_command("usage_statement", "--month", month, stdout=StringIO())


def test_create_plan_creates_a_plan_with_every_option():
    out = StringIO()
    call_command(
        "create_plan",
        "pro",
        "--monthly-images",
        "100000",
        "--rate-limit",
        "600",
        "--window",
        "60",
        "--models",
        "resnet18,flowers",
        "--overage",
        "allow",
        "--price",
        "0.50",
        "--overage-price",
        "0.80",
        stdout=out,
    )
    plan = Plan.objects.get(name="pro")
    assert (plan.monthly_images, plan.rate_limit, plan.rate_window_seconds, plan.overage) == (100000, 600, 60, "allow")
    assert plan.allowed_models == ["resnet18", "flowers"] and plan.price_per_1000_overage_images == Decimal("0.80")
    assert "100000 images a month (allow past it)" in out.getvalue()


def test_create_plan_without_an_allowance_is_unlimited_and_blocks_by_default():
    call_command("create_plan", "open", stdout=StringIO())
    plan = Plan.objects.get(name="open")
    assert plan.monthly_images is None and plan.blocks_overage


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--monthly-images", "-5"], "monthly_images"),
        (["--overage", "sometimes"], "overage"),
        (["--rate-limit", "0"], "rate_limit"),
        (["--models", "a@1"], "allowed_models"),
        (["--price", "cheap"], "--price"),
        (["--price", "-1"], "price_per_1000_images"),
        (["--overage-price", "NaN"], "--overage-price"),
    ],
)
def test_create_plan_refuses_bad_input_clearly(args, message):
    with pytest.raises(CommandError, match=message):
        call_command("create_plan", "bad", *args, stdout=StringIO())
    assert not Plan.objects.exists()


def test_create_plan_refuses_a_taken_name():
    call_command("create_plan", "free", stdout=StringIO())
    with pytest.raises(CommandError, match="name"):
        call_command("create_plan", "free", stdout=StringIO())


def test_create_api_key_on_a_plan_takes_the_plans_limit_and_models():
    plan_create(name="free", monthly_images=1000, rate_limit=30, rate_window_seconds=120, allowed_models=["flowers"])
    out = StringIO()
    call_command("create_api_key", "--name", "on-free", "--plan", "free", stdout=out)
    api_key = ApiKey.objects.get(name="on-free")
    assert api_key.plan.name == "free" and (api_key.rate_limit, api_key.rate_window_seconds) == (None, None)
    assert (api_key.effective_rate_limit, api_key.effective_rate_window_seconds) == (30, 120)
    assert "plan 'free', 30 requests per 120s, models: flowers" in out.getvalue()


def test_create_api_key_on_a_plan_keeps_a_limit_given_for_it():
    plan_create(name="free", monthly_images=1000, rate_limit=30)
    call_command("create_api_key", "--name", "own", "--plan", "free", "--rate-limit", "5", stdout=StringIO())
    assert ApiKey.objects.get(name="own").effective_rate_limit == 5


def test_create_api_key_refuses_an_unknown_plan():
    with pytest.raises(CommandError, match="No plan named 'gold'"):
        call_command("create_api_key", "--name", "k", "--plan", "gold", stdout=StringIO())
    assert not ApiKey.objects.exists()


def test_set_key_plan_moves_a_key_and_refuses_unknown_names():
    plan_create(name="free", monthly_images=10)
    api_key = api_key_create(name="mover")[0]
    out = StringIO()
    call_command("set_key_plan", api_key.prefix, "free", stdout=out)
    assert ApiKey.objects.get(pk=api_key.pk).plan.name == "free" and "now on 'free'" in out.getvalue()
    with pytest.raises(CommandError, match="No plan named 'gold'; plans: free"):
        call_command("set_key_plan", api_key.prefix, "gold", stdout=StringIO())
    with pytest.raises(CommandError, match="No API key with prefix"):
        call_command("set_key_plan", "nope", "free", stdout=StringIO())
    call_command("set_key_plan", api_key.prefix, "--none", stdout=StringIO())
    assert ApiKey.objects.get(pk=api_key.pk).plan is None
    with pytest.raises(CommandError, match="Name a plan"):
        call_command("set_key_plan", api_key.prefix, stdout=StringIO())


def test_set_key_plan_gives_the_key_the_plans_limit_unless_told_to_keep_its_own():
    plan_create(name="pro", monthly_images=10, rate_limit=500, rate_window_seconds=30)
    mover = api_key_create(name="mover", rate_limit=5)[0]
    keeper = api_key_create(name="keeper", rate_limit=5)[0]
    call_command("set_key_plan", mover.prefix, "pro", stdout=StringIO())
    call_command("set_key_plan", keeper.prefix, "pro", "--keep-own-limit", stdout=StringIO())
    mover, keeper = ApiKey.objects.get(pk=mover.pk), ApiKey.objects.get(pk=keeper.pk)
    assert (mover.effective_rate_limit, mover.effective_rate_window_seconds) == (500, 30)
    assert keeper.effective_rate_limit == 5
    call_command("set_key_plan", mover.prefix, "--none", stdout=StringIO())
    mover = ApiKey.objects.get(pk=mover.pk)
    assert mover.plan is None and (mover.rate_limit, mover.rate_window_seconds) == (60, 60)  # the defaults


def test_a_key_with_no_plan_keeps_its_own_limit_as_before():
    api_key = api_key_create(name="plain")[0]
    assert api_key.plan is None and api_key.rate_limit == api_key.effective_rate_limit == 60


def test_repeated_429s_are_in_the_statement_and_its_days(month_of_traffic):
    bob_before = next(line for line in usage_statement(month=NOV).keys if line.name == "bob")
    bob = ApiKey.objects.get(name="bob")
    RepeatedThrottleCount.objects.create(
        api_key=bob, minute=dt.datetime(2026, 11, 3, 9, 30, tzinfo=dt.UTC), endpoint="/api/v2/classify", repeats=5
    )
    line = next(line for line in usage_statement(month=NOV).keys if line.name == "bob")
    assert (line.requests, line.images) == (bob_before.requests + 5, bob_before.images)
    day = next(d for d in line.by_day if d.date == dt.date(2026, 11, 3))
    assert day.requests == next(d for d in bob_before.by_day if d.date == dt.date(2026, 11, 3)).requests + 5
    assert sum(d.requests for d in line.by_day) == line.requests
