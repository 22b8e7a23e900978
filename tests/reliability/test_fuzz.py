"""Property-based fuzzing of the OpenAPI schema: no 5xx, and every answer is one the schema documents.

Schemathesis generates requests for every operation (valid and invalid ones) and sends them to
the project's own applications in-process, against pytest-django's database (SQLite, or
PostgreSQL and Redis in CI's second pass):

- the WSGI application, in the test's thread, inside the test's transaction;
- the deployed entry point, ``aiserver.asgi.application`` (the body-size guard in front of our
  ASGI handler), on schemathesis's event loop thread and the handler's request threads, which
  use connections of their own, so that test commits its key (``transaction=True``).

Every request carries a valid key whose limit no run reaches, so a 429 cannot hide a bug (one
would still have to match the schema). ``test_the_fuzzed_schema_is_the_one_served`` ties the
document fuzzed here to the one ``/api/schema/`` serves.
"""

import pytest
import schemathesis
from django.core import signals
from django.core.wsgi import get_wsgi_application
from django.db import close_old_connections
from drf_spectacular.generators import SchemaGenerator
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error
from schemathesis.generation import GenerationMode
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    positive_data_acceptance,
    response_schema_conformance,
    status_code_conformance,
)

import aiserver.asgi

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("loaded_model")]

CHECKS = [not_a_server_error, response_schema_conformance, status_code_conformance, content_type_conformance]
# Generated examples per operation: every validation branch is reached; the run takes seconds on two cores.
MAX_EXAMPLES = 40
FUZZ_SETTINGS = settings(
    max_examples=MAX_EXAMPLES,
    deadline=None,
    derandomize=True,  # the same examples on every CI run, so a failure reproduces
    database=None,
    suppress_health_check=list(HealthCheck),
)


def openapi_document() -> dict:
    """The document /api/schema/ serves, built without a request (so without a database at collection).

    ``schemathesis.openapi.from_wsgi`` would fetch it over HTTP at collection, but that request
    is logged, and pytest-django allows no database there; ``schemathesis.pytest.from_fixture``
    (4.32.5) breaks on pytest 9's node ids.
    """
    return SchemaGenerator().get_schema(request=None, public=True)


schema = schemathesis.openapi.from_dict(openapi_document())
schema.app = get_wsgi_application()  # what from_wsgi sets: calls go to the app in-process
# Only requests the schema allows: each must be accepted (positive_data_is_accepted).
positive_schema = schemathesis.openapi.from_dict(openapi_document())
positive_schema.app = schema.app
positive_schema.config.generation.update(modes=[GenerationMode.POSITIVE])
asgi_schema = schemathesis.openapi.from_dict(openapi_document())
asgi_schema.app = aiserver.asgi.application  # what from_asgi sets: schemathesis calls an async app through ASGI


# What an OpenAPI schema cannot say, so a request that matches it may still be refused for it (400/413 with
# these codes): whether bytes are an image (and how many pixels it has), and how query parameters relate
# (since before until and at most ACCOUNTS_USAGE_MAX_RANGE_DAYS apart; days or since/until), and which
# version of a model is served now (`name@version` is in the schema as a pattern; another version is 404).
BEYOND_THE_SCHEMA = {
    "invalid_image",
    "invalid_base64",
    "empty_image",
    "image_too_large",
    "invalid_range",
    "range_too_long",
    "model_not_found",
}


NO_IMAGE_CODES = ("no_images", "missing_image")  # v2's and v1's answer to a request without an image


def positive_data_is_accepted(ctx, response, case):
    """schemathesis's positive_data_acceptance, less the refusals in BEYOND_THE_SCHEMA and the empty file parts
    of the in-process WSGI client."""
    if response.status_code in (400, 404, 413) and response.json().get("code") in BEYOND_THE_SCHEMA:
        return True
    if response.status_code == 400 and response.json().get("code") in NO_IMAGE_CODES and _only_empty_files(case):
        return True
    return positive_data_acceptance(ctx, response, case)


def _only_empty_files(case) -> bool:
    """Whether a multipart case's files are all empty. werkzeug, which builds the in-process request, writes an
    empty part's closing boundary straight after its headers, with no line break between; Django's parser reads
    no part there, so the request has no files (400 no_images; v1's single file: 400 missing_image). A real client sends the line break, and an empty
    file gets its own empty_image error (tests/api/test_v2_classify.py)."""
    body = case.body if isinstance(case.body, dict) else {}
    files = body.get("files") or ([body["file"]] if "file" in body else None)  # v2's parts, or v1's one
    return bool(files) and all(not part for part in files)


@pytest.fixture
def in_test_transaction():
    """Requests keep the test's database connection, as Django's test client arranges for its own.

    The WSGI handler closes connections when a request starts and finishes; inside the test's
    transaction that hands a pooled PostgreSQL connection back mid-test.
    """
    for signal in (signals.request_started, signals.request_finished):
        signal.disconnect(close_old_connections)
    yield
    for signal in (signals.request_started, signals.request_finished):
        signal.connect(close_old_connections)


@pytest.fixture
def fuzz_key(make_key):
    """A valid key whose limit no fuzz run can reach."""
    return make_key(name="fuzz", rate_limit=1_000_000, rate_window_seconds=60)[1]


def test_the_fuzzed_schema_is_the_one_served(client):
    assert client.get("/api/schema/?format=json").json() == schema.raw_schema


@schema.parametrize()
@FUZZ_SETTINGS
def test_every_operation_answers_within_its_schema(case, fuzz_key, in_test_transaction):
    case.call_and_validate(headers={"Authorization": f"Bearer {fuzz_key}"}, checks=CHECKS)


@positive_schema.parametrize()
@FUZZ_SETTINGS
def test_every_request_the_schema_allows_is_accepted(case, fuzz_key, in_test_transaction):
    case.call_and_validate(headers={"Authorization": f"Bearer {fuzz_key}"}, checks=[positive_data_is_accepted])


@pytest.mark.django_db(transaction=True)  # the request threads must see the committed key
@asgi_schema.parametrize()
@FUZZ_SETTINGS
def test_every_operation_answers_within_its_schema_through_the_asgi_entry_point(case, fuzz_key):
    case.call_and_validate(headers={"Authorization": f"Bearer {fuzz_key}"}, checks=CHECKS)
