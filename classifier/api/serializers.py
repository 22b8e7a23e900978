"""Request validation and response shapes of the classification API."""

import binascii
import datetime as dt
import re

import pybase64
from django.conf import settings
from django.utils import timezone
from rest_framework import serializers
from rest_framework.exceptions import APIException
from rest_framework.validators import ProhibitSurrogateCharactersValidator

from ..runtime.errors import ServingError
from ..runtime.kinds import ArtifactKind, EngineKind, ModelStatus, Precision, Provenance
from ..runtime.preprocessing import CropMode, CropRounding, PreprocessingSource
from ..serving import process_runtime
from .exceptions import InvalidImage, api_error, error_body, first_error

_DATA_URL = re.compile(r"^data:image/[a-zA-Z0-9.+-]+;base64,")
_WHITESPACE = re.compile(r"\s+")


def decode_base64_image(value: str, *, field: str) -> bytes:
    """Decode a base64 image string (a ``data:image/...;base64,`` prefix and line breaks are allowed)."""
    payload = _DATA_URL.sub("", value, count=1)
    try:
        data = _strict_b64decode(payload)
    except (binascii.Error, ValueError):
        try:  # the rare wrapped base64 (MIME line breaks): strip the whitespace, try again
            data = _strict_b64decode(_WHITESPACE.sub("", payload))
        except (binascii.Error, ValueError):
            raise serializers.ValidationError({field: ["Not valid base64."]}, code="invalid_base64") from None
    if not data:
        raise serializers.ValidationError({field: ["The image is empty."]}, code="empty_image")
    return data


def _strict_b64decode(payload: str) -> bytes:
    """Strict base64 (no characters outside the alphabet) with pybase64's SIMD decoder: 4 us for a 112 KB image
    where the standard library's takes 240 us (binascii.Error, a ValueError, on bad input, as the standard one)."""
    return pybase64.b64decode(payload, validate=True)


class Base64ImageField(serializers.CharField):
    """A base64 image string. DRF's CharField scans every character in Python for lone surrogates
    (~3 ms for a 125 KB image); strict base64 decoding rejects every non-ASCII character anyway, in C."""

    def __init__(self, **kwargs):
        kwargs.setdefault("help_text", "Base64 image; a data:image/...;base64, prefix is accepted.")
        super().__init__(trim_whitespace=True, **kwargs)
        self.validators = [v for v in self.validators if not isinstance(v, ProhibitSurrogateCharactersValidator)]


class ClassifyInput(serializers.Serializer):
    """JSON ``{"image": "<base64>", "filename"?}`` or multipart with the image in ``file``."""

    image = Base64ImageField(required=False)
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


def _predictions(predictions) -> list[dict]:
    return [{"label": str(p.label), "confidence": float(p.confidence)} for p in predictions]


MODEL_VERSION_HELP = (
    'The version that answered: a registered version (docs/models.md, "Model versions"), or '
    '"settings" for a model configured in CLASSIFIER_MODELS.'
)


class ClassifyOutput(serializers.Serializer):
    model = serializers.CharField()
    model_version = serializers.CharField(help_text=MODEL_VERSION_HELP)
    predictions = PredictionOutput(many=True, help_text="Highest confidence first.")

    def to_representation(self, instance) -> dict:
        """What the declared fields give (they are the schema), built directly: DRF's walk over the
        fields deep-copies and visits every one of them on each answer (~0.3 ms of CPU for v1)."""
        return classification_body(instance)


def classification_body(instance) -> dict:
    """A v1 classification answer (ClassifyOutput's fields) from a services.Classification."""
    return {
        "model": str(instance.model),
        "model_version": str(instance.model_version),
        "predictions": _predictions(instance.predictions),
    }


class CompiledOutput(serializers.Serializer):
    provenance = serializers.ChoiceField(
        choices=[provenance.value for provenance in Provenance],
        help_text="'compiled here' (this process compiled it on start), 'loaded compiled' (it loaded an artifact "
        "compiled before: no torch, no export, no check at start) or 'built in process' (eager torch).",
    )
    artifact_key = serializers.CharField(
        allow_null=True, help_text="The compiled artifact's name: the sha256 of its inputs and the engine's version."
    )
    agreement_max_difference = serializers.FloatField(
        allow_null=True, help_text="The compiled engine's largest probability difference from eager torch fp32."
    )
    compile_seconds = serializers.FloatField(allow_null=True, help_text="How long compiling took.")
    fast_mode = serializers.DictField(
        allow_null=True,
        help_text="For an inexact precision (bf16, int8): its agreement with fp32 measured when it was compiled "
        "(top1, top5_overlap, max_confidence_difference, on which images) and both speeds; null for exact engines.",
    )


class ResizeOutput(serializers.Serializer):
    mode = serializers.ChoiceField(
        choices=[mode.value for mode in CropMode],
        help_text="center: the short side to size, aspect kept; squash: both sides to size; border: the long side "
        "to size, padded with the mean colour.",
    )
    size = serializers.IntegerField()


class CropOutput(serializers.Serializer):
    size = serializers.IntegerField(help_text="The centre crop's side: the model's input is size x size.")
    rounding = serializers.ChoiceField(
        choices=[rounding.value for rounding in CropRounding],
        help_text="Where an odd margin goes: round (torchvision, timm) or floor (Hugging Face).",
    )


class PreprocessingOutput(serializers.Serializer):
    resize = ResizeOutput()
    crop = CropOutput()
    interpolation = serializers.CharField(help_text="Pillow's resampling filter: bilinear, bicubic, ...")
    rescale = serializers.FloatField(help_text="Pixels are multiplied by this (1/255) before the mean and std.")
    mean = serializers.ListField(child=serializers.FloatField(), min_length=3, max_length=3)
    std = serializers.ListField(child=serializers.FloatField(), min_length=3, max_length=3)
    channels = serializers.ChoiceField(choices=["RGB", "BGR"])
    draft = serializers.BooleanField(
        help_text="Whether large JPEGs are shrunk in the decoder (faster, slightly other answers); off unless the "
        "model's config.json asks for it."
    )
    source = serializers.ChoiceField(
        choices=[source.value for source in PreprocessingSource],
        help_text="Where it came from: the folder's config.json, the model's library (torchvision weights, timm, "
        "a transformers image processor) or ImageNet's defaults.",
    )


class ModelDescriptionOutput(serializers.Serializer):
    """What the server says about one configured model (the ``None`` fields are null until it loads)."""

    name = serializers.CharField()
    version = serializers.CharField(help_text=MODEL_VERSION_HELP.replace("that answered", "this server serves"))
    status = serializers.ChoiceField(choices=[status.value for status in ModelStatus])
    reason = serializers.CharField(allow_blank=True, help_text="Why the model is not loaded, when it is not.")
    weights = serializers.CharField(
        help_text="'default' (pretrained), 'random' (untrained), 'file:NAME' (a state_dict), 'folder:NAME' (a model "
        "folder) or 'version:V' (a registered version)."
    )
    pretrained = serializers.BooleanField(allow_null=True)
    num_labels = serializers.IntegerField(allow_null=True, help_text="How many labels the model answers with.")
    input_size = serializers.IntegerField(allow_null=True)
    device = serializers.CharField(allow_null=True)
    artifact = serializers.ChoiceField(
        choices=[kind.value for kind in ArtifactKind],
        allow_null=True,
        help_text="What the model was loaded from: a torchvision name, a model folder (state_dict, torchscript, onnx) "
        "or a folder as timm or transformers saved it.",
    )
    engine = serializers.ChoiceField(
        choices=[kind.value for kind in EngineKind if kind != EngineKind.AUTO],
        allow_null=True,
        help_text="What runs it.",
    )
    precision = serializers.ChoiceField(
        choices=[precision.value for precision in Precision if precision != Precision.AUTO], allow_null=True
    )
    exact = serializers.BooleanField(
        allow_null=True, help_text="Whether its answers agree with eager fp32 torch within 1e-4 (fp32 engines)."
    )
    compiled = CompiledOutput(allow_null=True, help_text="How this server got the model's engine (null until loaded).")
    preprocessing = PreprocessingOutput(
        allow_null=True, help_text="What is done to an image before the model sees it (null until loaded)."
    )


class ModelInfoOutput(ModelDescriptionOutput):
    top_k = serializers.IntegerField()


class ApiKeyOutput(serializers.Serializer):
    name = serializers.CharField()
    prefix = serializers.CharField()
    rate_limit = serializers.IntegerField(source="effective_rate_limit", help_text="Its own, else its plan's.")
    rate_window_seconds = serializers.IntegerField(source="effective_rate_window_seconds")
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


# --- v2 -------------------------------------------------------------------------------------


MAX_FILENAME_LENGTH = 255


class ImageItemList(serializers.ListSerializer):
    """The v2 ``images`` list. An item that is plainly valid is read directly, as ImageItemInput reads it: a dict
    of a string ``image`` without a null character and, if sent, a ``filename`` string that is short and plain.
    Any other item goes through ImageItemInput, whose errors are the answer. DRF's per-field machinery costs
    about 0.06 ms an item, an eighth of the per-image overhead budget (docs/performance.md);
    tests/api/test_output_shapes.py holds both ways to the same result."""

    def run_child_validation(self, data):
        item = plain_item(data)
        return item if item is not None else super().run_child_validation(data)


def plain_item(data) -> dict | None:
    """ImageItemInput's validated data for an item that plainly passes it; None for any other item."""
    if type(data) is not dict or not data.keys() <= {"image", "filename"}:
        return None
    image = data.get("image")
    if type(image) is not str or "\x00" in image:
        return None
    item = {"image": image.strip()}
    if "filename" in data:
        filename = data["filename"]
        if type(filename) is not str:
            return None
        filename = filename.strip()
        if len(filename) > MAX_FILENAME_LENGTH or not plain_text(filename):
            return None
        item["filename"] = filename
    return item


def plain_text(text: str) -> bool:
    """No null character and no lone surrogate: DRF's CharField refuses those."""
    if "\x00" in text:
        return False
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:  # only a lone surrogate cannot be encoded
        return False
    return True


class ImageItemInput(serializers.Serializer):
    image = Base64ImageField(allow_blank=True)
    filename = serializers.CharField(required=False, max_length=MAX_FILENAME_LENGTH, allow_blank=True)

    class Meta:
        list_serializer_class = ImageItemList


class ClassifyBatchInput(serializers.Serializer):
    """The v2 envelope: JSON ``images`` or multipart ``files``, ``top_k``, ``model``.

    Envelope errors are 400 for the whole request; an unreadable image is that image's own
    error (see ``images``).
    """

    images = ImageItemInput(many=True, required=False, help_text="JSON: the images, inline (never URLs).")
    files = serializers.ListField(
        child=serializers.FileField(allow_empty_file=True), required=False, help_text="multipart: one field per image."
    )
    top_k = serializers.IntegerField(required=False, help_text="Predictions per image, 1..CLASSIFIER_MAX_TOP_K (20).")
    model = serializers.CharField(
        required=False,
        help_text="A name from /api/v2/models (default: the first), or name@version to insist on "
        "a version: the one being served, else 404 model_not_found (a staged or retired version is never served).",
    )

    def validate_top_k(self, value: int) -> int:
        if not 1 <= value <= settings.CLASSIFIER_MAX_TOP_K:
            raise serializers.ValidationError(
                f"Must be between 1 and {settings.CLASSIFIER_MAX_TOP_K}.", code="invalid_top_k"
            )
        return value

    def validate_model(self, value: str) -> str:
        """A loaded model's name (or name@version). The error names only the models the caller's key (the
        ``api_key`` in the context) may use; a name it may not use passes, for ModelIsAllowed to refuse with
        403 whether or not it exists, so a key learns nothing of the models it may not use."""
        api_key = self.context.get("api_key")
        name = value.partition("@")[0]
        if api_key is not None and not api_key.may_use_model(name):
            return value
        names = [known for known in process_runtime().names() if api_key is None or api_key.may_use_model(known)]
        if name not in names:
            raise serializers.ValidationError(
                f"Unknown model {name!r}; this server has {', '.join(names)}.", code="unknown_model"
            )
        return value

    def model_choice(self) -> tuple[str | None, str | None]:
        """(name, version) the request asks for; None for what it leaves to the server."""
        model = self.validated_data.get("model")
        if model is None:
            return None, None
        name, at, version = model.partition("@")
        return name, (version if at else None)

    def validate(self, attrs):
        if ("images" in attrs) == ("files" in attrs):
            raise serializers.ValidationError(
                "Send the images as JSON 'images' or as multipart 'files', not both or neither.", code="no_images"
            )
        count = len(attrs.get("images") or attrs.get("files") or [])
        if count == 0:
            raise serializers.ValidationError("The batch has no images.", code="no_images")
        if count > settings.CLASSIFIER_MAX_BATCH_IMAGES:
            raise serializers.ValidationError(
                f"The batch has {count} images; at most {settings.CLASSIFIER_MAX_BATCH_IMAGES} are accepted per request.",
                code="too_many_images",
            )
        attrs.setdefault("top_k", settings.CLASSIFIER_TOP_K)
        return attrs

    def filenames(self) -> list[str]:
        if "images" in self.validated_data:
            return [item.get("filename", "") for item in self.validated_data["images"]]
        return [upload.name or "" for upload in self.validated_data["files"]]

    def image_data(self) -> list[bytes | APIException]:
        """Each image's bytes, or in its place the error that makes it unreadable (bad base64, empty)."""
        if "images" in self.validated_data:
            return item_images(self.validated_data["images"])
        return [
            upload.read() or InvalidImage("The file is empty.", code="empty_image")
            for upload in self.validated_data["files"]
        ]


def item_images(items: list[dict]) -> list[bytes | APIException]:
    """Each validated JSON item's image bytes, or in its place the error that makes it unreadable."""
    return [_decode_item(item["image"]) for item in items]


def _decode_item(value: str) -> bytes | APIException:
    if not value:
        return InvalidImage("The image is empty.", code="empty_image")
    try:
        return decode_base64_image(value, field="image")
    except serializers.ValidationError as exc:
        message, code = first_error(exc.detail, name_field=False)
        return InvalidImage(message, code=code)


class ImageErrorOutput(serializers.Serializer):
    """One image's error, in the API's one error shape (ErrorOutput's detail and code)."""

    detail = serializers.CharField()
    code = serializers.CharField()
    message = serializers.CharField(help_text="Deprecated: the same as detail, kept for one release; read detail.")


class ImageResultOutput(serializers.Serializer):
    index = serializers.IntegerField(help_text="Position in the request, from 0.")
    filename = serializers.CharField(allow_blank=True)
    predictions = PredictionOutput(many=True, required=False, help_text="Highest confidence first (absent on error).")
    error = ImageErrorOutput(required=False, help_text="Why this image was not classified (absent on success).")


class AgreementOutput(serializers.Serializer):
    """A fast mode's agreement with fp32, as its compile gate measured it on the operator's images."""

    images = serializers.IntegerField(help_text="How many images were compared.")
    top1 = serializers.FloatField(help_text="The share of them whose top-1 class is fp32's.")
    top5_overlap = serializers.FloatField(help_text="The mean share of fp32's top 5 found in this engine's top 5.")
    max_confidence_difference = serializers.FloatField(help_text="The largest |p - p_fp32| over every image and class.")
    measured_on = serializers.CharField(
        help_text="Which images: the model folder's calibration/ images, or the gate's generated pictures."
    )


class EngineOutput(serializers.Serializer):
    name = serializers.ChoiceField(
        choices=[kind.value for kind in EngineKind if kind != EngineKind.AUTO], help_text="What ran the network."
    )
    precision = serializers.ChoiceField(
        choices=[precision.value for precision in Precision if precision != Precision.AUTO]
    )
    exact = serializers.BooleanField(
        help_text="True: the answers equal eager fp32 torch's within 1e-4 on every probability. False: a fast mode "
        "(bf16, int8), which promises only its measured agreement."
    )
    agreement = AgreementOutput(allow_null=True, help_text="A fast mode's measured agreement; null when exact.")


class ClassifyBatchOutput(serializers.Serializer):
    id = serializers.CharField(help_text="The request id, also in the X-Request-ID header and the request log.")
    model = serializers.CharField()
    model_version = serializers.CharField(help_text=MODEL_VERSION_HELP)
    engine = EngineOutput(help_text="The engine that answered: exact, or a fast mode with its measured agreement.")
    created = serializers.DateTimeField(help_text="ISO-8601, UTC.")
    processing_time_ms = serializers.FloatField()
    results = ImageResultOutput(many=True, help_text="One per input image, in input order.")

    def to_representation(self, instance) -> dict:
        """What the declared fields give, built directly (see ClassifyOutput): ~0.1 ms of CPU less per image."""
        return {
            "id": str(instance["id"]),
            "model": str(instance["model"]),
            "model_version": str(instance["model_version"]),
            "engine": instance["engine"],
            "created": _CREATED.to_representation(instance["created"]),
            "processing_time_ms": float(instance["processing_time_ms"]),
            "results": [_image_result(result) for result in instance["results"]],
        }


_CREATED = serializers.DateTimeField()  # formats ``created`` as the declared field does


def batch_classification_body(*, request_id: str, result, filenames: list[str]) -> dict:
    """The v2 answer (ClassifyBatchOutput) to a classified batch (``classify_batch``'s BatchClassification)."""
    return ClassifyBatchOutput(
        {
            "id": request_id,
            "model": result.model,
            "model_version": result.model_version,
            "engine": result.engine,
            "created": timezone.now(),
            "processing_time_ms": result.processing_time_ms,
            "results": image_results(filenames, result.results),
        }
    ).data


def _image_result(result: dict) -> dict:
    """One ImageResultOutput: predictions or error, whichever the result has."""
    shaped = {"index": int(result["index"]), "filename": str(result["filename"])}
    if "predictions" in result:
        shaped["predictions"] = _predictions(result["predictions"])
    if "error" in result:
        error = result["error"]
        shaped["error"] = {"detail": str(error["detail"]), "code": str(error["code"]), "message": str(error["message"])}
    return shaped


def image_results(filenames: list[str], outcomes: list) -> list[dict]:
    """Pair each image's filename with its predictions or its error, as ImageResultOutput reads them."""
    results = []
    for index, (filename, outcome) in enumerate(zip(filenames, outcomes)):
        result = {"index": index, "filename": filename}
        if isinstance(outcome, Exception):
            body = error_body(api_error(outcome) if isinstance(outcome, ServingError) else outcome)
            result["error"] = {**body, "message": body["detail"]}
        else:
            result["predictions"] = outcome
        results.append(result)
    return results


class ModelOutput(ModelDescriptionOutput):
    default = serializers.BooleanField(help_text="Used when a request names no model (and always by v1).")


class VersionOutput(serializers.Serializer):
    name = serializers.CharField()
    version = serializers.CharField()
    status = serializers.ChoiceField(
        choices=["staged", "active", "retired"], help_text="Only the active version of a name is served."
    )
    validated = serializers.BooleanField(help_text="Whether it passed the validation gate.")
    sha256 = serializers.CharField()
    created_at = serializers.DateTimeField()
    activated_at = serializers.DateTimeField(allow_null=True)


class ModelsQueryInput(serializers.Serializer):
    all = serializers.BooleanField(
        required=False, default=False, help_text="Also list every registered version (staged, active, retired)."
    )


class ModelsOutput(serializers.Serializer):
    max_batch_images = serializers.IntegerField(help_text="Most images one v2 classify request may carry.")
    max_top_k = serializers.IntegerField()
    models = ModelOutput(many=True, help_text="Each name this server serves, at its active version.")
    versions = VersionOutput(many=True, required=False, help_text="With ?all=true: every registered version.")


class UsageQueryInput(serializers.Serializer):
    """``days`` (the last N days) or ``since``/``until`` (ISO-8601), never longer than ACCOUNTS_USAGE_MAX_RANGE_DAYS
    (400 ``range_too_long``); no ``since``: from when the key (``context["api_key"]``) was made, at most that long."""

    since = serializers.DateTimeField(required=False)
    until = serializers.DateTimeField(required=False)
    days = serializers.IntegerField(required=False, min_value=1)

    def validate(self, attrs):
        if "days" in attrs and ("since" in attrs or "until" in attrs):
            raise serializers.ValidationError("Give either days or since/until, not both.", code="invalid_range")
        longest = dt.timedelta(days=settings.ACCOUNTS_USAGE_MAX_RANGE_DAYS)
        until = attrs.get("until") or timezone.now()
        if "days" in attrs and attrs["days"] > settings.ACCOUNTS_USAGE_MAX_RANGE_DAYS:
            raise self._too_long()
        try:
            earliest = until - longest
        except OverflowError:
            raise serializers.ValidationError(
                "until is before the first day a report can start.", code="invalid_range"
            ) from None
        if "days" in attrs:
            since = until - dt.timedelta(days=attrs["days"])
        elif "since" in attrs:
            since = attrs["since"]
        else:  # from the key's creation; a range that ends before the key was made gets the longest
            created = self.context["api_key"].created_at
            since = max(earliest, created) if created < until else earliest
        if since >= until:
            raise serializers.ValidationError("since must be before until.", code="invalid_range")
        if since < earliest:
            raise self._too_long()
        return {"since": since, "until": until}

    @staticmethod
    def _too_long() -> serializers.ValidationError:
        return serializers.ValidationError(
            f"The range is longer than {settings.ACCOUNTS_USAGE_MAX_RANGE_DAYS} days (ACCOUNTS_USAGE_MAX_RANGE_DAYS); "
            "ask for it in parts.",
            code="range_too_long",
        )


class EndpointUsageOutput(serializers.Serializer):
    endpoint = serializers.CharField()
    requests = serializers.IntegerField()
    images = serializers.IntegerField()


class ModelUsageOutput(serializers.Serializer):
    name = serializers.CharField(help_text="The model that answered.")
    version = serializers.CharField(allow_blank=True, help_text="Its version; empty for an unversioned model.")
    requests = serializers.IntegerField()
    images = serializers.IntegerField()


class DayUsageOutput(serializers.Serializer):
    date = serializers.DateField()
    requests = serializers.IntegerField()
    images = serializers.IntegerField()


class LatencyOutput(serializers.Serializer):
    p50 = serializers.FloatField(allow_null=True)
    p95 = serializers.FloatField(allow_null=True)
    p99 = serializers.FloatField(allow_null=True)


class LimitStateOutput(serializers.Serializer):
    limit = serializers.IntegerField(help_text="Units (images) per window.")
    window_seconds = serializers.IntegerField()
    remaining = serializers.IntegerField()
    reset_seconds = serializers.IntegerField(help_text="Seconds until the next unit frees (0: none in use).")


class PeriodOutput(serializers.Serializer):
    plan = serializers.CharField(help_text="The key's plan.")
    start = serializers.DateTimeField(source="period_start", help_text="The start of the month (UTC).")
    resets_at = serializers.DateTimeField(help_text="The start of the next month (UTC), when `used` starts at 0.")
    allowance = serializers.IntegerField(allow_null=True, help_text="Images a month; null: unlimited.")
    used = serializers.IntegerField(help_text="Images (v1: requests) charged this month, overage included.")
    remaining = serializers.IntegerField(allow_null=True, help_text="Images left this month; null: unlimited.")
    overage = serializers.IntegerField(help_text="Images past the allowance (a plan that allows overage).")


class UsageReportOutput(serializers.Serializer):
    key = ApiKeyOutput()
    since = serializers.DateTimeField(allow_null=True)
    until = serializers.DateTimeField()
    requests = serializers.IntegerField(help_text="Classification requests, v1 and v2.")
    images = serializers.IntegerField(help_text="Images admitted for classification (a v1 call counts 1).")
    throttled = serializers.IntegerField(help_text="Requests refused with 429.")
    by_endpoint = EndpointUsageOutput(many=True)
    by_model = ModelUsageOutput(
        many=True,
        help_text="The requests a model answered, per model name and version; requests refused before "
        "any model ran (429, 400, 403) are in no row.",
    )
    by_status = serializers.DictField(child=serializers.IntegerField(), help_text="Requests per HTTP status.")
    latency_ms = LatencyOutput()
    daily = DayUsageOutput(many=True, help_text="Every UTC day of the range, zeros included.")
    limit = LimitStateOutput(help_text="The key's rate limit as it stands now.")
    period = PeriodOutput(
        allow_null=True, help_text="The key's monthly quota this calendar month (UTC); null: the key has no plan."
    )
