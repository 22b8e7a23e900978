"""Every status an operation can answer is documented, with the ErrorOutput body, an example and its headers."""

import pytest

from tests.contract.helpers import operations

QUOTA_HEADERS = {"X-RateLimit-Limit", "X-RateLimit-Remaining", "X-RateLimit-Reset", "RateLimit", "RateLimit-Policy"}
EVERY_OPERATION = {"404", "405", "408", "431"}  # 408/431: the request guard, before any view
# What each operation can answer besides 200 (classifier/api/schema.py declares them).
STATUSES = {
    ("/api/v1/classify", "post"): {"400", "401", "403", "413", "415", "429", "503"},
    ("/api/v2/classify", "post"): {"400", "401", "403", "413", "415", "429", "503"},
    ("/api/v1/usage", "get"): {"401", "429", "503"},
    ("/api/v2/usage", "get"): {"400", "401", "429", "503"},
    ("/api/v2/models", "get"): {"400", "401"},
    ("/api/v1/model/info", "get"): set(),
}
CLASSIFY = [("/api/v1/classify", "post"), ("/api/v2/classify", "post")]


def test_every_operation_documents_each_status_it_can_answer(served_schema):
    documented = {key: set(operation["responses"]) for key, operation in operations(served_schema).items()}
    assert documented == {key: {"200"} | EVERY_OPERATION | statuses for key, statuses in STATUSES.items()}


def test_every_error_answer_is_an_error_output_with_an_example_of_its_shape(served_schema):
    for key, operation in operations(served_schema).items():
        for status, response in operation["responses"].items():
            if status.startswith("2"):
                continue
            content = response["content"]["application/json"]
            assert content["schema"] == {"$ref": "#/components/schemas/ErrorOutput"}, (key, status)
            assert content["examples"], (key, status)
            for example in content["examples"].values():
                assert set(example["value"]) == {"detail", "code"}, (key, status)
            assert response["description"], (key, status)


@pytest.mark.parametrize("operation", CLASSIFY)
@pytest.mark.parametrize("status", ["200", "400", "429"])
def test_classify_answers_after_the_quota_check_document_the_quota_headers(served_schema, operation, status):
    headers = operations(served_schema)[operation]["responses"][status]["headers"]
    assert set(headers) >= QUOTA_HEADERS
    assert all(header["schema"]["type"] in {"integer", "string"} for header in headers.values())


@pytest.mark.parametrize("operation", CLASSIFY)
@pytest.mark.parametrize("status", ["429", "503"])
def test_classify_429_and_503_document_retry_after_in_seconds(served_schema, operation, status):
    headers = operations(served_schema)[operation]["responses"][status]["headers"]
    assert headers["Retry-After"]["schema"] == {"type": "integer"}


def test_the_403_example_is_the_model_access_refusal(served_schema):
    for operation in CLASSIFY:
        examples = operations(served_schema)[operation]["responses"]["403"]["content"]["application/json"]["examples"]
        assert [example["value"]["code"] for example in examples.values()] == ["model_not_allowed"]
