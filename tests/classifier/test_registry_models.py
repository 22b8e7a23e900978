import pytest
from django.test import override_settings

from classifier.registry import model_specs


@pytest.mark.parametrize(
    "overrides,specs",
    [
        ({}, [("resnet18", "W")]),
        ({"CLASSIFIER_MODELS": ["resnet18", "mobilenet_v3_small=random"]}, [("resnet18", "W"), ("mobilenet_v3_small", "random")]),
        ({"CLASSIFIER_MODELS": ["resnet18=/w/r.pt", "resnet18"]}, [("resnet18", "/w/r.pt")]),
        ({"CLASSIFIER_MODELS": ["alexnet", " vgg11 "]}, [("resnet18", "W"), ("alexnet", "W"), ("vgg11", "W")]),
    ],
)
def test_model_specs_put_the_v1_model_first_once(overrides, specs):
    with override_settings(**{"CLASSIFIER_MODEL": "resnet18", "CLASSIFIER_WEIGHTS": "W", "CLASSIFIER_MODELS": [], **overrides}):
        assert model_specs() == specs
