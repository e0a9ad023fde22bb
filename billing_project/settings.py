"""Django settings. Every value that differs between machines comes from the environment here."""

import os
import warnings
from datetime import timedelta
from pathlib import Path

import dj_database_url
import isodate

BASE_DIR = Path(__file__).resolve().parent.parent
LOCAL_DIR = Path(os.environ.get("BILLING_LOCAL_DIR", BASE_DIR / ".local"))


def env_bool(name: str, default: bool = False) -> bool:
    value = os.environ.get(name)
    if value is None:
        return default
    return value.strip().lower() in {"1", "true", "yes", "on"}


def env_list(name: str, default: str) -> list[str]:
    return [item.strip() for item in os.environ.get(name, default).split(",") if item.strip()]


def env_duration(name: str, default: str) -> timedelta:
    value = isodate.parse_duration(os.environ.get(name, default))
    if not isinstance(value, timedelta):  # months/years have no fixed length
        raise ValueError(f"{name} must be a fixed ISO 8601 duration such as P1D or PT6H")
    return value


DEBUG = env_bool("DEBUG", False)
SECRET_KEY = os.environ.get("SECRET_KEY", "")
if not SECRET_KEY:
    if not DEBUG and env_bool("BILLING_REQUIRE_SECRET_KEY", False):
        raise RuntimeError("SECRET_KEY must be set")
    # Development and tests only: the launcher sets a random key per machine for `make run`.
    SECRET_KEY = "insecure-development-key-set-SECRET_KEY-in-production"
ALLOWED_HOSTS = env_list("ALLOWED_HOSTS", "localhost,127.0.0.1,[::1],testserver")
CSRF_TRUSTED_ORIGINS = env_list("CSRF_TRUSTED_ORIGINS", "")

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "whitenoise.runserver_nostatic",
    "django.contrib.staticfiles",
    "rest_framework",
    "django_filters",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "django_celery_beat",
    "ledgers",
    "metering",
    "grants",
    "entitlements",
    "invoicing",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "billing_project.middleware.BodySizeLimitMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "billing_project.idempotency.IdempotencyMiddleware",
]

ROOT_URLCONF = "billing_project.urls"
WSGI_APPLICATION = "billing_project.wsgi.application"

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

DATABASE_URL = os.environ.get("DATABASE_URL", "")
if not DATABASE_URL:
    raise RuntimeError(
        "DATABASE_URL is not set: use `make run` / `make test` (they start an embedded "
        "PostgreSQL) or point DATABASE_URL at a PostgreSQL 15+ server"
    )
DATABASES = {
    "default": dj_database_url.parse(
        DATABASE_URL, conn_max_age=int(os.environ.get("DB_CONN_MAX_AGE", "60")),
        conn_health_checks=True,
    )
}
if not DATABASES["default"]["ENGINE"].endswith("postgresql"):
    raise RuntimeError("DATABASE_URL must point at PostgreSQL")
DATABASES["default"]["ATOMIC_REQUESTS"] = True
# Short OLTP queries: PostgreSQL's JIT costs ~25 ms per usage query at 1M events.
DATABASES["default"].setdefault("OPTIONS", {})["options"] = "-c jit=off"
# Django turns psycopg's prepared statements off (None) for connection poolers. The few hot
# statements that ask for one (billing_project.db.execute_prepared) get it; nothing is
# prepared automatically (the threshold is never reached). DB_PREPARED_STATEMENTS=0 for a
# pooler that cannot keep them (PgBouncer in transaction mode before 1.21).
if env_bool("DB_PREPARED_STATEMENTS", True):
    DATABASES["default"]["OPTIONS"]["prepare_threshold"] = 2**31 - 1
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
]

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = BASE_DIR / "staticfiles"
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "whitenoise.storage.CompressedStaticFilesStorage"},
}
WHITENOISE_USE_FINDERS = True  # serves static files from the apps when not collected
warnings.filterwarnings("ignore", message="No directory at")  # whitenoise, STATIC_ROOT
WHITENOISE_AUTOREFRESH = DEBUG

# Requests: 5 MB bodies at most (API.md §0/§2), enforced for the API by BodySizeLimitMiddleware.
BILLING_MAX_BODY_BYTES = 5 * 1024 * 1024
DATA_UPLOAD_MAX_MEMORY_SIZE = BILLING_MAX_BODY_BYTES
DATA_UPLOAD_MAX_NUMBER_FIELDS = 10_000

BILLING_INGEST_GRACE_PERIOD = env_duration("BILLING_INGEST_GRACE_PERIOD", "P1D")
BILLING_IDEMPOTENCY_TTL = env_duration("BILLING_IDEMPOTENCY_TTL", "P1D")
BILLING_INVOICE_GRACE_PERIOD = env_duration("BILLING_INVOICE_GRACE_PERIOD", "P1D")
BILLING_SELLER_NAME = os.environ.get("BILLING_SELLER_NAME", "Usage Billing")
BILLING_SELLER_ADDRESS = os.environ.get("BILLING_SELLER_ADDRESS", "")
BILLING_PUBLIC_URL = os.environ.get("BILLING_PUBLIC_URL", "http://127.0.0.1:8000").rstrip("/")

REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": ["billing_project.auth.ApiKeyAuthentication"],
    "DEFAULT_PERMISSION_CLASSES": ["billing_project.auth.HasScope"],
    "DEFAULT_PARSER_CLASSES": ["billing_project.api.DecimalJSONParser"],
    "DEFAULT_RENDERER_CLASSES": ["billing_project.api.JSONRenderer"],
    "DEFAULT_PAGINATION_CLASS": "billing_project.pagination.OrbCursorPagination",
    "DEFAULT_FILTER_BACKENDS": ["django_filters.rest_framework.DjangoFilterBackend"],
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "EXCEPTION_HANDLER": "billing_project.errors.problem_exception_handler",
    "UNAUTHENTICATED_USER": None,
    "PAGE_SIZE": 20,
}

SPECTACULAR_SETTINGS = {
    "TITLE": "Usage billing API",
    "DESCRIPTION": "Metering, prepaid credits, entitlements and invoicing (see API.md).",
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    "COMPONENT_SPLIT_REQUEST": True,
    "SCHEMA_PATH_PREFIX": r"/v1",
}

# Celery: Redis (or any kombu URL) via CELERY_BROKER_URL; without it an embedded filesystem
# broker in the local folder, which needs no server.
CELERY_BROKER_URL = os.environ.get("CELERY_BROKER_URL", "") or "filesystem://"
CELERY_BROKER_TRANSPORT_OPTIONS = {}
if CELERY_BROKER_URL.startswith("filesystem://"):
    _broker_dir = Path(os.environ.get("CELERY_BROKER_FOLDER", LOCAL_DIR / "broker"))
    for _sub in ("queue", "processed", "control"):
        (_broker_dir / _sub).mkdir(parents=True, exist_ok=True)
    CELERY_BROKER_TRANSPORT_OPTIONS = {
        "data_folder_in": str(_broker_dir / "queue"),
        "data_folder_out": str(_broker_dir / "queue"),
        "processed_folder": str(_broker_dir / "processed"),
        "control_folder": str(_broker_dir / "control"),
        "store_processed": False,
    }
CELERY_RESULT_BACKEND = None
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_SERIALIZER = "json"
CELERY_TIMEZONE = "UTC"
CELERY_BEAT_SCHEDULER = "django_celery_beat.schedulers:DatabaseScheduler"
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": os.environ.get("LOG_LEVEL", "INFO")},
    "loggers": {"django.request": {"level": "ERROR", "propagate": True}},
}

if not DEBUG:
    SESSION_COOKIE_HTTPONLY = True
    SECURE_CONTENT_TYPE_NOSNIFF = True
    X_FRAME_OPTIONS = "DENY"
