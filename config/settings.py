"""Pairwise settings: one module, every value from the environment (see .env.example).

With no DATABASE_URL the app runs on a SQLite file, and with no CELERY_BROKER_URL Celery uses
Kombu's filesystem transport under var/: the "embedded default" that lets `make run` work on a
laptop with only Python. Production and the test suite use PostgreSQL and Redis.
"""

import os
from pathlib import Path

import environ

BASE_DIR = Path(__file__).resolve().parent.parent
env = environ.Env()
environ.Env.read_env(BASE_DIR / ".env", overwrite=False)
# pyarrow's allocator (mimalloc) keeps freed pages for a while by default; a Parquet export then
# held about 30 MiB more in the web process. Read when pyarrow first loads, so it is set here,
# before anything imports it; a value from the environment or .env wins.
os.environ.setdefault("MIMALLOC_PURGE_DELAY", "0")

# Local state of the embedded default: the SQLite file, the broker folder, checkpoints.
VAR_DIR = Path(env.str("PAIRWISE_VAR_DIR", default=str(BASE_DIR / "var")))

DEBUG = env.bool("DEBUG", default=False)
# DEBUG is for `make run` on a laptop; anything else is treated as production.
SECRET_KEY = env.str("SECRET_KEY", default="")
if DEBUG and not SECRET_KEY:
    SECRET_KEY = "dev-only-" + "x" * 50  # never used outside DEBUG: see the check below
if not DEBUG and (len(SECRET_KEY) < 50 or SECRET_KEY.startswith(("django-insecure-", "dev-only-"))):
    raise environ.ImproperlyConfigured(
        "SECRET_KEY must be set to a random string of at least 50 characters in production "
        '(python -c "import secrets; print(secrets.token_urlsafe(64))").'
    )

ALLOWED_HOSTS = env.list("ALLOWED_HOSTS", default=["127.0.0.1", "localhost"] if DEBUG else [])
CSRF_TRUSTED_ORIGINS = env.list("CSRF_TRUSTED_ORIGINS", default=[])

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "django_htmx",
    "template_partials",
    "rest_framework",
    "rest_framework.authtoken",
    "drf_spectacular",
    "annotation.apps.AnnotationConfig",
    "rewardtrain.apps.RewardtrainConfig",
    "drf_spectacular_sidecar",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "django_htmx.middleware.HtmxMiddleware",
    "config.middleware.ContentSecurityPolicyMiddleware",
    "config.middleware.DatabaseUnavailableMiddleware",
]

ROOT_URLCONF = "config.urls"
WSGI_APPLICATION = "config.wsgi.application"

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

DATABASES = {
    "default": env.db("DATABASE_URL", default=f"sqlite:///{VAR_DIR / 'pairwise.sqlite3'}"),
}
DATABASES["default"]["CONN_MAX_AGE"] = env.int("CONN_MAX_AGE", default=60)
DATABASES["default"]["CONN_HEALTH_CHECKS"] = True  # reconnect by itself after a PostgreSQL restart
if DATABASES["default"]["ENGINE"] == "django.db.backends.postgresql" and env.bool(
    "DATABASE_PREPARED_STATEMENTS", default=True
):
    # Server-side binding lets psycopg prepare a statement once it has run a few times on a
    # connection: planning the rater's join queries cost PostgreSQL more than running them.
    # Turn off behind a pooler in transaction mode that cannot keep prepared statements.
    DATABASES["default"]["OPTIONS"] = {"server_side_binding": True, "prepare_threshold": 5}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    Path(DATABASES["default"]["NAME"]).parent.mkdir(parents=True, exist_ok=True)
    DATABASES["default"]["OPTIONS"] = {
        # WAL and a busy timeout let web, worker and beat share the file without "locked" errors.
        "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
        "timeout": 20,
        "transaction_mode": "IMMEDIATE",
    }
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "annotation:home"
LOGOUT_REDIRECT_URL = "login"
# Sessions live in the database, never in Redis: raters keep rating with Redis down.
SESSION_ENGINE = "django.contrib.sessions.backends.db"
# Failed logins allowed within the window (counted in the database, see
# annotation.services.login_throttle): for one username from one client address; from one
# address, any username (raise it behind a shared NAT); and for one username from all addresses
# together, a ceiling high enough that no single address can lock a user out.
LOGIN_FAILURE_LIMITS = {
    "per_username_and_ip": 10,
    "per_ip": 50,
    "per_username": 100,
    "window_minutes": 15,
    **env.json("LOGIN_FAILURE_LIMITS", default={}),
}
# The request.META key holding the client address; behind a proxy that sets X-Real-IP, use
# HTTP_X_REAL_IP. Never name a header that clients can set themselves.
CLIENT_IP_HEADER = env.str("CLIENT_IP_HEADER", default="REMOTE_ADDR")

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATICFILES_DIRS = [BASE_DIR / "static"]
STATIC_ROOT = Path(env.str("STATIC_ROOT", default=str(BASE_DIR / "staticfiles")))
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {
        "BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"
        if DEBUG
        else "whitenoise.storage.CompressedManifestStaticFilesStorage"
    },
}
DATA_UPLOAD_MAX_MEMORY_SIZE = 10 * 1024 * 1024
FILE_UPLOAD_MAX_MEMORY_SIZE = 2 * 1024 * 1024  # larger uploads spool to a temporary file

# Security headers. HTTPS (on by default outside DEBUG) turns on the redirect, HSTS and secure
# cookies; set HTTPS=false only behind a proxy that terminates TLS elsewhere, or in tests.
HTTPS = env.bool("HTTPS", default=not DEBUG)
SECURE_SSL_REDIRECT = HTTPS
SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
SECURE_HSTS_SECONDS = 31536000 if HTTPS else 0
SECURE_HSTS_INCLUDE_SUBDOMAINS = HTTPS
SECURE_HSTS_PRELOAD = HTTPS
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"
SESSION_COOKIE_SECURE = HTTPS
CSRF_COOKIE_SECURE = HTTPS
SESSION_COOKIE_HTTPONLY = True
X_FRAME_OPTIONS = "DENY"
CONTENT_SECURITY_POLICY = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; frame-ancestors 'none'; form-action 'self'; base-uri 'none'; "
    "object-src 'none'"
)

REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        # Token first, so that an unauthenticated call gets 401 with WWW-Authenticate.
        "config.authentication.TokenAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_SCHEMA_CLASS": "config.openapi.ErrorDocumentingAutoSchema",  # 400/401/403/404 too
    "DEFAULT_THROTTLE_RATES": {"login": "10/min"},
}
SPECTACULAR_SETTINGS = {
    "TITLE": "Pairwise API",
    "DESCRIPTION": "Collect pairwise preferences on LLM outputs and train reward models.",
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    "SWAGGER_UI_DIST": "SIDECAR",  # vendored: no CDN
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "COMPONENT_SPLIT_REQUEST": True,
    # One name for the left/right/tie/both_bad choices, wherever a serializer uses them.
    "ENUM_NAME_OVERRIDES": {"ShownChoiceEnum": "annotation.services.rating.SHOWN_CHOICES"},
}

# Celery: JSON only, no results kept (state lives in PostgreSQL), fail fast with the broker down.
CELERY_BROKER_URL = env.str("CELERY_BROKER_URL", default="filesystem://localhost/")
CELERY_BROKER_TRANSPORT_OPTIONS: dict[str, object]
if CELERY_BROKER_URL.startswith("filesystem://"):
    _queue_dir = VAR_DIR / "celery-broker"
    CELERY_BROKER_TRANSPORT_OPTIONS = {
        "data_folder_in": str(_queue_dir),
        "data_folder_out": str(_queue_dir),
        "control_folder": str(VAR_DIR / "celery-control"),
    }
else:
    CELERY_BROKER_TRANSPORT_OPTIONS = {
        "max_retries": 1,
        "interval_start": 0,
        "interval_step": 0.2,
        "socket_connect_timeout": 1,
        "socket_timeout": 2,
    }
CELERY_BROKER_CONNECTION_TIMEOUT = 1
CELERY_TASK_PUBLISH_RETRY = False  # fail fast: callers log and beat retries later
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
CELERY_TASK_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_RESULT_BACKEND = None
CELERY_TASK_IGNORE_RESULT = True
CELERY_TASK_ACKS_LATE = True
# With acks_late alone, a task whose worker process is killed (OOM, SIGKILL) is acknowledged and
# lost; rejected, it goes back to the queue. Redelivery is safe: every task is idempotent, and
# one whose work was taken (a running import or training run) returns at once, so an import or a
# run that kills its worker is not restarted by its own message: only the beat sweeps retry them,
# a bounded number of times.
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_DEFAULT_QUEUE = "default"
CELERY_TASK_ROUTES = {"rewardtrain.tasks.*": {"queue": "training"}}
CELERY_TASK_TIME_LIMIT = 60 * 60
CELERY_BEAT_SCHEDULE_FILENAME = str(VAR_DIR / "celerybeat-schedule")
# How often beat looks for published versions that left open pairs unscored; also how recent
# a pool scoring's heartbeat must be for the sweep to count it as running (one batch takes well
# under a minute, so 600 s leaves room for a slow host).
POOL_SWEEP_SECONDS = env.float("POOL_SWEEP_SECONDS", default=600.0)
CELERY_BEAT_SCHEDULE = {
    "refresh-project-stats": {
        "task": "annotation.tasks.project_stats_refresh_all",
        "schedule": env.float("STATS_REFRESH_SECONDS", default=300.0),
    },
    # On the default queue: a busy or dead training worker must not hold up finding dead runs.
    "schedule-training-runs": {
        "task": "rewardtrain.tasks.training_runs_schedule",
        "schedule": env.float("TRAINING_SCHEDULE_SECONDS", default=300.0),
        "options": {"queue": "default"},
    },
    "sweep-training-runs": {
        "task": "rewardtrain.tasks.training_runs_sweep",
        "schedule": env.float("TRAINING_SWEEP_SECONDS", default=120.0),
        "options": {"queue": "default"},
    },
    # A lost pool-scoring message (broker down or restarted) leaves new pairs unranked, served
    # after every scored one, until the next import or publication. This bounds that delay; a
    # tick with nothing to score costs one query, and a pool being scored (its heartbeat within
    # the interval) is not sent again.
    "sweep-pool-scoring": {
        "task": "rewardtrain.tasks.pool_score_sweep",
        "schedule": POOL_SWEEP_SECONDS,
        "options": {"queue": "default"},
    },
    "sweep-imports": {
        "task": "annotation.tasks.batch_imports_sweep",
        "schedule": env.float("IMPORT_SWEEP_SECONDS", default=60.0),
    },
    "clean-staged-uploads": {
        "task": "annotation.tasks.staged_uploads_clean",
        "schedule": 3600.0,
    },
    "clean-orphan-rejects": {
        "task": "annotation.tasks.rejects_orphans_clean",
        "schedule": 3600.0,
    },
    "refresh-agreement-reports": {
        "task": "annotation.tasks.agreement_report_refresh_due",
        "schedule": env.float("AGREEMENT_REFRESH_SECONDS", default=300.0),
    },
}

# Untrusted Markdown (annotation.templatetags.pairwise_markdown): a text longer than this is shown
# as plain, escaped text instead (markdown-it-py formats some 50-200 KB a second, worst case), and
# a rendered text is kept in the "markdown" cache, keyed by a hash of the text and the renderer,
# so each web process renders it once. The cache is per process and holds at most this many texts
# (a rendering is at most ~3 times its text: 200 of them take 110 MB at worst, a few MB typically).
MARKDOWN_RENDER_MAX_CHARS = env.int("MARKDOWN_RENDER_MAX_CHARS", default=200_000)
MARKDOWN_CACHE_ENTRIES = env.int("MARKDOWN_CACHE_ENTRIES", default=200)
CACHES = {
    "default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"},
    "markdown": {
        "BACKEND": "django.core.cache.backends.locmem.LocMemCache",
        "LOCATION": "markdown",
        "TIMEOUT": None,  # a rendering never goes stale: the key changes with text or renderer
        "OPTIONS": {"MAX_ENTRIES": MARKDOWN_CACHE_ENTRIES},
    },
}

# Upload limits (annotation.imports.records.ImportLimits); anything not named keeps its default.
IMPORT_LIMITS = env.json("IMPORT_LIMITS", default={})
# Uploads wait here between their dry run and their import (web and workers must share it).
IMPORT_UPLOAD_DIR = Path(env.str("IMPORT_UPLOAD_DIR", default=str(VAR_DIR / "uploads")))
# With on_invalid=skip, the original lines of the records left out are kept here (one file per
# batch, its first IMPORT_REJECTS_MAX_BYTES) for download from the batches page and the API.
IMPORT_REJECTS_DIR = Path(env.str("IMPORT_REJECTS_DIR", default=str(VAR_DIR / "rejects")))
IMPORT_REJECTS_MAX_BYTES = env.int("IMPORT_REJECTS_MAX_BYTES", default=50 * 1024 * 1024)
# Files over either threshold import in a worker while the page polls its progress.
IMPORT_BACKGROUND_BYTES = env.int("IMPORT_BACKGROUND_BYTES", default=20 * 1024 * 1024)
IMPORT_BACKGROUND_RECORDS = env.int("IMPORT_BACKGROUND_RECORDS", default=50_000)
# A background import ends within IMPORT_TIME_LIMIT seconds (under Redis's one-hour visibility
# timeout, so a running task is never handed to a second worker). The sweep (beat, every
# IMPORT_SWEEP_SECONDS) sends a pending batch again when IMPORT_HEARTBEAT_TIMEOUT seconds passed
# since it was sent (the broker may have been down), and gives a running batch whose worker sent
# no heartbeat for as long to a new worker, up to IMPORT_MAX_ATTEMPTS starts in all, then fails it.
IMPORT_TIME_LIMIT = env.int("IMPORT_TIME_LIMIT", default=45 * 60)
IMPORT_HEARTBEAT_TIMEOUT = env.float("IMPORT_HEARTBEAT_TIMEOUT", default=120.0)
IMPORT_MAX_ATTEMPTS = env.int("IMPORT_MAX_ATTEMPTS", default=3)

CHECKPOINT_ROOT = Path(env.str("CHECKPOINT_ROOT", default=str(VAR_DIR / "checkpoints")))
# Training: a run ends within this many seconds (soft limit: the run fails cleanly), and a RUNNING
# run whose worker sent no heartbeat for TRAINING_HEARTBEAT_TIMEOUT seconds is queued again, up
# to TRAINING_MAX_ATTEMPTS starts in all, then failed.
TRAINING_TIME_LIMIT = env.int("TRAINING_TIME_LIMIT", default=6 * 60 * 60)
TRAINING_HEARTBEAT_TIMEOUT = env.float("TRAINING_HEARTBEAT_TIMEOUT", default=600.0)
TRAINING_MAX_ATTEMPTS = env.int("TRAINING_MAX_ATTEMPTS", default=2)
# A run's bundle (its attempt's training pairs, under CHECKPOINT_ROOT/_runs) is its record while
# someone may still look into a run; the sweep removes it this many days after the run finished
# (0: never). A million pairs make about a gigabyte.
TRAINING_BUNDLE_KEEP_DAYS = env.float("TRAINING_BUNDLE_KEEP_DAYS", default=30.0)
# Below this many held-out pairs the training page calls an accuracy "not yet meaningful" and
# does not headline it: on 7 pairs, 0.857 has a 95% interval of about 0.49 to 0.97.
TRAINING_MIN_HELDOUT_PAIRS = env.int("TRAINING_MIN_HELDOUT_PAIRS", default=50)
# Where runs train (rewardtrain/launchers.py, docs/training.md): "inline" in the worker process,
# "torchrun" as TRAINING_PROCESSES processes per node under torch.distributed.run (with
# TRAINING_TORCHRUN_ARGS, e.g. "--nnodes 2 --rdzv-backend c10d --rdzv-endpoint head:29500"),
# or "command": TRAINING_LAUNCH_COMMAND ("sbatch train.sbatch {run_dir}") is submitted and the
# sweep follows the run's progress file. The training worker's own settings decide.
TRAINING_LAUNCHER = env.str("TRAINING_LAUNCHER", default="inline")
if TRAINING_LAUNCHER not in ("inline", "torchrun", "command"):
    raise environ.ImproperlyConfigured(
        f"TRAINING_LAUNCHER={TRAINING_LAUNCHER!r}: use inline, torchrun or command"
    )
TRAINING_PROCESSES = env.int("TRAINING_PROCESSES", default=1)
if TRAINING_PROCESSES < 1:
    raise environ.ImproperlyConfigured("TRAINING_PROCESSES must be at least 1")
TRAINING_TORCHRUN_ARGS = env.str("TRAINING_TORCHRUN_ARGS", default="--standalone")
TRAINING_LAUNCH_COMMAND = env.str("TRAINING_LAUNCH_COMMAND", default="")
# The score server (manage.py score_server) that answers the score API; never exposed publicly.
SCORE_SERVER_URL = env.str("SCORE_SERVER_URL", default="http://127.0.0.1:8765")
SCORE_SERVER_TIMEOUT = env.float("SCORE_SERVER_TIMEOUT", default=30.0)
# The secret every score request carries to the score server; blank: derived from SECRET_KEY.
SCORE_SERVER_SECRET = env.str("SCORE_SERVER_SECRET", default="")
# Base models a project may train from: model directories under these roots (comma-separated
# absolute paths), besides the bundled MiniLM. The checkpoint store never counts as one.
BASE_MODEL_ROOTS = [Path(root) for root in env.list("BASE_MODEL_ROOTS", default=[])]
DEMO_DATA_DIR = BASE_DIR / "annotation" / "demo_data"

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "root": {"handlers": ["console"], "level": env.str("LOG_LEVEL", default="INFO")},
}
