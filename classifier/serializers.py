"""Request validation and response shapes of the classification API."""
import base64
import binascii
import re

from rest_framework import serializers

_DATA_URL = re.compile(r"^data:image/[a-zA-Z0-9.+-]+;base64,")
_WHITESPACE = re.compile(r"\s+")


def decode_base64_image(value: str, *, field: str) -> bytes:
    """Decode a base64 image string (a ``data:image/...;base64,`` prefix is allowed)."""
    payload = _WHITESPACE.sub("", _DATA_URL.sub("", value, count=1))
    try:
        data = base64.b64decode(payload, validate=True)
    except (binascii.Error, ValueError):
        raise serializers.ValidationError({field: ["Not valid base64."]}, code="invalid_base64") from None
    if not data:
        raise serializers.ValidationError({field: ["The image is empty."]}, code="empty_image")
    return data


class ClassifyInput(serializers.Serializer):
    """JSON ``{"image": "<base64>", "filename"?}`` or multipart with the image in ``file``."""

    image = serializers.CharField(
        required=False, trim_whitespace=True, help_text="Base64 image; a data:image/...;base64, prefix is accepted."
    )
    file = serializers.FileField(required=False, help_text="The image file (multipart/form-data).")
    filename = serializers.CharField(required=False, max_length=255, allow_blank=True)

    def validate(self, attrs):
        if ("image" in attrs) == ("file" in attrs):
            raise serializers.ValidationError(
                "Send exactly one image: JSON field 'image' (base64) or multipart field 'file'.", code="missing_image"
            )
        return attrs

    def image_bytes(self) -> bytes:
        """The validated image's raw bytes; raises ValidationError (400) for bad base64 or an empty file."""
        if "image" in self.validated_data:
            return decode_base64_image(self.validated_data["image"], field="image")
        data = self.validated_data["file"].read()
        if not data:
            raise serializers.ValidationError({"file": ["The file is empty."]}, code="empty_image")
        return data


class PredictionOutput(serializers.Serializer):
    label = serializers.CharField()
    confidence = serializers.FloatField(min_value=0.0, max_value=1.0, help_text="Probability, 4 decimal places.")


class ClassifyOutput(serializers.Serializer):
    model = serializers.CharField()
    predictions = PredictionOutput(many=True, help_text="Highest confidence first.")


class ModelInfoOutput(serializers.Serializer):
    name = serializers.CharField()
    status = serializers.ChoiceField(choices=["loaded", "loading", "unavailable"])
    reason = serializers.CharField(allow_blank=True, help_text="Why the model is not loaded, when it is not.")
    weights = serializers.CharField(help_text="'default' (pretrained), 'random' (untrained) or a state_dict file.")
    pretrained = serializers.BooleanField(allow_null=True)
    num_labels = serializers.IntegerField(allow_null=True)
    input_size = serializers.IntegerField(allow_null=True)
    device = serializers.CharField(allow_null=True)
    top_k = serializers.IntegerField()


class ApiKeyOutput(serializers.Serializer):
    name = serializers.CharField()
    prefix = serializers.CharField()
    rate_limit = serializers.IntegerField()
    rate_window_seconds = serializers.IntegerField()
    created_at = serializers.DateTimeField()
    expires_at = serializers.DateTimeField(allow_null=True)


class UsageOutput(serializers.Serializer):
    key = ApiKeyOutput()
    total_requests = serializers.IntegerField()
    successful_requests = serializers.IntegerField()
    success_rate = serializers.FloatField(help_text="Percent of requests answered 2xx, 2 places.")
    avg_response_time_ms = serializers.FloatField()


class ErrorOutput(serializers.Serializer):
    detail = serializers.CharField()
    code = serializers.CharField()


class StatusOutput(serializers.Serializer):
    status = serializers.CharField()
