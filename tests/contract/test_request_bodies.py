"""Each content type of a classify request has a component of its own, exact about what is required and bounded.

A generator reading one shared component with every field optional builds requests the server
refuses (issue 15); these tests pin the per-content-type components, their required fields and
their bounds, read from the settings the schema is generated with.
"""

import re

import pytest
from django.conf import settings
from django.test import override_settings

from classifier.serving import process_runtime
from tests.contract.compat import resolve
from tests.contract.helpers import request_body

V1 = "/api/v1/classify"
V2 = "/api/v2/classify"
JSON = "application/json"
MULTIPART = "multipart/form-data"


@pytest.mark.parametrize(
    ("path", "content_type", "component", "required", "absent"),
    [
        (V1, JSON, "ClassifyJsonRequest", ["image"], "file"),
        (V1, MULTIPART, "ClassifyMultipartRequest", ["file"], "image"),
        (V2, JSON, "ClassifyBatchJsonRequest", ["images"], "files"),
        (V2, MULTIPART, "ClassifyBatchMultipartRequest", ["files"], "images"),
    ],
)
def test_each_content_type_has_its_own_component_with_its_image_field_required(
    served_schema,
    path,
    content_type,
    component,
    required,
    absent,
):
    name, body = request_body(served_schema, path, content_type)
    assert name == component
    assert body["required"] == required
    assert absent not in body["properties"]


@pytest.mark.parametrize(("path", "field"), [(V1, "file"), (V2, "files")])
def test_multipart_images_are_binary(served_schema, path, field):
    _, body = request_body(served_schema, path, MULTIPART)
    prop = body["properties"][field]
    assert (prop.get("items") or prop)["format"] == "binary"


def test_a_v1_json_image_must_not_be_empty(served_schema):
    _, body = request_body(served_schema, V1, JSON)
    assert body["properties"]["image"]["minLength"] == 1


def test_a_v2_json_image_item_requires_its_image(served_schema):
    _, body = request_body(served_schema, V2, JSON)
    item = resolve(served_schema, body["properties"]["images"]["items"])
    assert item["required"] == ["image"]


@pytest.mark.parametrize(("content_type", "field"), [(JSON, "images"), (MULTIPART, "files")])
def test_a_v2_batch_holds_one_to_classifier_max_batch_images(served_schema, content_type, field):
    _, body = request_body(served_schema, V2, content_type)
    images = body["properties"][field]
    assert (images["minItems"], images["maxItems"]) == (1, settings.CLASSIFIER_MAX_BATCH_IMAGES)


@pytest.mark.parametrize("content_type", [JSON, MULTIPART])
def test_v2_top_k_is_bounded_by_classifier_max_top_k(served_schema, content_type):
    _, body = request_body(served_schema, V2, content_type)
    top_k = body["properties"]["top_k"]
    assert (top_k["type"], top_k["minimum"], top_k["maximum"]) == ("integer", 1, settings.CLASSIFIER_MAX_TOP_K)
    assert "top_k" not in body["required"]


@pytest.mark.parametrize("content_type", [JSON, MULTIPART])
def test_v2_model_is_a_configured_name_or_name_at_version(served_schema, content_type):
    _, body = request_body(served_schema, V2, content_type)
    pattern = re.compile(resolve(served_schema, body["properties"]["model"])["pattern"])
    for name in process_runtime().names():
        assert pattern.match(name) and pattern.match(f"{name}@2")
    assert not pattern.match("no-such-model") and not pattern.match("no-such-model@2")


@pytest.mark.django_db
def test_the_bounds_follow_the_settings_the_schema_is_generated_with(client):
    with override_settings(CLASSIFIER_MAX_BATCH_IMAGES=4, CLASSIFIER_MAX_TOP_K=7):
        _, body = request_body(client.get("/api/schema/?format=json").json(), V2, JSON)
    assert body["properties"]["images"]["maxItems"] == 4
    assert body["properties"]["top_k"]["maximum"] == 7


def test_the_shared_input_components_are_gone(served_schema):
    components = served_schema["components"]["schemas"]
    assert "ClassifyInputRequest" not in components
    assert "ClassifyBatchInputRequest" not in components
