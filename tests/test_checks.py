"""Wrong combinations of settings fail at start: the system checks name the rule, and the ASGI start refuses."""

import pytest
from django.core.exceptions import ImproperlyConfigured
from django.test import override_settings

from classifier.checks import run_start_checks, settings_agree


def test_the_default_configuration_breaks_no_rule():
    assert settings_agree() == []


def test_a_queue_smaller_than_a_request_but_holding_one_group_is_accepted():
    """A request's images are queued a group (CLASSIFIER_MAX_BATCH_SIZE) at a time, so the queue need not hold all."""
    with override_settings(CLASSIFIER_QUEUE_SIZE=12, CLASSIFIER_MAX_BATCH_SIZE=8, CLASSIFIER_MAX_BATCH_IMAGES=16):
        assert settings_agree() == []


@pytest.mark.parametrize(
    "overrides,check_id",
    [
        ({"CLASSIFIER_QUEUE_SIZE": 4, "CLASSIFIER_MAX_BATCH_SIZE": 8}, "classifier.E010"),
        (
            {"CLASSIFIER_QUEUE_SIZE": 2, "CLASSIFIER_MAX_BATCH_SIZE": 8, "CLASSIFIER_MAX_BATCH_IMAGES": 3},
            "classifier.E010",
        ),
        ({"CLASSIFIER_MAX_BATCH_IMAGES": 32}, "classifier.E011"),  # DATA_UPLOAD_MAX_NUMBER_FILES is 32
        ({"CLASSIFIER_TOP_K": 30, "CLASSIFIER_MAX_TOP_K": 20}, "classifier.E012"),
        ({"CLASSIFIER_TOP_K": 0}, "classifier.E012"),
        ({"CLASSIFIER_MAX_BATCH_SIZE": 0}, "classifier.E013"),
        ({"WEB_CONCURRENCY": 0}, "classifier.E014"),
        ({"CLASSIFIER_MAX_IMAGE_PIXELS": 40_000_000, "CLASSIFIER_DECODE_BUDGET_MEGAPIXELS": 39}, "classifier.E015"),
    ],
)
def test_a_wrong_combination_is_an_error_that_stops_the_start(overrides, check_id):
    with override_settings(**overrides):
        assert [message.id for message in settings_agree()] == [check_id]
        with pytest.raises(ImproperlyConfigured, match=check_id):
            run_start_checks()
