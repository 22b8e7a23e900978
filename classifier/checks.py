"""System checks: the rules that tie settings together, what the pages need, and the start-up run of the checks
(uvicorn runs none itself; runserver and ``manage.py check`` run them too).

With DJANGO_DEBUG off the pages link static files by the names in collectstatic's manifest; without
it, every page (landing, docs, the admin's login) answers 500 "Missing staticfiles manifest entry".
The check is a deployment check (``manage.py check --deploy``, the deployment steps in docs/deployment.md) rather than
a plain one: plain checks also run before ``migrate`` and every other command, which in a fresh
deployment come before ``collectstatic``.
"""

from django.conf import settings
from django.contrib.staticfiles import finders
from django.contrib.staticfiles.storage import ManifestFilesMixin, staticfiles_storage
from django.core import checks
from django.core.exceptions import ImproperlyConfigured

STATIC_FILES_TAG = "static_files_collected"
_MISSING_SHOWN = 5  # file names a check message lists


# Rules between settings: (holds, message, hint, id). A wrong combination fails at start with the message.
def _setting_rules() -> list[tuple[bool, str, str, str]]:
    return [
        (
            # a request queues its images in groups of up to CLASSIFIER_MAX_BATCH_SIZE (services._submit)
            min(settings.CLASSIFIER_MAX_BATCH_SIZE, settings.CLASSIFIER_MAX_BATCH_IMAGES)
            <= settings.CLASSIFIER_QUEUE_SIZE,
            f"CLASSIFIER_QUEUE_SIZE ({settings.CLASSIFIER_QUEUE_SIZE}) is below the group of images a request queues "
            f"at once (CLASSIFIER_MAX_BATCH_SIZE {settings.CLASSIFIER_MAX_BATCH_SIZE}, at most CLASSIFIER_MAX_BATCH_IMAGES "
            f"{settings.CLASSIFIER_MAX_BATCH_IMAGES}): such a group could never be queued, so every request would get 503.",
            "Raise CLASSIFIER_QUEUE_SIZE or lower CLASSIFIER_MAX_BATCH_SIZE.",
            "classifier.E010",
        ),
        (
            settings.DATA_UPLOAD_MAX_NUMBER_FILES > settings.CLASSIFIER_MAX_BATCH_IMAGES,
            f"DATA_UPLOAD_MAX_NUMBER_FILES ({settings.DATA_UPLOAD_MAX_NUMBER_FILES}) must stay above "
            f"CLASSIFIER_MAX_BATCH_IMAGES ({settings.CLASSIFIER_MAX_BATCH_IMAGES}), so v2 can answer too_many_images "
            "itself instead of Django refusing the form.",
            "Lower CLASSIFIER_MAX_BATCH_IMAGES (DATA_UPLOAD_MAX_NUMBER_FILES is fixed in aiserver/settings.py).",
            "classifier.E011",
        ),
        (
            1 <= settings.CLASSIFIER_TOP_K <= settings.CLASSIFIER_MAX_TOP_K,
            f"CLASSIFIER_TOP_K ({settings.CLASSIFIER_TOP_K}) must be between 1 and CLASSIFIER_MAX_TOP_K "
            f"({settings.CLASSIFIER_MAX_TOP_K}): v1's answer and v2's default would ask for more than v2 allows.",
            "Lower CLASSIFIER_TOP_K or raise CLASSIFIER_MAX_TOP_K.",
            "classifier.E012",
        ),
        (
            settings.CLASSIFIER_MAX_BATCH_SIZE >= 1 and settings.CLASSIFIER_MAX_BATCH_IMAGES >= 1,
            "CLASSIFIER_MAX_BATCH_SIZE and CLASSIFIER_MAX_BATCH_IMAGES must be at least 1.",
            "Set them to 1 or more.",
            "classifier.E013",
        ),
        (
            settings.WEB_CONCURRENCY >= 1,
            f"WEB_CONCURRENCY ({settings.WEB_CONCURRENCY}) must be at least 1.",
            "Set it to the number of worker processes.",
            "classifier.E014",
        ),
        (
            settings.CLASSIFIER_DECODE_BUDGET_MEGAPIXELS * 1_000_000 >= settings.CLASSIFIER_MAX_IMAGE_PIXELS,
            f"CLASSIFIER_DECODE_BUDGET_MEGAPIXELS ({settings.CLASSIFIER_DECODE_BUDGET_MEGAPIXELS}) must hold one image "
            f"of CLASSIFIER_MAX_IMAGE_PIXELS ({settings.CLASSIFIER_MAX_IMAGE_PIXELS} pixels), else such an image could "
            "never decode.",
            "Raise CLASSIFIER_DECODE_BUDGET_MEGAPIXELS or lower CLASSIFIER_MAX_IMAGE_PIXELS.",
            "classifier.E015",
        ),
    ]


@checks.register()
def settings_agree(app_configs=None, **kwargs) -> list[checks.CheckMessage]:
    """An error for each rule between settings that the configuration breaks."""
    return [checks.Error(message, hint=hint, id=id_) for holds, message, hint, id_ in _setting_rules() if not holds]


@checks.register(STATIC_FILES_TAG, deploy=True)
def static_files_collected(app_configs=None, **kwargs) -> list[checks.CheckMessage]:
    """An error when the manifest storage is in use and collectstatic has not run (or ran before the
    static files last changed)."""
    storage = staticfiles_storage
    if not isinstance(storage, ManifestFilesMixin):  # DJANGO_DEBUG on: files are served from the apps
        return []
    hint = "Run: python manage.py collectstatic --noinput (docs/deployment.md)."
    if not storage.exists(storage.manifest_name):
        return [
            checks.Error(
                f"Static files have not been collected: {storage.manifest_name} is missing from STATIC_ROOT, so with "
                "DJANGO_DEBUG off every page would answer 500.",
                hint=hint,
                id="classifier.E001",
            )
        ]
    collected, _ = storage.load_manifest()
    missing = sorted(path for path, _ in _static_files() if path not in collected)
    if missing:
        return [
            checks.Error(
                f"{len(missing)} static files are not in the collected manifest (collectstatic ran before they were "
                f"added): {', '.join(missing[:_MISSING_SHOWN])}{' ...' if len(missing) > _MISSING_SHOWN else ''}.",
                hint=hint,
                id="classifier.E002",
            )
        ]
    return []


def _static_files():
    for finder in finders.get_finders():
        yield from finder.list(["CVS", ".*", "*~"])


SECRET_KEY_MISSING = (
    "DJANGO_SECRET_KEY must be set when DJANGO_DEBUG is off "
    "(generate one with: python -c 'import secrets; print(secrets.token_urlsafe(50))')."
)


def require_secret_key() -> None:
    """Raise ImproperlyConfigured when there is no secret to sign sessions and CSRF tokens with. Only serving needs
    one: the other commands (migrate, create_api_key, ...) run without it."""
    try:
        missing = not settings.SECRET_KEY
    except ImproperlyConfigured:  # Django refuses to read an empty SECRET_KEY
        missing = True
    if missing:
        raise ImproperlyConfigured(SECRET_KEY_MISSING)


def run_start_checks() -> None:
    """Run the system checks and this module's deployment check; raise ImproperlyConfigured on any error."""
    require_secret_key()
    messages = checks.run_checks() + checks.run_checks(tags=[STATIC_FILES_TAG], include_deployment_checks=True)
    errors = [message for message in messages if message.is_serious() and not message.is_silenced()]
    if errors:
        raise ImproperlyConfigured(
            "The server cannot start:\n"
            + "\n".join(f"{error}" + (f"\n\tHINT: {error.hint}" if error.hint else "") for error in errors)
        )
