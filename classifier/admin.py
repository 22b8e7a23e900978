"""Admin: model versions (upload, validation report, activate, roll back, retire) and where each serving
process stands with them. A thin UI over classifier.versions; the settings models are listed read-only."""

import tempfile
from pathlib import Path

from django import forms
from django.conf import settings
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.http import HttpResponseNotAllowed, HttpResponseRedirect
from django.shortcuts import get_object_or_404
from django.template.defaultfilters import filesizeformat
from django.urls import path, reverse
from django.utils.html import format_html, format_html_join

from . import versions
from .models import ModelLoadStatus, ModelVersion
from .runtime.registry import SETTINGS_VERSION
from .runtime.sources import CONFIG_FILE, LABELS_FILE, MODEL_FILES
from .serving import process_runtime


class ModelVersionUploadForm(forms.ModelForm):
    """A new version: its model folder's files one by one, or the whole folder as one .zip/.tar.gz.
    Validating the form runs the registration (and so the validation gate), so that a refusal shows on it."""

    archive = forms.FileField(
        required=False,
        help_text="The model folder as one .zip or .tar.gz (instead of the files). A folder of several files goes "
        "this way: a transformers folder (config.json with id2label, model.safetensors or pytorch_model.bin, "
        "preprocessor_config.json), a timm folder (config.json with architecture, num_classes, label_names and "
        "pretrained_cfg, plus model.safetensors or pytorch_model.bin), or model.onnx with its .data files.",
    )
    model_upload = forms.FileField(
        required=False,
        label="Model file",
        help_text=", ".join(MODEL_FILES)
        + ". model.pt and model.onnx are data; model.ts (TorchScript) is code that runs "
        'when it loads, so it needs the permission "Can upload model files that are code", which no group has by '
        "default.",
    )
    labels_upload = forms.FileField(required=False, label="labels.json")
    config_upload = forms.FileField(
        required=False,
        label="config.json",
        help_text="The preprocessing (resize, crop, mean, std, interpolation): needed for model.ts and model.onnx, "
        "whose files cannot say it; model.pt names its torchvision architecture here.",
    )

    class Meta:
        model = ModelVersion
        fields = ["name", "version", "engine", "precision", "notes"]

    def __init__(self, *args, user=None, **kwargs):
        super().__init__(*args, **kwargs)
        self.user = user
        self.registered: ModelVersion | None = None

    def clean(self):
        data = super().clean()
        if not self.errors and bool(data.get("archive")) == bool(data.get("model_upload")):
            raise forms.ValidationError("Upload the model folder as one archive, or its files (model and labels.json).")
        return data

    def _post_clean(self) -> None:
        """After the form's and the model's own checks (name@version not taken), register the version."""
        super()._post_clean()
        if self.errors:
            return
        data = self.cleaned_data
        with tempfile.TemporaryDirectory(prefix="model-upload-") as scratch:
            try:
                upload = (
                    self._write_archive(data["archive"], Path(scratch))
                    if data.get("archive")
                    else self._write_files(data, Path(scratch))
                )
                self.registered = versions.model_version_register(
                    name=data["name"],
                    version=data["version"],
                    path=upload,
                    engine=data.get("engine", ""),
                    precision=data.get("precision", ""),
                    notes=data.get("notes", ""),
                    created_by=self.user,
                    executable_allowed=bool(self.user and self.user.has_perm("classifier.upload_executable_model")),
                )
            except versions.ModelVersionError as exc:
                self.add_error(None, str(exc))

    @staticmethod
    def _write_archive(archive, scratch: Path) -> Path:
        target = scratch / Path(archive.name).name
        _write_upload(archive, target)
        return target

    @staticmethod
    def _write_files(data: dict, scratch: Path) -> Path:
        model_file = data["model_upload"]
        suffix = Path(model_file.name).suffix.lower()
        model_name = next((name for name in MODEL_FILES if name.endswith(suffix)), None)
        if model_name is None:
            raise versions.ModelVersionError(f"The model file must be one of {', '.join(MODEL_FILES)}.")
        if not data.get("labels_upload"):
            raise versions.ModelVersionError("Upload labels.json with the model file.")
        folder = scratch / "folder"
        folder.mkdir()
        _write_upload(model_file, folder / model_name)
        _write_upload(data["labels_upload"], folder / LABELS_FILE)
        if data.get("config_upload"):
            _write_upload(data["config_upload"], folder / CONFIG_FILE)
        return folder


def describe_preprocessing(spec: dict | None) -> str:
    """A gate report's preprocessing as one line, e.g. "short side to 256, centre crop 224 (round), bilinear, ..."."""
    if not spec:
        return ""
    resize = {"center": "short side to {}", "squash": "both sides to {}", "border": "long side to {}, padded"}
    return (
        f"{resize[spec['resize']['mode']].format(spec['resize']['size'])}, centre crop {spec['crop']['size']} "
        f"({spec['crop']['rounding']}), {spec['interpolation']}, mean {spec['mean']}, std {spec['std']}, "
        f"{spec['channels']}, draft {'on' if spec['draft'] else 'off'}; from the {spec['source']}"
    )


def _write_upload(upload, target: Path) -> None:
    with target.open("wb") as sink:
        for chunk in upload.chunks():
            sink.write(chunk)


def admin_view_permissions(*permissions: str):
    """Declare which ``has_<permission>_permission`` checks a ModelAdmin's custom view makes (as
    ``@admin.action(permissions=...)`` does for actions), so tests/test_admin_permissions.py can walk them.
    The view itself still checks them, against its object."""

    def declare(view):
        view.allowed_permissions = permissions
        return view

    return declare


@admin.register(ModelVersion)
class ModelVersionAdmin(admin.ModelAdmin):
    list_display = [
        "__str__",
        "status",
        "validated",
        "summary",
        "input",
        "engine",
        "precision",
        "created_by",
        "created_at",
        "activated_at",
    ]
    list_filter = ["status", "name"]
    search_fields = ["name", "version", "notes", "sha256"]
    readonly_fields = [
        "name",
        "version",
        "status",
        "validated",
        "validation_report",
        "sha256",
        "model_file",
        "labels_file",
        "config_file",
        "preprocessing",
        "engine",
        "precision",
        "created_by",
        "created_at",
        "activated_at",
        "workers",
    ]
    actions = ["activate_version", "retire_versions", "validate_again"]
    change_form_template = "admin/classifier/modelversion/change_form.html"
    change_list_template = "admin/classifier/modelversion/change_list.html"

    @admin.display(description="Input")
    def input(self, obj: ModelVersion) -> str:
        """The preprocessing in short: crop, resize mode and size, filter, draft (the page has all of it)."""
        spec = obj.report.get("preprocessing")
        if not spec:
            return "-"
        draft = ", draft" if spec["draft"] else ""
        return f"{spec['crop']['size']}px ({spec['resize']['mode']} {spec['resize']['size']}, {spec['interpolation']}{draft})"

    @admin.display(description="Preprocessing in force")
    def preprocessing(self, obj: ModelVersion) -> str:
        """What the validation gate found the model's preprocessing to be (the same as /api/v2/models shows)."""
        return describe_preprocessing(obj.report.get("preprocessing")) or "-"

    def get_form(self, request, obj=None, change=False, **kwargs):
        if obj is None:
            form = ModelVersionUploadForm

            class UploadForm(form):
                def __init__(self, *args, **kw):
                    super().__init__(*args, user=request.user, **kw)

            return UploadForm
        return super().get_form(request, obj, change=change, **kwargs)

    def get_fieldsets(self, request, obj=None):
        if obj is None:
            return [
                (
                    None,
                    {
                        "fields": [
                            "name",
                            "version",
                            "archive",
                            "model_upload",
                            "labels_upload",
                            "config_upload",
                            "engine",
                            "precision",
                            "notes",
                        ],
                        "description": "Uploading validates the version in a separate process before it is saved; "
                        "then activate it here (or with manage.py activate_model). Uploads may be up to "
                        f"{filesizeformat(settings.ADMIN_UPLOAD_MAX_BYTES)} in all (ADMIN_UPLOAD_MAX_BYTES); larger "
                        "models: manage.py register_model on the server.",
                    },
                )
            ]
        return [
            (None, {"fields": [*self.readonly_fields[:5], "notes"]}),
            ("Files", {"fields": self.readonly_fields[5:12]}),
            ("History", {"fields": self.readonly_fields[12:]}),
        ]

    def get_readonly_fields(self, request, obj=None):
        return [] if obj is None else self.readonly_fields

    def save_form(self, request, form, change):
        return form.registered if not change else super().save_form(request, form, change)

    def save_model(self, request, obj, form, change) -> None:
        if change:
            super().save_model(request, obj, form, change)
            return
        level = messages.SUCCESS if obj.passed else messages.ERROR
        messages.add_message(request, level, f"{obj}: {obj.report.get('summary', '')}")

    def save_related(self, request, form, formsets, change) -> None:
        if change:
            super().save_related(request, form, formsets, change)

    @admin.display(boolean=True, description="validated")
    def validated(self, obj: ModelVersion) -> bool:
        return obj.passed

    @admin.display(description="report")
    def summary(self, obj: ModelVersion) -> str:
        return obj.report.get("summary", "")[:120]

    @admin.display(description="validation report")
    def validation_report(self, obj: ModelVersion):
        checks = obj.report.get("checks", [])
        rows = format_html_join(
            "",
            "<tr><td>{}</td><td>{}</td><td>{}</td></tr>",
            ((check["check"], "passed" if check["passed"] else "FAILED", check["detail"]) for check in checks),
        )
        latency = obj.report.get("latency_ms", {})
        return format_html(
            '<p class="validation-summary">{}</p><table class="validation-checks"><tr><th>check</th><th>result</th>'
            "<th>detail</th></tr>{}</table><p>Latency (median ms): {} · validated {}</p>",
            obj.report.get("summary", "Not validated."),
            rows,
            ", ".join(f"{key}: {value}" for key, value in latency.items()) or "-",
            obj.report.get("validated_at", "-"),
        )

    @admin.display(description="serving processes")
    def workers(self, obj: ModelVersion):
        statuses = ModelLoadStatus.objects.filter(name=obj.name, version=obj.version)
        return (
            format_html_join(
                "",
                "<div>{}: {} (serving {}) {}</div>",
                ((s.worker, s.outcome, s.serving or "-", s.reason) for s in statuses),
            )
            or "-"
        )

    def get_urls(self):
        return [
            path(
                "<int:version_id>/activate/",
                self.admin_site.admin_view(self.activate_view),
                name="classifier_modelversion_activate",
            ),
            *super().get_urls(),
        ]

    @admin_view_permissions("change")
    def activate_view(self, request, version_id: int):
        """The change page's Activate / Roll back button (POST); 403 without the change permission."""
        if request.method != "POST":
            return HttpResponseNotAllowed(["POST"])
        model_version = get_object_or_404(ModelVersion, id=version_id)
        if not self.has_change_permission(request, model_version):
            raise PermissionDenied
        self._activate(request, model_version)
        return HttpResponseRedirect(reverse("admin:classifier_modelversion_change", args=[version_id]))

    def _activate(self, request, model_version: ModelVersion) -> None:
        was = model_version.status
        try:
            versions.model_version_activate(name=model_version.name, version=model_version.version)
        except versions.ModelVersionError as exc:
            self.message_user(request, str(exc), messages.ERROR)
            return
        verb = "Rolled back to" if was == ModelVersion.Status.RETIRED else "Activated"
        self.message_user(
            request, f"{verb} {model_version}; every server switches to it within seconds.", messages.SUCCESS
        )

    @admin.action(description="Activate (or roll back to) the selected version", permissions=["change"])
    def activate_version(self, request, queryset) -> None:
        if queryset.count() != 1:
            self.message_user(request, "Select exactly one version to activate.", messages.ERROR)
            return
        self._activate(request, queryset.get())

    @admin.action(description="Retire the selected versions", permissions=["change"])
    def retire_versions(self, request, queryset) -> None:
        for model_version in queryset:
            versions.model_version_retire(model_version=model_version)
        self.message_user(request, f"Retired {queryset.count()} version(s).", messages.SUCCESS)

    @admin.action(description="Validate the selected versions again", permissions=["change"])
    def validate_again(self, request, queryset) -> None:
        for model_version in queryset:
            try:
                versions.model_version_validate(model_version=model_version)
            except versions.ModelVersionError as exc:
                self.message_user(request, str(exc), messages.ERROR)
        self.message_user(request, "Validated again; see each version's report.", messages.INFO)

    def changelist_view(self, request, extra_context=None):
        """The list, with the models from settings above it (read-only: change them in the environment)."""
        configured = [model for model in process_runtime().describe() if model["version"] == SETTINGS_VERSION]
        return super().changelist_view(request, {**(extra_context or {}), "settings_models": configured})

    def has_delete_permission(self, request, obj=None) -> bool:
        """Deleting needs ``delete_modelversion``; the active version is never deleted (retire it first)."""
        if not super().has_delete_permission(request, obj):
            return False
        return obj is None or obj.status != ModelVersion.Status.ACTIVE


@admin.register(ModelLoadStatus)
class ModelLoadStatusAdmin(admin.ModelAdmin):
    list_display = ["worker", "name", "version", "outcome", "serving", "reason", "updated_at"]
    list_filter = ["outcome", "name"]

    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False
