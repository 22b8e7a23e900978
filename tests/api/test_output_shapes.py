"""The answers' serializers build their dicts directly; they must give what the declared fields give."""

import datetime as dt

from rest_framework import serializers

from classifier.api.exceptions import InvalidImage
from classifier.api.serializers import ClassifyBatchOutput, ClassifyOutput, image_results
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
