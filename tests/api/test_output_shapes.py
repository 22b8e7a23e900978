"""The answers' serializers build their dicts directly; they must give what the declared fields give."""

import datetime as dt

import pytest
from rest_framework import serializers

from classifier.api.exceptions import InvalidImage
from classifier.api.serializers import (
    ClassifyBatchInput,
    ClassifyBatchOutput,
    ClassifyOutput,
    ImageItemInput,
    image_results,
    plain_item,
)
from classifier.runtime.preprocessing import Prediction
from classifier.services import Classification

PREDICTIONS = [Prediction("tabby", 0.8123), Prediction("tiger cat", 0.1)]


def declared(serializer_class, instance):
    """DRF's own walk over the declared fields (what the schema promises)."""
    return serializers.Serializer.to_representation(serializer_class(), instance)


def test_v1_answer_matches_its_declared_fields():
    instance = Classification(model="resnet18", model_version="2", predictions=PREDICTIONS)
    assert ClassifyOutput(instance).data == declared(ClassifyOutput, instance)
    assert list(ClassifyOutput(instance).data) == ["model", "model_version", "predictions"]


def test_v2_answer_matches_its_declared_fields_with_results_and_errors():
    instance = {
        "id": "abc",
        "model": "resnet18",
        "model_version": "settings",
        "engine": {
            "name": "openvino",
            "precision": "int8",
            "exact": False,
            "agreement": {
                "images": 48,
                "top1": 0.9792,
                "top5_overlap": 0.9875,
                "max_confidence_difference": 0.061,
                "measured_on": "48 images of the folder's calibration/",
            },
        },
        "created": dt.datetime(2026, 11, 22, 21, 45, 4, 123456, tzinfo=dt.UTC),
        "processing_time_ms": 41.7,
        "results": image_results(
            ["a.png", "b.txt"], [PREDICTIONS, InvalidImage("Not an image.", code="invalid_image")]
        ),
    }
    fast = ClassifyBatchOutput(instance).data
    assert fast == declared(ClassifyBatchOutput, instance)
    exact = {**instance, "engine": {"name": "onnxruntime", "precision": "fp32", "exact": True, "agreement": None}}
    assert ClassifyBatchOutput(exact).data == declared(ClassifyBatchOutput, exact)
    assert fast["created"] == "2026-11-22T21:45:04.123456Z"
    assert [list(result) for result in fast["results"]] == [
        ["index", "filename", "predictions"],
        ["index", "filename", "error"],
    ]


# --- the v2 items' fast reading (ImageItemList) ------------------------------------------------

PLAIN_ITEMS = [
    {"image": " abc "},
    {"image": "abc", "filename": " f.jpg "},
    {"image": ""},
    {"image": "a", "filename": ""},
    {"image": "a", "filename": "f" * 255},
    {"image": "a", "filename": "fïsh 🐟.jpg"},
]
OTHER_ITEMS = [
    {"image": 1},
    {"image": "a\x00"},
    {"image": "a", "filename": "f" * 256},
    {"image": "a", "filename": None},
    {"image": "a", "filename": 7},
    {"image": "a", "filename": "\ud800"},
    {"image": "a", "filename": "a\x00"},
    {"filename": "x"},
    {"image": "a", "note": 1},
    "a string",
    None,
]


@pytest.mark.parametrize("item", PLAIN_ITEMS)
def test_a_plain_item_reads_as_the_item_serializer_reads_it(item):
    assert plain_item(item) == dict(ImageItemInput().run_validation(item))


@pytest.mark.parametrize("item", OTHER_ITEMS)
def test_any_other_item_is_left_to_the_item_serializer(item):
    assert plain_item(item) is None


def test_the_images_list_answers_what_the_item_serializer_answers():
    items = [*PLAIN_ITEMS, *OTHER_ITEMS]
    fast = ClassifyBatchInput(data={"images": items})
    assert not fast.is_valid()
    assert fast.errors["images"] == {
        index: _item_errors(item) for index, item in enumerate(items) if _item_errors(item)
    }
    valid = ClassifyBatchInput(data={"images": PLAIN_ITEMS + [{"image": 1}]})
    assert valid.is_valid() and valid.validated_data["images"][-1] == {"image": "1"}  # DRF's CharField reads a number


def _item_errors(item):
    """What DRF's ListSerializer records for ``item`` through ImageItemInput alone: its errors, or None."""
    try:
        ImageItemInput().run_validation(item)
    except serializers.ValidationError as exc:
        return exc.detail
    return None
