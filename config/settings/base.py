"""Settings shared by every place Lattice runs.

Everything that differs between machines is read from the environment with
django-environ. Production also reads a ``.env`` file (config/settings/production.py).
``.env.example`` lists every variable; ``tests/platform/test_deploy_files.py`` keeps the
two in step.
"""

from __future__ import annotations

import hashlib
import sys
from pathlib import Path
from typing import Any

import environ
from csp.constants import NONE, SELF

BASE_DIR = Path(__file__).resolve().parents[2]
VAR_DIR = BASE_DIR / "var"

env = environ.Env()
if env.str("DJANGO_SETTINGS_MODULE", default="") == "config.settings.production":
    # Only production reads .env: a copy of .env.example in a developer's checkout
    # must not switch `make dev` or the tests to S3 and SMTP.
    environ.Env.read_env(BASE_DIR / ".env", overwrite=False)

DEBUG = env.bool("DJANGO_DEBUG", default=False)
ALLOWED_HOSTS: list[str] = env.list("DJANGO_ALLOWED_HOSTS", default=[])
CSRF_TRUSTED_ORIGINS: list[str] = env.list("DJANGO_CSRF_TRUSTED_ORIGINS", default=[])
# User content (JupyterLab) is served on origins of its own, nb-<id>.<this domain>, never
# on Lattice's (docs/notebooks.md, "Opening JupyterLab"). Browsers resolve *.localhost to
# this machine, so the embedded default needs no DNS; production needs a registrable
# domain of its own with wildcard DNS and a wildcard certificate (config/user_content.py).
LATTICE_USER_CONTENT_DOMAIN = (
    (env.str("LATTICE_USER_CONTENT_DOMAIN", default="") or "localhost").lower().strip(".")
)

LATTICE_SITE_NAME = "Lattice"

# True in a process whose server (uvicorn, as in production; daphne's CLI) imported
# config.asgi before the settings: that module loads them. Such a process leaves out daphne's
# app, which only adds its runserver (manage.py runserver / dev) and imports Twisted, autobahn
# and pyOpenSSL at start-up: about 28 MiB of the web process's RSS.
SERVED_BY_ASGI_SERVER = "config.asgi" in sys.modules

# --- Applications ---------------------------------------------------------------

INSTALLED_APPS = [
    # daphne's runserver serves ASGI (HTTP and websockets) in development.
    *([] if SERVED_BY_ASGI_SERVER else ["daphne"]),
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "django.contrib.humanize",
    "allauth",
    "allauth.account",
    "allauth.mfa",
    "allauth.usersessions",
    "django_celery_beat",
    "rest_framework",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "apps.core",
    "apps.accounts",
    "apps.teams",
    "apps.machines",
    "apps.runtimes",
    "apps.notebooks",
    "apps.billing",
    "apps.datasets",
    "apps.models",
    "apps.jobs",
    "apps.deployments",
]

MIDDLEWARE = [
    # First, so its response work runs last: a streamed response holds no pooled connection.
    "apps.core.middleware.StreamingReleasesConnectionMiddleware",
    "apps.core.middleware.HealthProbeMiddleware",
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "csp.middleware.CSPMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "allauth.account.middleware.AccountMiddleware",
    "allauth.usersessions.middleware.UserSessionsMiddleware",
]

ROOT_URLCONF = "config.urls"
ASGI_APPLICATION = "config.asgi.application"
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
                "apps.core.context_processors.site",
                "apps.teams.context_processors.memberships",
                "apps.billing.context_processors.billing_notice",
            ],
        },
    },
]

# --- Data -------------------------------------------------------------------------

DATABASES = {
    "default": env.db_url_config(
        env.str("DATABASE_URL", default="") or f"sqlite:///{VAR_DIR / 'lattice.sqlite3'}",
    ),
}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # The embedded default writes from web threads and the in-process worker at
    # once: WAL lets readers go on while one writes, IMMEDIATE takes the write
    # lock up front so two writers queue instead of failing mid-transaction.
    DATABASES["default"].setdefault("OPTIONS", {}).update(
        {
            "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
            "transaction_mode": "IMMEDIATE",
            "timeout": 20,
        },
    )
elif env.bool("DATABASE_POOL", default=True):
    # PostgreSQL: a connection pool per process (psycopg_pool, Django's "pool" option), not
    # persistent connections. Under ASGI a request's sync code runs on whichever executor
    # thread asgiref picks, and the Celery workers run tasks on threads: CONN_MAX_AGE keeps
    # one connection per thread (idle ones pile up with the threads, each checked again by
    # CONN_HEALTH_CHECKS), while a pool shares a few open connections among all of them.
    # Django hands the connection back at the end of every request and task (where it
    # closed it before), so each one costs a checkout instead of a TCP + auth handshake
    # (~2-5 ms here; bench/scheduler.py).
    # Nothing keeps a connection while it waits: a streamed response (log followers,
    # downloads) starts with its connection given back and takes one per check
    # (apps.core.middleware, apps.core.db); websocket consumers borrow one per
    # database_sync_to_async call; worker threads give theirs back after each task
    # (celery's Django fixup, apps.core.worker). So a connection is held only while
    # queries run, and 20 serve a web process's hundreds of requests per second.
    # Size: each process opens up to max_size, on demand (min_size kept open). The budget
    # is the server's max_connections (PostgreSQL's default 100, a few reserved):
    # web processes x max_size + each Celery process (prefork: one per child, using one
    # connection at a time, so about min_size each) + beat must stay below it; with
    # docker-compose's one web, 4-child worker and beat that is 20 + 5 x 2 + 2 = 32.
    # More web processes: raise max_connections or lower DATABASE_POOL_MAX_SIZE.
    # Exhaustion: a checkout waits up to `timeout` s, then the request fails with
    # OperationalError "couldn't get a connection after N sec" (logged with its 500). A
    # burst of short requests waits milliseconds; seconds mean something holds the pool,
    # so the wait is short: fail and say so rather than stall every client 10 s.
    DATABASES["default"]["CONN_MAX_AGE"] = 0  # Django refuses a pool with persistent ones
    # The pool checks a connection before it lends it (an empty query): one left broken
    # by a server restart or a network cut is replaced instead of failing a request.
    DATABASES["default"]["CONN_HEALTH_CHECKS"] = True
    DATABASES["default"].setdefault("OPTIONS", {})["pool"] = {
        "min_size": env.int("DATABASE_POOL_MIN_SIZE", default=2),
        "max_size": env.int("DATABASE_POOL_MAX_SIZE", default=20),
        "timeout": env.float("DATABASE_POOL_TIMEOUT", default=5.0),
    }
else:
    DATABASES["default"]["CONN_MAX_AGE"] = env.int("DATABASE_CONN_MAX_AGE", default=0)
    DATABASES["default"]["CONN_HEALTH_CHECKS"] = True

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# Redis is optional: without it the embedded default uses in-process
# transports (see config/settings/local.py and README "Background work").
REDIS_URL: str = env("REDIS_URL", default="")

CACHES: dict[str, dict[str, Any]]
CHANNEL_LAYERS: dict[str, dict[str, Any]]
if REDIS_URL:
    CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": REDIS_URL,
        },
    }
    # Pub/sub: a message to a group crosses Redis once per web process, not once
    # per viewer. Delivery is at most once; live streams fill holes from their
    # own buffer (apps.core.stream), so nothing they carry depends on it.
    CHANNEL_LAYERS = {
        "default": {
            "BACKEND": "channels_redis.pubsub.RedisPubSubChannelLayer",
            "CONFIG": {"hosts": [REDIS_URL]},
        },
    }
else:
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}
    CHANNEL_LAYERS = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}

# --- Storage ----------------------------------------------------------------------

# An empty value counts as unset, as it does for every optional variable here.
MEDIA_ROOT = Path(env.str("LATTICE_MEDIA_ROOT", default="") or VAR_DIR / "media")
MEDIA_URL = "/media/"
STATIC_URL = "/static/"
STATIC_ROOT = Path(env.str("LATTICE_STATIC_ROOT", default="") or VAR_DIR / "staticfiles")
STATICFILES_DIRS = [BASE_DIR / "static"]
# WhiteNoise expects the folder even when it serves from the finders.
STATIC_ROOT.mkdir(parents=True, exist_ok=True)

STORAGE_BACKEND = env.str("LATTICE_STORAGE", default="local")
if STORAGE_BACKEND == "s3":
    _default_storage: dict[str, Any] = {
        "BACKEND": "storages.backends.s3.S3Storage",
        "OPTIONS": {
            "bucket_name": env("AWS_STORAGE_BUCKET_NAME"),
            "endpoint_url": env.str("AWS_S3_ENDPOINT_URL", default="") or None,
            "region_name": env.str("AWS_S3_REGION_NAME", default="") or None,
            "access_key": env.str("AWS_ACCESS_KEY_ID", default="") or None,
            "secret_key": env.str("AWS_SECRET_ACCESS_KEY", default="") or None,
            "default_acl": None,
            "querystring_auth": True,
            "file_overwrite": False,
        },
    }
elif STORAGE_BACKEND == "local":
    _default_storage = {"BACKEND": "django.core.files.storage.FileSystemStorage"}
else:
    from django.core.exceptions import ImproperlyConfigured

    raise ImproperlyConfigured(f"LATTICE_STORAGE must be 'local' or 's3', not {STORAGE_BACKEND!r}")

# Where a browser sends dataset chunks itself: the S3 endpoint's origin.
_S3_ORIGINS: list[str] = []
if STORAGE_BACKEND == "s3":
    _endpoint = _default_storage["OPTIONS"]["endpoint_url"]
    _bucket = _default_storage["OPTIONS"]["bucket_name"]
    if _endpoint:
        _S3_ORIGINS.append("/".join(_endpoint.split("/")[:3]))
    else:
        _S3_ORIGINS.append(f"https://{_bucket}.s3.amazonaws.com")
        _S3_ORIGINS.append("https://*.amazonaws.com")

STORAGES = {
    "default": _default_storage,
    "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
}
# Served by WhiteNoise straight from the source folders unless collected.
WHITENOISE_USE_FINDERS = True

# --- Accounts (django-allauth) -------------------------------------------------------

AUTH_USER_MODEL = "accounts.User"
AUTHENTICATION_BACKENDS = [
    "django.contrib.auth.backends.ModelBackend",
    "allauth.account.auth_backends.AuthenticationBackend",
]
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {
        "NAME": "django.contrib.auth.password_validation.MinimumLengthValidator",
        "OPTIONS": {"min_length": 10},
    },
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]

LOGIN_URL = "account_login"
LOGIN_REDIRECT_URL = "core:dashboard"
ACCOUNT_LOGOUT_REDIRECT_URL = "account_login"

ACCOUNT_USER_MODEL_USERNAME_FIELD = None
ACCOUNT_USER_MODEL_EMAIL_FIELD = "email"
ACCOUNT_LOGIN_METHODS = {"email"}
ACCOUNT_SIGNUP_FIELDS = ["email*", "password1*"]
ACCOUNT_SIGNUP_FORM_CLASS = "apps.accounts.forms.SignupForm"
ACCOUNT_ADAPTER = "apps.accounts.adapter.AccountAdapter"
ACCOUNT_UNIQUE_EMAIL = True
ACCOUNT_EMAIL_VERIFICATION = "mandatory"
ACCOUNT_CONFIRM_EMAIL_ON_GET = False
ACCOUNT_EMAIL_CONFIRMATION_EXPIRE_DAYS = 3
ACCOUNT_LOGIN_ON_EMAIL_CONFIRMATION = True
ACCOUNT_LOGIN_ON_PASSWORD_RESET = False
ACCOUNT_SESSION_REMEMBER = None
ACCOUNT_PREVENT_ENUMERATION = True
ACCOUNT_EMAIL_SUBJECT_PREFIX = "[Lattice] "
ACCOUNT_DEFAULT_HTTP_PROTOCOL = env.str("LATTICE_HTTP_PROTOCOL", default="http")
# Sensitive account actions ask again (apps/accounts/reauthentication.py): allauth's email
# pages here, and Lattice's tokens, roles, ownership and team deletion with allauth's
# decorator. Pages take the password, a two-factor code, or a code mailed to a verified
# address (allauth's defaults; the last serves an account without a password); the API
# takes the first two.
ACCOUNT_REAUTHENTICATION_REQUIRED = True
ACCOUNT_REAUTHENTICATION_TIMEOUT = 300
# The primary address hears of password changes and resets, and of addresses added
# (apps.accounts.receivers) or removed. Password resets go to verified addresses only.
ACCOUNT_EMAIL_NOTIFICATIONS = True
ACCOUNT_FORMS = {"reset_password": "apps.accounts.allauth_forms.ResetPasswordForm"}
# allauth's defaults, spelled out so they are visible and reviewed: failed
# logins are limited per address and per account, and so are resets and signups.
ACCOUNT_RATE_LIMITS = {
    "change_password": "5/m/user",
    "manage_email": "10/m/user",
    "reset_password": "20/m/ip,5/m/key",
    "reauthenticate": "10/m/user",
    "reset_password_from_key": "20/m/ip",
    "signup": "20/m/ip",
    "login": "30/m/ip",
    "login_failed": "10/m/ip,5/5m/key",
    "confirm_email": "1/3m/key",
}

MFA_SUPPORTED_TYPES = ["totp", "recovery_codes"]
MFA_TOTP_ISSUER = LATTICE_SITE_NAME
MFA_RECOVERY_CODE_COUNT = 10

USERSESSIONS_TRACK_ACTIVITY = True

# --- Datasets (apps.datasets, docs/datasets.md) -------------------------------------

# Upload chunk size: S3 needs at least 5 MiB for every part but the last. An upload whose
# largest file would need more than 10,000 chunks (S3's most parts) gets larger ones.
# Each chunk is one request: 32 MiB keeps their fixed cost small (bench/upload).
LATTICE_UPLOAD_CHUNK_BYTES = env.int("LATTICE_UPLOAD_CHUNK_BYTES", default=32 * 1024 * 1024)
# An upload with no chunk for this long is abandoned (its chunks are deleted).
LATTICE_UPLOAD_ABANDON_DAYS = env.int("LATTICE_UPLOAD_ABANDON_DAYS", default=7)

# --- Models (apps.models) ---------------------------------------------------------------

# A host's ticket to save a notebook folder as a model version dies this long after its
# last use (or at once when the save ends): docs/hosts.md, "Saving a folder as a model".
LATTICE_SAVE_TICKET_SECONDS = env.int("LATTICE_SAVE_TICKET_SECONDS", default=900)
# A host's save or snapshot request that failed on the network or with a 5xx is tried again
# after this many seconds, doubling each time (apps.machines.savefolder; 4 tries in all).
LATTICE_SAVE_RETRY_BACKOFF = env.float("LATTICE_SAVE_RETRY_BACKOFF", default=0.5)

# --- Billing (apps.billing, docs/billing.md) ----------------------------------------

# Off: a self-hosted Lattice where plans, limits and Stripe do not apply. On: teams
# are on the default (Free) plan until they subscribe through Stripe.
LATTICE_BILLING = env.bool("LATTICE_BILLING", default=False)
STRIPE_SECRET_KEY = env.str("STRIPE_SECRET_KEY", default="")
STRIPE_WEBHOOK_SECRET = env.str("STRIPE_WEBHOOK_SECRET", default="")
# Another address for Stripe's API: the local test double in development (docs/billing.md).
STRIPE_API_BASE = env.str("STRIPE_API_BASE", default="")
# The metered price that bills usage, in cents, and the meter behind it (docs/billing.md).
STRIPE_USAGE_PRICE = env.str("STRIPE_USAGE_PRICE", default="")
STRIPE_USAGE_METER = env.str("STRIPE_USAGE_METER", default="")
STRIPE_USAGE_EVENT_NAME = env.str("STRIPE_USAGE_EVENT_NAME", default="lattice_usage_cents")
# After a failed payment, the paid plan holds this long before the team is on Free.
LATTICE_BILLING_GRACE_DAYS = env.int("LATTICE_BILLING_GRACE_DAYS", default=7)

# --- API (Django REST framework) ---------------------------------------------------

REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "apps.accounts.api.authentication.PersonalAccessTokenAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": [
        "rest_framework.permissions.IsAuthenticated",
        "apps.accounts.api.permissions.TokenScope",
    ],
    "DEFAULT_THROTTLE_CLASSES": [
        "apps.accounts.api.throttling.PerTokenThrottle",
        "apps.accounts.api.throttling.PerUserThrottle",
    ],
    "DEFAULT_PAGINATION_CLASS": "apps.core.api.pagination.Cursor",
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    "DEFAULT_PARSER_CLASSES": ["rest_framework.parsers.JSONParser"],
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "EXCEPTION_HANDLER": "apps.core.api.exceptions.api_exception_handler",
    "UNAUTHENTICATED_USER": "django.contrib.auth.models.AnonymousUser",
}
# Requests per period: per token, and per signed-in user (browser) or address.
LATTICE_API_RATES = {
    "token": env.str("LATTICE_API_TOKEN_RATE", default="1200/hour"),
    "user": env.str("LATTICE_API_USER_RATE", default="3600/hour"),
    # Upload chunks and their targets (apps.datasets): 40,000 an hour is 1.2 TiB of 32 MiB.
    "upload": env.str("LATTICE_API_UPLOAD_RATE", default="40000/hour"),
}
SPECTACULAR_SETTINGS = {
    "TITLE": "Lattice API",
    "DESCRIPTION": (
        "Teams, members, invitations, tokens, the audit log, and notebooks: make, start, "
        "stop, restart, duplicate and delete them, read their events, and read or follow "
        "their live log (NDJSON). Authenticate with a "
        "personal access token: `Authorization: Bearer lat_...`. Errors have one shape: "
        '`{"error": {"code", "message", "fields"?}}`.'
    ),
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    "SCHEMA_PATH_PREFIX": r"/api/v1",
    "COMPONENT_SPLIT_REQUEST": True,
    # Invitations and notebooks both have a "status": name the notebooks' one.
    "ENUM_NAME_OVERRIDES": {
        "NotebookStatusEnum": "apps.notebooks.models.Status",
        "ModelVersionStatusEnum": "apps.models.models.ModelVersion.Status",
        "DeploymentStatusEnum": "apps.deployments.models.Deployment.Status",
        "RevisionStatusEnum": "apps.deployments.models.Revision.Status",
        "ReplicaStatusEnum": "apps.deployments.models.Replica.Status",
        "JobSourceEnum": "apps.jobs.models.Job.Source",
        "RunStatusEnum": "apps.jobs.models.Run.Status",
        "AttemptStatusEnum": "apps.jobs.models.Attempt.Status",
        "ModelVersionSourceEnum": "apps.models.models.ModelVersion.Source",
    },
    # Served from drf-spectacular-sidecar, never from a CDN.
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
}

# --- Email ------------------------------------------------------------------------
# Every message goes through the queued backend: a request never waits for SMTP.
# The worker hands it to LATTICE_EMAIL_DELIVERY_BACKEND.

EMAIL_BACKEND = "apps.core.mail.QueuedEmailBackend"
LATTICE_EMAIL_DELIVERY_BACKEND = env.str(
    "LATTICE_EMAIL_DELIVERY_BACKEND",
    default="django.core.mail.backends.console.EmailBackend",
)
# The SMTP server, when delivery is SMTP: smtp+tls://USER:PASSWORD@smtp.example.com:587
_email = env.email_url_config(env.str("EMAIL_URL", default="") or "smtp://localhost:25")
EMAIL_HOST = _email["EMAIL_HOST"]
EMAIL_PORT = _email["EMAIL_PORT"]
EMAIL_HOST_USER = _email["EMAIL_HOST_USER"]
EMAIL_HOST_PASSWORD = _email["EMAIL_HOST_PASSWORD"]
EMAIL_USE_TLS = _email.get("EMAIL_USE_TLS", False)
EMAIL_USE_SSL = _email.get("EMAIL_USE_SSL", False)
DEFAULT_FROM_EMAIL = env.str("DEFAULT_FROM_EMAIL", default="Lattice <noreply@localhost>")
SERVER_EMAIL = DEFAULT_FROM_EMAIL

# --- Background work (Celery) ---------------------------------------------------

CELERY_BROKER_URL = REDIS_URL or "memory://localhost/"
# On Redis, kombu's transport with delivery_info stamped by the consumer (apps.core.broker).
CELERY_BROKER_TRANSPORT = "apps.core.broker:Transport" if REDIS_URL else None
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
# JSON only: a message is never unpickled, whoever wrote it (hosts write to the inbox).
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_RESULT_ACCEPT_CONTENT = ["json"]
CELERY_TASK_SERIALIZER = "json"
CELERY_TASK_DEFAULT_QUEUE = "control"
# What agents send (apps.machines.inbox) arrives on its own queue, the only one hosts may write.
CELERY_TASK_ROUTES = {"control.inbox": {"queue": "inbox"}}
CELERY_TASK_IGNORE_RESULT = True
CELERY_RESULT_BACKEND = None
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_TIME_LIMIT = 300
CELERY_TASK_SOFT_TIME_LIMIT = 240
CELERY_BEAT_SCHEDULER = "django_celery_beat.schedulers:DatabaseScheduler"
CELERY_BEAT_SCHEDULE = {
    # Read by `manage.py beat_health`, beat's container health check.
    "beat-heartbeat": {"task": "apps.core.tasks.beat_heartbeat", "schedule": 30.0},
    "reconcile": {
        "task": "control.reconcile",
        "schedule": env.float("LATTICE_RECONCILE_EVERY", default=30.0),
    },
    # Hosts' broker users Redis lost (a restart without an ACL file) made again.
    "broker-users": {
        "task": "control.broker_users",
        "schedule": env.float("LATTICE_BROKER_USERS_EVERY", default=5.0),
    },
    "notebooks-reconcile": {
        "task": "notebooks.reconcile",
        "schedule": env.float("LATTICE_RECONCILE_EVERY", default=30.0),
    },
    "notebooks-idle-sweep": {"task": "notebooks.idle_sweep", "schedule": 60.0},
    # Scheduled snapshots of running notebooks; snapshots whose host went silent failed.
    "notebooks-snapshots": {"task": "notebooks.snapshots", "schedule": 60.0},
    # The deployment controller: autoscaling, scale to zero, rollouts, lost replicas.
    "deployments-scale": {
        "task": "deployments.scale",
        "schedule": env.float("LATTICE_DEPLOYMENT_SCALE_EVERY", default=2.0),
    },
    # Jobs: maximum run times, cancels nobody confirmed, lost attempts tried again, queued
    # runs started as their job's concurrency allows (apps.jobs.runs.runs_tick).
    "jobs-tick": {
        "task": "jobs.tick",
        "schedule": env.float("LATTICE_JOBS_TICK_EVERY", default=5.0),
    },
    # Jobs' cron schedules, due ones started (or skipped while a run still runs).
    "jobs-schedules": {"task": "jobs.schedules", "schedule": 30.0},
    # Jobs' kept files past their time, and their blobs.
    "jobs-upkeep": {"task": "jobs.upkeep", "schedule": 3600.0},
    # Abandoned uploads and blobs nothing refers to.
    "datasets-upkeep": {"task": "datasets.upkeep", "schedule": 3600.0},
    # Saves of a notebook's folder whose host stopped answering: failed, not left uploading.
    "models-upkeep": {"task": "models.upkeep", "schedule": 300.0},
    # Usage to Stripe, spend caps, grace periods: every team with billing to look after.
    # The deployment pages' live charts (apps.deployments.live): a late one is replaced.
    "deployments-metrics": {
        "task": "deployments.publish_metrics",
        "schedule": 2.0,
        "options": {"expires": 2.0},
    },
    "billing-sweep": {
        "task": "billing.sweep",
        "schedule": env.float("LATTICE_BILLING_SWEEP_EVERY", default=300.0),
    },
}
CELERY_TIMEZONE = "UTC"
# When true, `manage.py dev` runs a worker thread inside the web process.
LATTICE_EMBEDDED_WORKER = False
# Which runtime a host uses: auto (Docker when a daemon answers, else processes),
# docker, process, or fake (tests only).
LATTICE_RUNTIME = env.str("LATTICE_RUNTIME", default="auto")
# The reconciler: a host silent this long (seconds) goes offline; a placement
# younger than the grace period is not judged by a report taken before it, unless an
# earlier report saw it running (then it has started: apps.machines.tasks).
LATTICE_HOST_OFFLINE_AFTER = env.int("LATTICE_HOST_OFFLINE_AFTER", default=90)
LATTICE_RECONCILE_GRACE = env.int("LATTICE_RECONCILE_GRACE", default=60)
# Warm pools (apps.machines.pool): a warm container not ready this many seconds after it was
# asked for is removed and asked for again; a claimed slot's record is kept this long.
LATTICE_POOL_FILL_TIMEOUT = env.int("LATTICE_POOL_FILL_TIMEOUT", default=300)
# A host that could run a machine type but is away (draining, or offline for less than this
# many seconds since its last heartbeat) keeps the type's line waiting for it: its starts are
# queued, not refused, and a queued session ends only once no such host is left.
LATTICE_HOST_GRACE = env.int("LATTICE_HOST_GRACE", default=900)
# How many tasks an agent runs at once (threads: a start holds one until its server answers,
# mostly waiting). 0: chosen from the host's cores (apps.machines.agent.agent_concurrency).
LATTICE_AGENT_CONCURRENCY = env.int("LATTICE_AGENT_CONCURRENCY", default=0)
# How often (seconds) an agent reports inventory and workloads.
LATTICE_AGENT_REPORT_EVERY = env.float("LATTICE_AGENT_REPORT_EVERY", default=15.0)
# On a host: a JSON capture of an NVML read (tests/fixtures/gpu/*/nvml.json's format) its
# agent reports as the host's GPUs instead of reading NVML; empty: NVML. For test rigs and
# hosts whose NVML the agent cannot read (docs/hosts.md): the host claims those GPUs.
LATTICE_AGENT_GPU_INVENTORY = env.str("LATTICE_AGENT_GPU_INVENTORY", default="")
# A signed message from an agent older than this (seconds, or as far in the future) is
# refused: the inbox may wait out a control worker's restart, not replay hours later.
LATTICE_INBOX_MAX_AGE = env.int("LATTICE_INBOX_MAX_AGE", default=900)
# The largest message a host may put on the inbox (bytes of its body): a bigger one is refused
# before it is read further. Agents keep under it: a log frame stops at LATTICE_LOG_BATCH_BYTES
# and a line is cut at LATTICE_LOG_LINE_MAX_CHARS.
LATTICE_INBOX_MAX_BYTES = env.int("LATTICE_INBOX_MAX_BYTES", default=8 * 1024 * 1024)
# Each host's agent has a Redis user of its own (apps.machines.broker), named with this
# prefix; the address agents reach Redis at, when not REDIS_URL's (e.g. redis.internal:6379).
LATTICE_BROKER_USER_PREFIX = env.str("LATTICE_BROKER_USER_PREFIX", default="lattice-host-")
LATTICE_AGENT_BROKER_ADDRESS = env.str("LATTICE_AGENT_BROKER_ADDRESS", default="")
# On a host: where its agent keeps its signing key (made at its first join; keep it across
# restarts), and the file its reporter touches after each report (its health check).
LATTICE_AGENT_KEY_FILE = Path(
    env.str("LATTICE_AGENT_KEY_FILE", default="") or VAR_DIR / "agent" / "host.key"
)
LATTICE_AGENT_ALIVE_FILE = Path(
    env.str("LATTICE_AGENT_ALIVE_FILE", default="") or VAR_DIR / "agent" / "alive"
)
# On a host: where the Docker runtime keeps its warm pool's slots (issue 19): one folder per
# warm container, its empty mount points (made a shared mount, so the session's volumes
# mounted there at a claim reach the running container) and its claim record.
LATTICE_POOL_DIR = Path(env.str("LATTICE_POOL_DIR", default="") or VAR_DIR / "agent" / "pool")
# How long a claim waits for the warm container's Jupyter to say it has taken the session.
LATTICE_POOL_CLAIM_WAIT = env.float("LATTICE_POOL_CLAIM_WAIT", default=3.0)
# The notebook image hosts run. Empty: the image built locally by
# images/notebook/build-local.sh (no registry needed).
LATTICE_NOTEBOOK_IMAGE = env.str("LATTICE_NOTEBOOK_IMAGE", default="")
# Where each team's /storage is served from, one place every host reaches: a path mounted
# at the same place on every host (NFS, say) and on the control plane. Each team's /storage is
# the folder <this>/<volume name> (Docker: a local volume binding it; the process runtime:
# that folder). Empty: a volume on each host, which is right for one host only (the hosts
# admin warns with several): notebooks on different hosts would each see another /storage.
LATTICE_SHARED_STORAGE = env.str("LATTICE_SHARED_STORAGE", default="")
# Where the local-process runtime keeps its workloads' state, logs and volumes.
LATTICE_RUNTIME_DIR = Path(env.str("LATTICE_RUNTIME_DIR", default="") or VAR_DIR / "runtime")
# Where an agent keeps the dataset versions notebooks mount (one read-only folder per content).
LATTICE_DATASET_CACHE = Path(
    env.str("LATTICE_DATASET_CACHE", default="") or VAR_DIR / "dataset-cache"
)
# The slowest copy from the object storage to a host a start allows for (bytes a second):
# a start mounting D bytes of datasets may take D / this longer (apps.notebooks.mounts).
LATTICE_DATASET_COPY_MIN_RATE = env.int("LATTICE_DATASET_COPY_MIN_RATE", default=25 * 1024 * 1024)
# How much the dataset cache may hold (GiB, the files' sizes): beyond it, an agent removes
# the least recently used folders that no workload on its host mounts.
LATTICE_DATASET_CACHE_MAX_GIB = env.float("LATTICE_DATASET_CACHE_MAX_GIB", default=200.0)
# The address hosts reach this web tier at, for the signed links they read dataset blobs
# through when storage is a local folder (apps.datasets.blob_urls; with S3 they read the
# store itself through presigned URLs). `manage.py dev` uses its own address.
LATTICE_INTERNAL_URL = env.str("LATTICE_INTERNAL_URL", default="") or "http://127.0.0.1:8000"
# The API's address as notebooks and jobs reach it from their containers: their LATTICE_URL,
# beside the LATTICE_TOKEN and LATTICE_TEAM they get (apps.accounts.workload). Empty: the
# address hosts reach (LATTICE_INTERNAL_URL). A private or loopback address is one the
# workload network refuses (apps.runtimes.docker) unless LATTICE_WORKLOAD_ALLOW names it.
LATTICE_WORKLOAD_API_URL = env.str("LATTICE_WORKLOAD_API_URL", default="")
# The longest a workload token lives when its workload has no deadline (a notebook session
# on a plan with no session cap): it is revoked when the session ends in any case.
LATTICE_WORKLOAD_TOKEN_MAX_HOURS = env.float("LATTICE_WORKLOAD_TOKEN_MAX_HOURS", default=24.0)
# The name the embedded default registers this machine under.
LATTICE_LOCAL_HOST_NAME = env.str("LATTICE_LOCAL_HOST_NAME", default="local")
# Which Lattice the workloads belong to: every workload carries it as a label, and the
# reconciler removes only its own orphans, so two Lattices (or a dev server and a test
# run) sharing one Docker engine never remove each other's containers. By default,
# derived from the database this Lattice uses.
LATTICE_INSTALLATION = (
    env.str("LATTICE_INSTALLATION", default="")
    or hashlib.sha256(
        repr([DATABASES["default"].get(k) for k in ("ENGINE", "HOST", "PORT", "NAME")]).encode(),
    ).hexdigest()[:12]
)
# Where an agent publishes workloads' ports: loopback when the web tier runs on
# the same machine; this host's private address when web and agents are apart.
LATTICE_WORKLOAD_ADDRESS = env.str("LATTICE_WORKLOAD_ADDRESS", default="127.0.0.1")
# What workloads may reach although it is a private address or this host ("host:port",
# comma-separated; TCP): an internal Git server or package index, say. Everything else
# private stays refused (apps.runtimes.docker.isolate_workloads; docs/hosts.md).
LATTICE_WORKLOAD_ALLOW: list[str] = env.list("LATTICE_WORKLOAD_ALLOW", default=[])

# Notebooks. Production image per template; with LATTICE_LOCAL_IMAGES each
# template runs its image built on the host the first time it is needed
# (images/build-template.sh; no registry needed), for the templates
# LATTICE_LOCAL_TEMPLATES names: the others are "not built on this installation".
LATTICE_LOCAL_IMAGES = env.bool("LATTICE_LOCAL_IMAGES", default=True)
LATTICE_LOCAL_TEMPLATES: list[str] = env.list(
    "LATTICE_LOCAL_TEMPLATES",
    default=["scipy", "pytorch", "tensorflow", "r"],
)
LATTICE_TEMPLATE_IMAGES = {
    "pytorch": env.str("LATTICE_IMAGE_PYTORCH", default="ghcr.io/lattice-ml/notebook-pytorch:2.5"),
    "tensorflow": env.str(
        "LATTICE_IMAGE_TENSORFLOW",
        default="ghcr.io/lattice-ml/notebook-tensorflow:2.18",
    ),
    "scipy": env.str("LATTICE_IMAGE_SCIPY", default="ghcr.io/lattice-ml/notebook-scipy:2026.1"),
    "r": env.str("LATTICE_IMAGE_R", default="ghcr.io/lattice-ml/notebook-r:4.4"),
}
# Registries custom images may come from (e.g. "ghcr.io,registry.example.com"); empty = any.
LATTICE_CUSTOM_IMAGE_REGISTRIES: list[str] = env.list("LATTICE_CUSTOM_IMAGE_REGISTRIES", default=[])
LATTICE_NOTEBOOK_START_TIMEOUT = env.int("LATTICE_NOTEBOOK_START_TIMEOUT", default=300)
LATTICE_NOTEBOOK_START_ATTEMPTS = 3
LATTICE_NOTEBOOK_REDISPATCH_AFTER = env.int("LATTICE_NOTEBOOK_REDISPATCH_AFTER", default=60)
LATTICE_DEFAULT_IDLE_MINUTES = 60
LATTICE_IDLE_WARN_MINUTES = 10
# Snapshots of a notebook's /notebooks (apps.notebooks.snapshots, docs/notebooks.md
# "Storage"): a running notebook's files are saved every this many seconds (and when it
# stops); this many ready snapshots of each notebook are kept (never fewer than the newest).
LATTICE_SNAPSHOT_EVERY = env.int("LATTICE_SNAPSHOT_EVERY", default=900)
LATTICE_SNAPSHOT_KEEP = env.int("LATTICE_SNAPSHOT_KEEP", default=10)
# Secrets at rest (apps.core.crypto): Fernet keys, newest first; empty: one derived from
# SECRET_KEY.
LATTICE_SECRETS_KEYS: list[str] = env.list("LATTICE_SECRETS_KEYS", default=[])

# Deployments (apps.deployments). Endpoints are served at
# <deployment>--<team>.<LATTICE_USER_CONTENT_DOMAIN>, beside notebooks, never on Lattice's
# origin. The built-in model server's image: empty = built locally
# (images/model-server/build-local.sh), like the notebook image.
LATTICE_MODEL_SERVER_IMAGE = env.str("LATTICE_MODEL_SERVER_IMAGE", default="")
# How long the gateway holds a request that found no ready replica (scaled to zero, or a
# rollout) while one starts, before it answers 503 with Retry-After (seconds).
LATTICE_DEPLOYMENT_COLD_WAIT = env.float("LATTICE_DEPLOYMENT_COLD_WAIT", default=120.0)
# Autoscaling: how often the controller looks (seconds), and how long a lower replica count
# must be enough before it scales down (the stabilisation window, seconds).
LATTICE_DEPLOYMENT_SCALE_EVERY = env.float("LATTICE_DEPLOYMENT_SCALE_EVERY", default=2.0)
LATTICE_DEPLOYMENT_SCALE_DOWN_AFTER = env.float("LATTICE_DEPLOYMENT_SCALE_DOWN_AFTER", default=60.0)
# How long the gateway waits for a replica: for its answer's head (then 504), and for each
# next piece of its body, a server-sent event included (then the answer is cut off), in
# seconds. A replica that never answers must not hold a request, and its revision's
# in-flight count (which keeps replicas up and drains waiting), forever.
LATTICE_DEPLOYMENT_REPLICA_TIMEOUT = env.float("LATTICE_DEPLOYMENT_REPLICA_TIMEOUT", default=300.0)
# How long a draining replica may finish its in-flight requests before it is stopped.
LATTICE_DEPLOYMENT_DRAIN_SECONDS = env.float("LATTICE_DEPLOYMENT_DRAIN_SECONDS", default=30.0)
# A rollout with a canary percent: how long the canary takes its share, with no server
# error, before it takes every request (seconds).
LATTICE_DEPLOYMENT_CANARY_SECONDS = env.float("LATTICE_DEPLOYMENT_CANARY_SECONDS", default=60.0)
# A rollout needs room for its new replicas beside the serving ones. A new replica that waits
# in line for it longer than this (seconds) fails the rollout, the old revision serving on:
# the line is first come, first served, so a place held forever would hold everyone behind.
# Its startup timeout counts only from when it was placed.
LATTICE_DEPLOYMENT_ROOM_WAIT = env.float("LATTICE_DEPLOYMENT_ROOM_WAIT", default=1800.0)
# Requests one replica of the built-in server runs at once; beyond it, 429.
LATTICE_MODEL_SERVER_CONCURRENCY = env.int("LATTICE_MODEL_SERVER_CONCURRENCY", default=8)

# Live streams: messages kept for late viewers, and how agents batch log lines.
LATTICE_STREAM_BACKLOG = env.int("LATTICE_STREAM_BACKLOG", default=2000)
# A frame is what arrived within LATTICE_LOG_BATCH_SECONDS of the last one (a line after a
# quiet spell goes at once); only lines that backed up while the last frame was being sent make
# it bigger, up to LATTICE_LOG_BATCH_LINES (each frame costs the control worker a signature
# check and the placement's; bench/log_stream.py).
LATTICE_LOG_BATCH_LINES = env.int("LATTICE_LOG_BATCH_LINES", default=5000)
LATTICE_LOG_BATCH_SECONDS = env.float("LATTICE_LOG_BATCH_SECONDS", default=0.05)
LATTICE_LOG_BATCH_BYTES = env.int("LATTICE_LOG_BATCH_BYTES", default=1024 * 1024)
LATTICE_LOG_LINE_MAX_CHARS = env.int("LATTICE_LOG_LINE_MAX_CHARS", default=64 * 1024)
# An agent that finds a workload already running (it or the control plane restarted) ships
# this many of its last lines first, so the log panel shows them again.
LATTICE_LOG_BACKFILL_LINES = env.int("LATTICE_LOG_BACKFILL_LINES", default=200)

# --- Requests and security ---------------------------------------------------

# Big uploads (datasets) will stream in chunks through their own endpoints;
# ordinary forms stay small.
DATA_UPLOAD_MAX_MEMORY_SIZE = 2_621_440
DATA_UPLOAD_MAX_NUMBER_FIELDS = 1000

SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"
SECURE_CROSS_ORIGIN_OPENER_POLICY = "same-origin"
X_FRAME_OPTIONS = "DENY"
SESSION_COOKIE_HTTPONLY = True
CSRF_COOKIE_HTTPONLY = True
# Host-only: a cookie with a Domain would reach the notebooks' origins below it too.
SESSION_COOKIE_DOMAIN = None
CSRF_COOKIE_DOMAIN = None
CSRF_FAILURE_VIEW = "apps.core.views.csrf_failure"

CONTENT_SECURITY_POLICY = {
    "DIRECTIVES": {
        "default-src": [SELF],
        "script-src": [SELF],
        # The upload page hashes files in a Web Worker (static/js/hash-worker.js).
        "worker-src": [SELF],
        "style-src": [SELF],
        # allauth's TOTP page draws its QR code as a data: URI.
        "img-src": [SELF, "data:"],
        "font-src": [SELF],
        # Browser uploads PUT chunks straight to S3 when storage is S3 (apps.datasets.s3).
        "connect-src": [SELF, *_S3_ORIGINS],
        "form-action": [SELF],
        "frame-ancestors": [NONE],
        "base-uri": [SELF],
        "object-src": [NONE],
    },
}

# --- Locale -----------------------------------------------------------------------

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

# --- Logging ----------------------------------------------------------------------

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {
        "plain": {"format": "%(asctime)s %(levelname)s %(name)s: %(message)s"},
    },
    "handlers": {
        "console": {"class": "logging.StreamHandler", "formatter": "plain"},
    },
    "root": {"handlers": ["console"], "level": env.str("LATTICE_LOG_LEVEL", default="INFO")},
    "loggers": {
        "django.db.backends": {"level": "WARNING"},
        "daphne": {"level": "WARNING"},
    },
}
