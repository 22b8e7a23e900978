"""The committed code list (docs/error-codes.md) is the generated one, and lists every code the API raises."""

import inspect
import re
from pathlib import Path

from django.conf import settings
from rest_framework.exceptions import APIException

from classifier.api import exceptions

CODE_LIST = Path(settings.BASE_DIR) / "docs" / "error-codes.md"


def test_the_committed_code_list_is_the_generated_one():
    assert CODE_LIST.read_text() == exceptions.error_codes_markdown(), "run `make schema`"


def test_every_code_the_api_can_raise_is_listed():
    listed = set(re.findall(r"^\| `([a-z_]+)` \|", CODE_LIST.read_text(), re.MULTILINE))
    declared = {
        cls.default_code
        for _, cls in inspect.getmembers(exceptions, inspect.isclass)
        if issubclass(cls, APIException) and cls.__module__ == exceptions.__name__
    } - {"error"}  # RetryLater's, a base class
    api_source = "".join(path.read_text() for path in Path(exceptions.__file__).parent.rglob("*.py"))
    raised = set(re.findall(r'\bcode="([a-z_]+)"', api_source))
    assert declared <= listed and raised <= listed
    assert {"invalid_api_key", "too_many_images", "model_not_allowed", "overloaded", "server_error"} <= listed


def test_each_code_has_its_status_and_a_meaning():
    codes = exceptions.error_codes()
    assert codes["model_not_allowed"][0] == 403 and codes["request_timeout"][0] == 408
    assert codes["invalid_api_key"] == (401, "Invalid, revoked or expired API key.")
    assert all(meaning for _, meaning in codes.values())
