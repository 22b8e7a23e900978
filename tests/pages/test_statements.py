"""The statement download (/staff/statements/) and the dashboard's plan chart: staff with the view permissions
only, CSV and JSON, bad input a 400 in the one error shape."""

import csv
import datetime as dt
import io

import pytest
from django.contrib.auth.models import User
from django.test import Client

from accounts.models import RequestLog
from accounts.services import api_key_create, plan_create
from tests.pages.test_pages import logged_in, staff_user

pytestmark = pytest.mark.django_db
STATEMENT_PERMISSIONS = ("accounts.view_requestlog", "accounts.view_apikey", "accounts.view_plan")
URL = "/staff/statements/"


@pytest.fixture
def statement_client():
    return logged_in(staff_user(permissions=STATEMENT_PERMISSIONS))


@pytest.fixture
def november():
    plan = plan_create(name="pro", monthly_images=10, overage="allow", price_per_1000_images="1000")
    api_key = api_key_create(name="customer", plan=plan)[0]
    RequestLog.objects.create(
        api_key=api_key,
        endpoint="/api/v2/classify",
        method="POST",
        status_code=200,
        response_time_ms=3.0,
        created_at=dt.datetime(2026, 11, 30, 23, 59, 59, 999000, tzinfo=dt.UTC),
        images=3,
        model_name="resnet18",
    )
    return api_key


def test_csv_download_of_a_month(statement_client, november):
    response = statement_client.get(URL, {"month": "2026-11", "format": "csv"})
    assert response.status_code == 200 and response["Content-Type"].startswith("text/csv")
    assert response["Content-Disposition"] == 'attachment; filename="statement-2026-11.csv"'
    rows = list(csv.DictReader(io.StringIO(response.content.decode())))
    key = next(row for row in rows if row["kind"] == "key")
    assert (key["key_name"], key["plan"], key["images"], key["amount"]) == ("customer", "pro", "3", "3.00")


def test_json_download_of_a_month(statement_client, november):
    response = statement_client.get(URL, {"month": "2026-11", "format": "json"})
    assert response.status_code == 200 and response.json()["images"] == 3
    assert statement_client.get(URL, {"month": "2026-12", "format": "json"}).json()["images"] == 0


@pytest.mark.parametrize(
    ("query", "code"),
    [
        ({"month": "2026-13"}, "invalid_month"),
        ({"month": "2026-1"}, "invalid_month"),
        ({"month": "x" * 5000}, "invalid_month"),
        ({"month": "2026-11", "format": "xlsx"}, "invalid_format"),
    ],
)
def test_bad_input_is_400_json(statement_client, query, code):
    response = statement_client.get(URL, query)
    assert response.status_code == 400 and response.json()["code"] == code
    assert "detail" in response.json()


def test_anyone_but_staff_is_sent_to_the_login(db):
    assert Client().get(URL)["Location"].startswith("/admin/login/")
    client = Client()
    client.force_login(User.objects.create_user("customer", password="pw-for-tests-only"))
    assert client.get(URL).status_code == 302


def test_staff_without_the_plan_permission_get_403(db):
    client = logged_in(staff_user(permissions=("accounts.view_requestlog", "accounts.view_apikey")))
    assert client.get(URL, {"month": "2026-11"}).status_code == 403


def test_the_dashboard_charts_each_plans_use_against_its_allowance(statement_client, db):
    plan = plan_create(name="free", monthly_images=4)
    for name in ("a", "b"):
        api_key = api_key_create(name=name, plan=plan)[0]
        RequestLog.objects.create(
            api_key=api_key, endpoint="/api/v1/classify", method="POST", status_code=200, response_time_ms=1, images=1
        )
    html = statement_client.get("/staff/usage/").content.decode()
    assert 'id="plan-use"' in html
    assert '<meter class="plan-bar" min="0" max="100" high="90" value="25.0"' in html  # 2 of 2 x 4
    assert 'href="/staff/statements/?month=' in html
