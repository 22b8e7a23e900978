"""Settings for aiserver, read once from the environment with safe production defaults.

Every environment variable is declared once, with its default and meaning, through aiserver.config; the
configuration reference (docs/configuration.md) is generated from those declarations. Production secrets have
no default: start-up fails without them.
"""

import os
from pathlib import Path

from django.core.exceptions import ImproperlyConfigured

from aiserver.config import Config, model_entries
from classifier.runtime.kinds import EngineKind, Precision

BASE_DIR = Path(__file__).resolve().parent.parent

config = Config()

# --- Django core -------------------------------------------------------------------------
config.begin("Django core")
DEBUG = config.bool(
    "DJANGO_DEBUG", False, "Django debug mode; never in production", shown="`false` (`make run` sets `true`)"
)  # never on in production
SECRET_KEY = config.str(
    "DJANGO_SECRET_KEY", "", "signs sessions and CSRF tokens", shown="none (required to serve unless debug)"
)  # signs sessions and CSRF tokens
# A file holding the secret instead (the container image's: /data/secret_key, which `manage.py serve` fills with a
# new random secret on the first start when the variable is empty). Read here; written only by `serve`.
DJANGO_SECRET_KEY_FILE = config.str(
    "DJANGO_SECRET_KEY_FILE",
    "",
    "a file holding the secret key, read when `DJANGO_SECRET_KEY` is empty; `manage.py serve` creates it with a random secret if it is missing (the image: `/data/secret_key`)",
    shown="empty (the image: `/data/secret_key`)",
)
if not SECRET_KEY and DJANGO_SECRET_KEY_FILE and os.path.isfile(DJANGO_SECRET_KEY_FILE):
    SECRET_KEY = Path(DJANGO_SECRET_KEY_FILE).read_text().strip()
if not SECRET_KEY and DEBUG:
    SECRET_KEY = "insecure-development-key-only-used-with-DJANGO_DEBUG-on"
# Without a secret, commands that sign nothing (migrate, create_api_key, ...) still run; serving refuses to start
# (classifier.checks.require_secret_key, run by `manage.py serve` and aiserver.asgi), and anything that would sign
# with it fails (Django refuses an empty SECRET_KEY when it is read).
ALLOWED_HOSTS = config.list(
    "DJANGO_ALLOWED_HOSTS",
    ["localhost", "127.0.0.1", "[::1]"],
    "host names this server answers to",
    shown="`localhost,127.0.0.1,[::1]`",
)
CSRF_TRUSTED_ORIGINS = config.list(
    "DJANGO_CSRF_TRUSTED_ORIGINS",
    [],
    "origins allowed to post admin forms (behind a proxy: `https://api.example.com`)",
    shown="empty",
)

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "corsheaders",
    "rest_framework",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "accounts",
    "classifier",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "aiserver.csp.ContentSecurityPolicyMiddleware",
    "corsheaders.middleware.CorsMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "classifier.api.middleware.RequestLogMiddleware",
    "classifier.api.middleware.RequestIdMiddleware",
    "classifier.api.middleware.BodyLimitMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "aiserver.urls"
WSGI_APPLICATION = "aiserver.wsgi.application"
ASGI_APPLICATION = "aiserver.asgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

# --- Database ----------------------------------------------------------------------------
config.begin("Database")
# DATABASE_URL: sqlite:///path or postgresql://user@host:port/name. Default: embedded SQLite.
DATABASES = {
    "default": config.db_url(
        "DATABASE_URL",
        f"sqlite:///{BASE_DIR / 'db.sqlite3'}",
        "database; `postgresql://user@host:5432/name` uses psycopg 3 with a connection pool",
        shown="`sqlite:///<project>/db.sqlite3`",
    ),
}
DATABASE_POOL_MAX_SIZE = config.int(
    "DATABASE_POOL_MAX_SIZE",
    20,
    "PostgreSQL pool size per process; every replica's processes together must stay under the server's `max_connections` (100 by default)",
)
# How long a request waits for a pooled connection before it fails (psycopg's PoolTimeout; answered 503
# `database_unavailable`). psycopg's own default, 30 s, outlasts the proxy's and the client's patience.
DATABASE_POOL_TIMEOUT_SECONDS = config.float(
    "DATABASE_POOL_TIMEOUT_SECONDS",
    10.0,
    "how long a request waits for a free pooled PostgreSQL connection before it fails with 503 `database_unavailable`",
    shown="`10`",
)
_db = DATABASES["default"]
if _db["ENGINE"] == "django.db.backends.sqlite3":
    # Kept open: the ASGI handler reuses its request threads (aiserver.handlers), and with them
    # their connections; opening one costs about 0.4 ms of CPU.
    _db["CONN_MAX_AGE"] = None
    # IMMEDIATE transactions take the write lock up front, so the throttle's
    # count-then-insert is atomic across worker processes; WAL lets readers run meanwhile.
    _db["OPTIONS"] = {
        "transaction_mode": "IMMEDIATE",
        "timeout": 30,
        "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
    }
elif _db["ENGINE"] in ("django.db.backends.postgresql", "django.db.backends.postgresql_psycopg2"):
    _db["ENGINE"] = "django.db.backends.postgresql"
    # psycopg's pool lends each request a connection (Django's pooling requires CONN_MAX_AGE 0).
    _db["CONN_MAX_AGE"] = 0
    # Options given in DATABASE_URL's query (e.g. ?connect_timeout=5, which lets libpq try a host's next address
    # instead of hanging on one that does not answer) are kept.
    _db["OPTIONS"] = {
        **_db.get("OPTIONS", {}),
        "pool": {
            "min_size": 1,
            "max_size": DATABASE_POOL_MAX_SIZE,
            "timeout": DATABASE_POOL_TIMEOUT_SECONDS,
        },
    }
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# --- Cache (and shared state when REDIS_URL is set) ------------------------------------------
config.begin("Cache and shared state")
REDIS_URL = config.str(
    "REDIS_URL",
    "",
    "when set, holds every key's sliding window (shared by all processes and machines) and Django's cache",
    shown="empty",
)  # e.g. redis://127.0.0.1:6379/0; empty: per-process cache
CACHES = {
    "default": (
        {"BACKEND": "django.core.cache.backends.redis.RedisCache", "LOCATION": REDIS_URL}
        if REDIS_URL
        else {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}
    )
}

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

config.begin("Static files")
STATIC_URL = "static/"
# Where collectstatic gathers the static files that WhiteNoise serves when DJANGO_DEBUG is off.
STATIC_ROOT = config.path(
    "DJANGO_STATIC_ROOT",
    BASE_DIR / "staticfiles",
    "folder `collectstatic` fills and WhiteNoise serves when debug is off",
    shown="`<project>/staticfiles`",
)
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {
        "BACKEND": (
            "django.contrib.staticfiles.storage.StaticFilesStorage"
            if DEBUG
            else "whitenoise.storage.CompressedManifestStaticFilesStorage"
        )
    },
}
WHITENOISE_USE_FINDERS = DEBUG  # in development serve straight from the apps, no collectstatic
WHITENOISE_ROOT = BASE_DIR / "aiserver" / "root_files"  # served at "/": favicon.ico (browsers ask every page)

# --- Security (production defaults; loosen only behind a proxy that does the job) ---------------
config.begin("Security")
SECURE_SSL_REDIRECT = config.bool(
    "DJANGO_SECURE_SSL_REDIRECT", False, "redirect HTTP to HTTPS (when TLS ends at this server)", shown="`false`"
)  # on when TLS ends here
SECURE_HSTS_SECONDS = config.int(
    "DJANGO_SECURE_HSTS_SECONDS", 0, "HSTS max-age once served over HTTPS", shown="`0`"
)  # e.g. 31536000 once on HTTPS
SESSION_COOKIE_SECURE = config.bool(
    "DJANGO_SESSION_COOKIE_SECURE", not DEBUG, "cookies over HTTPS only", shown="`true` unless debug"
)
CSRF_COOKIE_SECURE = config.bool(
    "DJANGO_CSRF_COOKIE_SECURE", not DEBUG, "cookies over HTTPS only", shown="`true` unless debug"
)
X_FRAME_OPTIONS = "DENY"
# Behind a TLS-terminating proxy that sets X-Forwarded-Proto: trust it (only then).
if config.bool(
    "DJANGO_SECURE_PROXY_SSL_HEADER",
    False,
    "trust `X-Forwarded-Proto: https` from your reverse proxy (only behind one)",
    shown="`false`",
):
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
SECURE_HSTS_INCLUDE_SUBDOMAINS = config.bool(
    "DJANGO_SECURE_HSTS_INCLUDE_SUBDOMAINS", False, "HSTS flags", shown="`false`"
)
SECURE_HSTS_PRELOAD = config.bool("DJANGO_SECURE_HSTS_PRELOAD", False, "HSTS flags", shown="`false`")
# CORS: off unless origins are listed (browser apps calling the API from other sites).
CORS_ALLOWED_ORIGINS = config.list(
    "CORS_ALLOWED_ORIGINS",
    [],
    "origins allowed to call `/api/` from browsers, e.g. `https://app.example.com`",
    shown="empty (CORS off)",
)
CORS_URLS_REGEX = r"^/api/.*$"
CORS_ALLOW_HEADERS = ["authorization", "content-type", "x-api-key", "x-request-id"]
CORS_EXPOSE_HEADERS = [
    "retry-after",
    "x-ratelimit-limit",
    "x-ratelimit-remaining",
    "x-ratelimit-reset",
    "ratelimit",
    "ratelimit-policy",
    "x-request-id",
]
SECURE_CONTENT_TYPE_NOSNIFF = True
# Sent on every response; {nonce} is replaced by the request's nonce. Scripts only from this server, never inline (the
# try page keeps a key in sessionStorage); styles too, inline ones only with the nonce; images also as data: URLs
# (Swagger UI's icons) and blob: URLs (the try page's previews); nothing may frame the pages. Empty: no header.
CONTENT_SECURITY_POLICY = config.str(
    "DJANGO_CONTENT_SECURITY_POLICY",
    "default-src 'self'; script-src 'self'; style-src 'self' 'nonce-{nonce}'; img-src 'self' data: blob:; "
    "font-src 'self'; connect-src 'self'; worker-src 'self' blob:; object-src 'none'; base-uri 'none'; "
    "form-action 'self'; frame-ancestors 'none'",
    "the `Content-Security-Policy` header of every response; `{nonce}` becomes the request's nonce; empty: none",
    shown="strict (see [Security](security.md))",
)
# The ReDoc page's policy: scripts as strict, but inline styles allowed, as ReDoc's bundle adds <style> elements
# before it can be given a nonce. The page shows the public schema only: no key is typed or kept there.
CONTENT_SECURITY_POLICY_REDOC = config.str(
    "DJANGO_CONTENT_SECURITY_POLICY_REDOC",
    "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; "
    "font-src 'self'; connect-src 'self'; worker-src 'self' blob:; object-src 'none'; base-uri 'none'; "
    "form-action 'self'; frame-ancestors 'none'",
    "the ReDoc page's policy (its bundle adds `<style>` elements before it can take a nonce)",
    shown="the same, with inline styles",
)
# Flash messages live in the session (the database), not in a signed but readable cookie: the admin shows a new
# API key once in a message.
MESSAGE_STORAGE = "django.contrib.messages.storage.session.SessionStorage"

# --- Request limits ------------------------------------------------------------------------
config.begin("Request limits")
# Largest request body accepted, in bytes; larger ones get 413 before they are read.
API_MAX_BODY_BYTES = config.int(
    "API_MAX_BODY_BYTES", 10 * 1024 * 1024, "largest request body; larger → 413 before it is read", shown="`10485760`"
)
# Django's own parsing limits follow it, so JSON bodies up to the limit parse (base64 inflates by 4/3). Uploaded
# files larger than it are streamed to a temporary file (Django's TemporaryFileUploadHandler), never held in memory.
DATA_UPLOAD_MAX_MEMORY_SIZE = API_MAX_BODY_BYTES
FILE_UPLOAD_MAX_MEMORY_SIZE = API_MAX_BODY_BYTES
# Staff uploads of model files and archives (the admin's model version form): their own, larger limit.
ADMIN_UPLOAD_MAX_BYTES = config.int(
    "ADMIN_UPLOAD_MAX_BYTES",
    512 * 1024 * 1024,
    "largest admin upload of a model version (files or an archive), streamed to disk; the API keeps API_MAX_BODY_BYTES",
    shown="`536870912`",
)
ADMIN_UPLOAD_PATH_PREFIX = "/admin/classifier/modelversion/"  # the requests ADMIN_UPLOAD_MAX_BYTES applies to
# Bytes of header names and values a request may carry; more gets 431 (aiserver.asgi). uvicorn's
# --h11-max-incomplete-event-size (docs/deployment.md) closes far larger heads before they are read whole.
API_MAX_HEADER_BYTES = config.int(
    "API_MAX_HEADER_BYTES",
    32 * 1024,
    "header names and values together; more → 431 (uvicorn's `--h11-max-incomplete-event-size 65536` closes far larger heads before reading them whole)",
    shown="`32768`",
)
# Seconds a client has to finish a request's head once it has started it; then the connection is closed
# (aiserver.protocols, uvicorn's --http). uvicorn alone waits for ever on a half-sent head.
API_HEADER_READ_TIMEOUT_SECONDS = config.float(
    "API_HEADER_READ_TIMEOUT_SECONDS",
    10.0,
    "a connection whose request head (line and headers) is not complete this long after it began, or after the connection opened, is closed (`--http aiserver.protocols:H11Protocol`)",
    shown="`10`",
)
# Seconds a whole request body may take to arrive; a slower one is cut and answered 408 (aiserver.asgi).
API_BODY_READ_TIMEOUT_SECONDS = config.float(
    "API_BODY_READ_TIMEOUT_SECONDS",
    60.0,
    "the whole body must arrive within this; else 408 `request_timeout`",
    shown="`60`",
)
# Longest wait, in seconds, for the next chunk of a body being sent; longer: 408.
API_BODY_IDLE_TIMEOUT_SECONDS = config.float(
    "API_BODY_IDLE_TIMEOUT_SECONDS",
    10.0,
    "longest pause between two chunks of a body; longer → 408 `request_timeout`",
    shown="`10`",
)
# Seconds an answer may wait for a client that does not read it (writing paused, or a closed connection's
# answer still unsent); then the connection is aborted (aiserver.protocols). uvicorn alone waits for ever.
API_SEND_TIMEOUT_SECONDS = config.float(
    "API_SEND_TIMEOUT_SECONDS",
    30.0,
    "a connection whose client reads nothing of its answer for this long is aborted (`--http aiserver.protocols:H11Protocol`)",
    shown="`30`",
)
# The lean path (classifier.api.lean): v1 and v2 classifications with a JSON body answered in front of Django's
# generic request machinery, with the same checks, limits, log rows and answers; off: every request goes through Django.
API_LEAN_PATH = config.bool(
    "API_LEAN_PATH",
    True,
    "answer v1 and v2 JSON classifications on the lean path (same checks, answers and log rows, less CPU); off: through Django only",
    shown="`true`",
)
# Threads the lean path's requests run in (decode, preprocess, wait for the batch, write the log row); more requests
# wait for a thread with their bodies read (uvicorn's --limit-concurrency bounds how many).
API_LEAN_THREADS = config.int(
    "API_LEAN_THREADS", 64, "threads for the lean path's requests; more in flight wait for one", shown="`64`"
)
DATA_UPLOAD_MAX_NUMBER_FIELDS = 100
DATA_UPLOAD_MAX_NUMBER_FILES = (
    32  # above CLASSIFIER_MAX_BATCH_IMAGES, so v2 can say "too many" itself (system check classifier.E011)
)

# --- accounts: API keys ----------------------------------------------------------------------
config.begin("API keys and usage")
ACCOUNTS_DEFAULT_RATE_LIMIT = config.int(
    "ACCOUNTS_DEFAULT_RATE_LIMIT", 60, "requests per window for new keys", shown="`60`"
)  # requests per window
ACCOUNTS_DEFAULT_RATE_WINDOW_SECONDS = config.int(
    "ACCOUNTS_DEFAULT_RATE_WINDOW_SECONDS", 60, "window length for new keys", shown="`60`"
)
# Requests without a valid key are counted per minute and client (accounts.AnonymousRequestCount), not logged one
# row each. Distinct clients per minute that get their own counts; later ones in that minute share one bucket.
ACCOUNTS_ANONYMOUS_CLIENTS_PER_MINUTE = config.int(
    "ACCOUNTS_ANONYMOUS_CLIENTS_PER_MINUTE",
    1000,
    'distinct clients a minute whose requests without a valid key get their own counts; later clients in that minute are counted together as "other clients"',
    shown="`1000`",
)
# IPv6 clients are counted by network of this many leading bits (one host often holds a whole /64).
ACCOUNTS_ANONYMOUS_IPV6_PREFIX_BITS = config.int(
    "ACCOUNTS_ANONYMOUS_IPV6_PREFIX_BITS",
    64,
    "IPv6 clients are counted by network of this many leading bits (one host often holds a whole /64)",
)
# The staff dashboard and /api/v2/usage compute latency percentiles on SQLite from at most this many rows
# (an even sample of the range); PostgreSQL computes them exactly in SQL.
ACCOUNTS_DASHBOARD_LATENCY_SAMPLE_ROWS = config.int(
    "ACCOUNTS_DASHBOARD_LATENCY_SAMPLE_ROWS",
    20_000,
    "on SQLite the latency percentiles of the dashboard and `/api/v2/usage` come from at most this many rows (all when the range holds no more, else an even sample); PostgreSQL computes them exactly",
    shown="`20000`",
)
if not 0 <= ACCOUNTS_ANONYMOUS_IPV6_PREFIX_BITS <= 128:
    raise ImproperlyConfigured("ACCOUNTS_ANONYMOUS_IPV6_PREFIX_BITS must be between 0 and 128.")
if ACCOUNTS_ANONYMOUS_CLIENTS_PER_MINUTE < 1 or ACCOUNTS_DASHBOARD_LATENCY_SAMPLE_ROWS < 1:
    raise ImproperlyConfigured(
        "ACCOUNTS_ANONYMOUS_CLIENTS_PER_MINUTE and ACCOUNTS_DASHBOARD_LATENCY_SAMPLE_ROWS must be at least 1."
    )
# Longest range GET /api/v2/usage reports, in days (a longer one is 400 range_too_long): bounds its work and answer.
ACCOUNTS_USAGE_MAX_RANGE_DAYS = config.int(
    "ACCOUNTS_USAGE_MAX_RANGE_DAYS",
    366,
    "longest range `/api/v2/usage` reports; longer → 400 `range_too_long`",
    shown="`366`",
)
# Usage requests (GET /api/v1/usage and /api/v2/usage together) each key may make per window; more: 429. Counted in
# a window of their own, apart from the key's classification quota.
ACCOUNTS_USAGE_RATE_LIMIT = config.int(
    "ACCOUNTS_USAGE_RATE_LIMIT",
    30,
    "usage requests (`/api/v1/usage` and `/api/v2/usage` together) per key per window; more → 429; apart from the classification quota",
    shown="`30`",
)
ACCOUNTS_USAGE_RATE_WINDOW_SECONDS = config.int(
    "ACCOUNTS_USAGE_RATE_WINDOW_SECONDS", 60, "that usage window's length", shown="`60`"
)  # that window's length
# A keyed v2 classification whose declared body is larger than this first asks the window store (recording nothing)
# whether one more image fits the key's window and monthly quota; a key out of room is refused before its body is
# parsed. Smaller bodies skip the extra store operation.
ACCOUNTS_PEEK_BEFORE_BODY_BYTES = config.int(
    "ACCOUNTS_PEEK_BEFORE_BODY_BYTES",
    256 * 1024,
    "a keyed `/api/v2/classify` body larger than this is refused with 429 before it is parsed when the key's window or monthly quota has no room for one more image (one extra store read); 0: every body",
    shown="`262144`",
)
if ACCOUNTS_PEEK_BEFORE_BODY_BYTES < 0:
    raise ImproperlyConfigured("ACCOUNTS_PEEK_BEFORE_BODY_BYTES must be 0 or more.")

# --- classifier: model and serving ----------------------------------------------------------
config.begin("Model and serving")
# Every model to load, comma-separated: "name" (a torchvision model with CLASSIFIER_WEIGHTS), "name=weights"
# (weights as CLASSIFIER_WEIGHTS) or "name=/path/to/model-folder" (your own model: docs/models.md). The first serves v1 and is v2's default; v2 requests may pick another. Default: CLASSIFIER_MODEL.
# Parsed here, once: {name: weights}, "" where an entry names no weights.
CLASSIFIER_MODELS = model_entries(
    config.list(
        "CLASSIFIER_MODELS",
        [],
        "every model to serve, comma-separated: `name` (a torchvision model with `CLASSIFIER_WEIGHTS`), `name=weights`, or `name=/path/to/folder` (your own model, see [Serve your own model](models.md)); the first is v1's model and v2's default",
        shown="empty",
    )
)
CLASSIFIER_MODEL = config.str(
    "CLASSIFIER_MODEL",
    next(iter(CLASSIFIER_MODELS), "resnet18"),
    "v1's model (a name in `CLASSIFIER_MODELS`, or a torchvision model name)",
    shown="the first of `CLASSIFIER_MODELS`, else `resnet18`",
)
# "default" (torchvision's pretrained weights, downloaded once), a state_dict path, or "random".
CLASSIFIER_WEIGHTS = config.str(
    "CLASSIFIER_WEIGHTS",
    "default",
    "weights of torchvision models named without any: `default` (pretrained, downloaded once), a 1000-class ImageNet `state_dict` path (loaded with `weights_only=True`), `random` (untrained), or `trivial` (benchmark mode: a near-free model, to measure the service's own cost)",
    shown="`default`",
)
CLASSIFIER_DEVICE = config.str(
    "CLASSIFIER_DEVICE", "auto", "`auto` (CUDA when present), `cpu`, `cuda`, `cuda:N`", shown="`auto`"
)  # auto, cpu, cuda, cuda:N
# What runs the network: auto (on a CPU the fastest exact engine, ONNX Runtime or OpenVINO fp32 as measured when
# compiling; on CUDA torch), torch, onnxruntime or openvino; and in what precision: auto (fp32 on a CPU, fp16 on CUDA), fp32, bf16 (inexact; CPUs with
# bf16 support, CUDA) or fp16 (CUDA).
CLASSIFIER_ENGINE = config.str(
    "CLASSIFIER_ENGINE",
    "auto",
    "what runs the network: `auto` (on a CPU the fastest exact engine: ONNX Runtime or OpenVINO fp32, measured when compiling with the batch workers' concurrent callers; on CUDA torch), `torch`, `onnxruntime`, `openvino`",
    shown="`auto`",
)
CLASSIFIER_PRECISION = config.str(
    "CLASSIFIER_PRECISION",
    "auto",
    "`auto` (fp32 on a CPU, fp16 channels-last on CUDA), `fp32`, `bf16` (torch only, inexact, on CPUs with bf16 support or CUDA), `fp16` (CUDA)",
    shown="`auto`",
)
for _name, _value, _choices in [
    ("CLASSIFIER_ENGINE", CLASSIFIER_ENGINE, EngineKind.choices()),
    ("CLASSIFIER_PRECISION", CLASSIFIER_PRECISION, Precision.choices()),
]:
    if _value not in _choices:
        raise ImproperlyConfigured(f"{_name} must be one of {', '.join(_choices)} (got {_value!r}).")
# Where ONNX exports of torch models are kept between starts (named by the weights' fingerprint); empty: none.
_engine_cache = config.str(
    "CLASSIFIER_ENGINE_CACHE_DIR",
    str(BASE_DIR / "var" / "engine-cache"),
    "where ONNX exports of torch models are kept between starts, named by the weights' fingerprint; empty: export at every start",
    shown="`<project>/var/engine-cache`",
)
CLASSIFIER_ENGINE_CACHE_DIR = Path(_engine_cache) if _engine_cache else None
CLASSIFIER_MAX_IMAGE_PIXELS = config.int(
    "CLASSIFIER_MAX_IMAGE_PIXELS",
    40_000_000,
    "width × height above which an image is refused (413), checked before decoding",
    shown="`40000000`",
)  # width*height
# Megapixels each worker process decodes at once (an image holds width*height from its header until it is
# preprocessed; a decoded megapixel costs about 4-8 MB): two images at CLASSIFIER_MAX_IMAGE_PIXELS by default.
CLASSIFIER_DECODE_BUDGET_MEGAPIXELS = config.int(
    "CLASSIFIER_DECODE_BUDGET_MEGAPIXELS",
    60,
    "megapixels each worker process decodes at once (one image at the pixel limit, with room for smaller ones beside it; keeps a worker under 2 GB); an image holds its width × height, read from its header, from before decoding until it is preprocessed. Must hold one image of `CLASSIFIER_MAX_IMAGE_PIXELS` (start-up fails otherwise)",
    shown="`60`",
)
# How long an image waits for decode budget before its request is answered 503 overloaded (Retry-After).
CLASSIFIER_DECODE_BUDGET_WAIT_MS = config.float(
    "CLASSIFIER_DECODE_BUDGET_WAIT_MS",
    2000.0,
    "how long an image waits for decode budget before its request gets 503 `overloaded` with `Retry-After`",
    shown="`2000`",
)
CLASSIFIER_TOP_K = config.int(
    "CLASSIFIER_TOP_K", 5, "predictions returned by v1", shown="`5`"
)  # predictions returned by v1
CLASSIFIER_MAX_BATCH_SIZE = config.int(
    "CLASSIFIER_MAX_BATCH_SIZE", 8, "images per forward pass (dynamic batching)", shown="`8`"
)  # images per forward pass
CLASSIFIER_MAX_BATCH_DELAY_MS = config.float(
    "CLASSIFIER_MAX_BATCH_DELAY_MS",
    0.0,
    "how long the batcher waits to fill a batch; `0`: it takes the images already waiting and runs (ONNX Runtime and OpenVINO gain little from waiting for more)",
    shown="`0`",
)  # wait to fill a batch
CLASSIFIER_QUEUE_SIZE = config.int(
    "CLASSIFIER_QUEUE_SIZE", 64, "images waiting for the model; beyond it requests get 503 at once", shown="`64`"
)  # images waiting; beyond it: 503
CLASSIFIER_INFERENCE_TIMEOUT_SECONDS = config.float(
    "CLASSIFIER_INFERENCE_TIMEOUT_SECONDS", 30.0, "per-request wait for the model before 503", shown="`30`"
)
CLASSIFIER_MAX_BATCH_IMAGES = config.int(
    "CLASSIFIER_MAX_BATCH_IMAGES", 16, "Most images in one v2 classify request.", shown="16"
)  # images per v2 request
CLASSIFIER_MAX_TOP_K = config.int(
    "CLASSIFIER_MAX_TOP_K", 20, "Largest `top_k` a v2 request may ask for.", shown="20"
)  # largest top_k a v2 request may ask for
# Threads running forward passes per model, each taking its own batches from the queue; 0: on a CPU one per
# core of this process (the cores divided by WEB_CONCURRENCY, uvicorn's worker count), on a GPU one.
CLASSIFIER_BATCH_WORKERS = config.int(
    "CLASSIFIER_BATCH_WORKERS",
    0,
    "forward-pass threads per model sharing its queue; `0`: one per core of the process on CPU (cores / `WEB_CONCURRENCY`), one on GPU",
    shown="`0` (auto)",
)
# uvicorn's (and gunicorn's) worker processes on this machine, which read it themselves: each worker's share of the
# cores is os.cpu_count() // WEB_CONCURRENCY (batch workers and torch threads above and below).
WEB_CONCURRENCY = config.int(
    "WEB_CONCURRENCY",
    1,
    "uvicorn's worker processes (its own variable); also splits the cores among torch threads",
    shown="`1`",
)
# torch threads per forward pass; 0: this process's cores divided by its CPU batch workers (so 1 by default).
CLASSIFIER_TORCH_THREADS = config.int(
    "CLASSIFIER_TORCH_THREADS",
    0,
    "torch threads per forward pass; `0`: the process's cores / its CPU batch workers (1 by default)",
    shown="`0` (auto)",
)
# Seconds a result is kept in the cache (Django's "default" cache: Redis when REDIS_URL is set), keyed by
# the image bytes' hash, the model and top_k; 0 turns the result cache off.
CLASSIFIER_RESULT_CACHE_SECONDS = config.int(
    "CLASSIFIER_RESULT_CACHE_SECONDS",
    3600,
    "keep each result this long in Django's cache (Redis when `REDIS_URL` is set), keyed by the image bytes' SHA-256, the weights and top-k; `0` turns the cache off",
    shown="`3600`",
)

# --- Model versions (docs/models.md, "Model versions") -------------------------------------------------------
config.begin("Model versions")
# Where uploaded model versions' files are kept: Django's default storage, this folder unless STORAGES
# says otherwise (S3 and the like: django-storages). Never served over HTTP.
MEDIA_ROOT = config.path(
    "DJANGO_MEDIA_ROOT",
    BASE_DIR / "var" / "media",
    "where the default storage keeps model versions' files (not served over HTTP); see [Model versions](models.md#model-versions) for S3 and the like",
    shown="`<project>/var/media`",
)
# Seconds between each serving process's checks of the database for a newly activated version.
CLASSIFIER_MODEL_POLL_SECONDS = config.float(
    "CLASSIFIER_MODEL_POLL_SECONDS",
    1.0,
    "how often each serving process checks the database for a newly activated version",
    shown="`1`",
)
# Where each serving machine keeps its local copies of registered versions (checked against their sha256).
CLASSIFIER_MODEL_CACHE_DIR = config.path(
    "CLASSIFIER_MODEL_CACHE_DIR",
    BASE_DIR / "var" / "model-versions",
    "each machine's local copies of registered versions, checked against their sha256",
    shown="`<project>/var/model-versions`",
)
# Seconds a replaced version's batcher stays open for requests that took it just before the switch;
# then it answers what is queued and is freed (a later straggler runs again on the new version).
CLASSIFIER_MODEL_DRAIN_SECONDS = config.float(
    "CLASSIFIER_MODEL_DRAIN_SECONDS",
    2.0,
    "how long a replaced version's batcher stays open for requests that took it just before a switch",
    shown="`2`",
)
# Seconds the validation gate's separate process may take to load, check and time a version.
CLASSIFIER_VALIDATION_TIMEOUT_SECONDS = config.float(
    "CLASSIFIER_VALIDATION_TIMEOUT_SECONDS",
    300.0,
    "how long the validation gate's process may take before the version is refused",
    shown="`300`",
)
# Compiling (export to the engine's artifact, the agreement check) runs a model's code: by default in a sandboxed
# child process (classifier/runtime/sandbox.py), so that torch never enters a serving process.
CLASSIFIER_COMPILE_IN_CHILD = config.bool(
    "CLASSIFIER_COMPILE_IN_CHILD",
    True,
    "compile models in a sandboxed child process (scrubbed environment, temporary directory, no writes outside it, resource limits); `false` compiles in the serving process (tests, debugging)",
    shown="`true`",
)
CLASSIFIER_COMPILE_MEMORY_MB = config.int(
    "CLASSIFIER_COMPILE_MEMORY_MB",
    8192,
    "address space a compiling child process may map (MB)",
    shown="`8192`",
)
# Fast modes (OpenVINO bf16, int8) are measured against fp32 when compiled, on the version's calibration/ images.
CLASSIFIER_MIN_TOP1_AGREEMENT = config.float(
    "CLASSIFIER_MIN_TOP1_AGREEMENT",
    0.99,
    "a fast mode (bf16, int8) is refused when its top-1 answers agree with fp32's on fewer of the calibration images than this share",
    shown="`0.99`",
)
CLASSIFIER_MAX_CALIBRATION_IMAGES = config.int(
    "CLASSIFIER_MAX_CALIBRATION_IMAGES",
    300,
    "most images of a model folder's `calibration/` a compile reads (int8 calibration, fast-mode agreement)",
    shown="`300`",
)
CLASSIFIER_AUTO_MEASURES_ENGINES = config.bool(
    "CLASSIFIER_AUTO_MEASURES_ENGINES",
    True,
    "with `CLASSIFIER_ENGINE=auto` on a CPU, compiling measures ONNX Runtime and OpenVINO fp32 (both exact) and keeps the faster; the choice is stored with the artifact",
    shown="`true`",
)
# Largest model archive (.zip, .tar.gz) register_model and the admin unpack: its files' total size.
CLASSIFIER_MODEL_ARCHIVE_MAX_BYTES = config.int(
    "CLASSIFIER_MODEL_ARCHIVE_MAX_BYTES",
    1024 * 1024 * 1024,
    "largest total size of the files in a model archive (`register_model`, the admin)",
    shown="`1073741824`",
)
# How many times a model archive's file may expand (a .tar.gz: the whole archive); more is a decompression bomb.
CLASSIFIER_MODEL_ARCHIVE_MAX_RATIO = config.float(
    "CLASSIFIER_MODEL_ARCHIVE_MAX_RATIO",
    100.0,
    "largest expansion ratio of a file in a model archive (a .tar.gz: of the whole archive); weights expand little",
    shown="`100`",
)
# Largest resize or crop a registered version's config.json may ask for: the preprocessed image every request
# pays for (a classifier uses 224 to 600; 4096 is 50 MB an image).
CLASSIFIER_MAX_INPUT_SIZE = config.int(
    "CLASSIFIER_MAX_INPUT_SIZE",
    1024,
    "largest `resize` or `crop` of a registered version's config.json, in pixels a side",
    shown="`1024`",
)
# Largest labels.json or config.json in a model archive or folder: the runtime reads them whole.
CLASSIFIER_MODEL_METADATA_MAX_BYTES = config.int(
    "CLASSIFIER_MODEL_METADATA_MAX_BYTES",
    4 * 1024 * 1024,
    "largest labels.json or config.json of a model version (`register_model`, the admin)",
    shown="`4194304`",
)

# torch's OpenMP threads sleep between forward passes instead of spinning: spinning threads burn the
# cores that request threads need for decoding (measured: 24 -> 6 ms CPU per request with the trivial
# model; see docs/benchmarks.md). Read by libgomp when torch is imported, which happens after settings.
os.environ["OMP_WAIT_POLICY"] = config.str(
    "OMP_WAIT_POLICY",
    "PASSIVE",
    "torch's OpenMP threads sleep between batches instead of spinning on the cores that decode images",
    shown="`PASSIVE` (set by the app)",
)

# --- Metrics -----------------------------------------------------------------------------------
config.begin("Metrics")
# /metrics (Prometheus) answers staff sessions with METRICS_PERMISSION, and scrapers sending "Authorization: Bearer <token>" when
# this is set; everyone else gets 404. Multi-worker totals need PROMETHEUS_MULTIPROC_DIR (see docs/performance.md).
METRICS_TOKEN = config.str(
    "METRICS_TOKEN",
    "",
    "lets a scraper read `/metrics` with `Authorization: Bearer <token>` (the scheme is required); staff sessions with `accounts.view_requestlog` can always read it; anyone else gets 404",
    shown="empty",
)
# A folder shared by the worker processes, where prometheus_client (which reads this variable itself) keeps each
# worker's values so /metrics adds them up; empty: this process's values only (one worker).
PROMETHEUS_MULTIPROC_DIR = config.str(
    "PROMETHEUS_MULTIPROC_DIR",
    "",
    "an empty directory shared by the workers, so `/metrics` adds up every worker (needed with more than one)",
    shown="empty",
)
# The permission a staff session needs to read /metrics (request counts by endpoint and status, as the log admin).
METRICS_PERMISSION = "accounts.view_requestlog"

# --- REST framework and OpenAPI ----------------------------------------------------------------
REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.AllowAny"],
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    "DEFAULT_PARSER_CLASSES": [
        "classifier.api.parsers.SafeJSONParser",
        "rest_framework.parsers.MultiPartParser",
    ],
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "EXCEPTION_HANDLER": "classifier.api.exceptions.api_exception_handler",
    "UNAUTHENTICATED_USER": None,
}
SPECTACULAR_SETTINGS = {
    "TITLE": "aiserver image classification API",
    "DESCRIPTION": (
        "Classify images with a torchvision model. Authenticate with `Authorization: Bearer <key>` "
        'or `X-API-Key: <key>`. Errors are JSON `{"detail": ..., "code": ...}`.'
    ),
    "VERSION": "1.1.0",  # 1.1: per-image errors carry detail (message kept one release)
    "SERVE_INCLUDE_SCHEMA": False,
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    "COMPONENT_SPLIT_REQUEST": True,
    # Keys pasted into "Authorize" stay in the page, never in localStorage (which outlives the tab).
    "SWAGGER_UI_SETTINGS": {"persistAuthorization": False},
    # Two "status" choice sets: a loaded model's, and a registered version's.
    "ENUM_NAME_OVERRIDES": {
        "ModelStatusEnum": ["loaded", "loading", "unavailable"],
        "VersionStatusEnum": ["staged", "active", "retired"],
        "EngineEnum": ["torch", "onnxruntime", "openvino"],  # a model's engine, and the engine that answered
    },
}

# --- Logs ---------------------------------------------------------------------------------------
config.begin("Logs")
# "text" (one readable line per record) or "json" (one JSON object per line, for log shippers: aiserver.log_format).
DJANGO_LOG_FORMAT = config.str(
    "DJANGO_LOG_FORMAT",
    "text",
    "`text` (one readable line per record) or `json` (one JSON object per line: see [Structured logs](deployment.md#structured-logs))",
    shown="`text`",
)
if DJANGO_LOG_FORMAT not in ("text", "json"):
    raise ImproperlyConfigured(f"DJANGO_LOG_FORMAT must be text or json (got {DJANGO_LOG_FORMAT!r}).")
_console = {"handlers": ["console"], "propagate": False}
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {
        "text": {"format": "%(asctime)s %(levelname)s %(name)s: %(message)s"},
        "json": {"()": "aiserver.log_format.JsonFormatter"},
    },
    "filters": {"skip_503": {"()": "aiserver.log_format.SkipServiceUnavailable"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": DJANGO_LOG_FORMAT}},
    "root": {"handlers": ["console"], "level": config.str("DJANGO_LOG_LEVEL", "INFO", "log level", shown="`INFO`")},
    "loggers": {
        # Django's own console handler (debug only) would print each of its records a second time.
        "django": {"handlers": ["console"], "propagate": False},
        "django.request": {"level": "ERROR", "filters": ["skip_503"]},
        # uvicorn's own lines (errors, and access lines when its log level lets them through) in the same format
        **({"uvicorn.error": _console, "uvicorn.access": _console} if DJANGO_LOG_FORMAT == "json" else {}),
    },
}
