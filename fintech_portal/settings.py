"""Settings for fintech_portal: one module, driven by environment variables.

Every secret may also be read from a file named by ``<NAME>_FILE`` (Docker and
Kubernetes secrets). Missing or unsafe production configuration fails loudly at
start-up rather than running with a default.
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import environ
from django.core.exceptions import ImproperlyConfigured

from security.secrets import load_external_secrets

BASE_DIR = Path(__file__).resolve().parent.parent
VAR_DIR = BASE_DIR / "var"

# Secrets from AWS SSM Parameter Store / Secrets Manager, when configured, before anything is read.
load_external_secrets()
env = environ.FileAwareEnv()

DEBUG: bool = env.bool("DEBUG", default=False)

# --- Secret key ---------------------------------------------------------------
DEV_SECRET_KEY = "dev-only-insecure-secret-key-do-not-use-in-production"  # noqa: S105
SECRET_KEY: str = env.str("SECRET_KEY", default="")
if not SECRET_KEY or SECRET_KEY == DEV_SECRET_KEY:
    if not DEBUG:
        raise ImproperlyConfigured(
            "SECRET_KEY is missing or is the development default; set SECRET_KEY "
            "(or SECRET_KEY_FILE) to a long random value when DEBUG is off."
        )
    SECRET_KEY = DEV_SECRET_KEY
SECRET_KEY_FALLBACKS: list[str] = env.list("SECRET_KEY_FALLBACKS", default=[])

ALLOWED_HOSTS: list[str] = env.list("ALLOWED_HOSTS", default=["127.0.0.1", "localhost"] if DEBUG else [])
CSRF_TRUSTED_ORIGINS: list[str] = env.list("CSRF_TRUSTED_ORIGINS", default=[])

# --- Applications ---------------------------------------------------------------
INSTALLED_APPS = [
    "accounts.apps.PortalAdminConfig",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "whitenoise.runserver_nostatic",
    "django.contrib.staticfiles",
    "django.contrib.humanize",
    "rest_framework",
    "drf_spectacular",
    "allauth",
    "allauth.account",
    "django_otp",
    "django_otp.plugins.otp_totp",
    "django_otp.plugins.otp_static",
    "axes",
    "csp",
    "django_celery_beat",
    # ours
    "security",
    "accounts",
    "payments",
    "kyc",
    "compliance",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "csp.middleware.CSPMiddleware",
    "security.context.RequestContextMiddleware",
    "security.body_limits.RequestBodyLimitMiddleware",
    "security.card_guard.CardNumberGuardMiddleware",
    # Gateway webhooks (LEAN_URL_NAMES) stop here: every header above still applies; the
    # browser-session machinery below has nothing to do for a signed machine-to-machine POST.
    "fintech_portal.middleware.LeanPathMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django_otp.middleware.OTPMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "allauth.account.middleware.AccountMiddleware",
    "accounts.middleware.SessionPolicyMiddleware",
    "accounts.middleware.RequireTwoFactorMiddleware",
    # Axes must be last: it turns a lockout into its response.
    "axes.middleware.AxesMiddleware",
]

ROOT_URLCONF = "fintech_portal.urls"
WSGI_APPLICATION = "fintech_portal.wsgi.application"
ASGI_APPLICATION = "fintech_portal.asgi.application"

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
                "accounts.context_processors.navigation",
            ],
        },
    },
]

# --- Database -------------------------------------------------------------------
# PostgreSQL when DATABASE_URL is set; the embedded SQLite database in var/ otherwise.
DATABASES = {"default": env.db_url("DATABASE_URL", default=f"sqlite:///{VAR_DIR / 'fintech_portal.sqlite3'}")}
# Persistent connections: each web thread / worker process keeps its connection for
# DB_CONN_MAX_AGE seconds (0: closed after every request) instead of paying a PostgreSQL
# connect per request; with DB_CONN_HEALTH_CHECKS a connection that broke is replaced.
DATABASES["default"].setdefault("CONN_MAX_AGE", env.int("DB_CONN_MAX_AGE", default=600))
DATABASES["default"]["CONN_HEALTH_CHECKS"] = env.bool("DB_CONN_HEALTH_CHECKS", default=True)
DATABASES["default"]["ATOMIC_REQUESTS"] = False
if DATABASES["default"]["ENGINE"].endswith("sqlite3"):
    DATABASES["default"]["CONN_MAX_AGE"] = 0
    DATABASES["default"].setdefault("OPTIONS", {})["timeout"] = 20
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# --- Cache ------------------------------------------------------------------------
REDIS_URL: str = env.str("REDIS_URL", default="")
if env.str("CACHE_URL", default=""):
    CACHES = {"default": env.cache_url("CACHE_URL")}
elif REDIS_URL:
    CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": REDIS_URL,
            "KEY_PREFIX": env.str("CACHE_KEY_PREFIX", default="fp"),
        }
    }
else:
    CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.db.DatabaseCache",
            "LOCATION": "fintech_portal_cache",
        }
    }

# --- Celery -----------------------------------------------------------------------
# Redis when REDIS_URL is set; otherwise an embedded SQLite broker (kombu's
# SQLAlchemy transport) so `make run` needs no server and periodic jobs still fire.
CELERY_BROKER_URL: str = env.str(
    "CELERY_BROKER_URL", default=REDIS_URL or f"sqla+sqlite:///{VAR_DIR / 'celery-broker.sqlite3'}"
)
CELERY_RESULT_BACKEND: str = env.str(
    "CELERY_RESULT_BACKEND", default=REDIS_URL or f"db+sqlite:///{VAR_DIR / 'celery-results.sqlite3'}"
)
# The embedded database, broker and result store live in var/; create it on a fresh checkout.
if any("sqlite" in url for url in (DATABASES["default"]["ENGINE"], CELERY_BROKER_URL, CELERY_RESULT_BACKEND)):
    VAR_DIR.mkdir(exist_ok=True)
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
# With acks_late a prefetched task is only acknowledged once done, so a lost worker loses
# nothing; a few in hand keep a worker busy between short tasks (webhook applies).
CELERY_WORKER_PREFETCH_MULTIPLIER: int = env.int("CELERY_WORKER_PREFETCH_MULTIPLIER", default=4)
# Celery's Django fix-up closes the database connections after every task unless this is set;
# with it, fintech_portal.celery closes them the way Django does after a request (CONN_MAX_AGE,
# health checks) and the fix-up only recycles them every 2 x this many tasks.
CELERY_DB_REUSE_MAX: int = env.int("CELERY_DB_REUSE_MAX", default=1000)
# Processes per worker; unset means one per CPU core.
CELERY_WORKER_CONCURRENCY: int | None = env.int("CELERY_WORKER_CONCURRENCY", default=None)
CELERY_TASK_SERIALIZER = "json"
CELERY_RESULT_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_TIMEZONE = "UTC"
CELERY_TASK_ALWAYS_EAGER: bool = env.bool("CELERY_TASK_ALWAYS_EAGER", default=False)
CELERY_TASK_EAGER_PROPAGATES = True
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
CELERY_BEAT_SCHEDULER = "django_celery_beat.schedulers:DatabaseScheduler"
# Every task has time limits: at the soft limit SoftTimeLimitExceeded is raised inside the task
# (which records why it stopped and, where it can, carries on in a fresh task); at the hard limit
# the worker kills the process running it (prefork pool). These are the defaults; tasks that
# need other values set their own (merchant webhook deliveries: the outbound deadline plus a
# margin; exports and key rotation: longer).
CELERY_TASK_SOFT_TIME_LIMIT: int = env.int("CELERY_TASK_SOFT_TIME_LIMIT", default=300)
CELERY_TASK_TIME_LIMIT: int = env.int("CELERY_TASK_TIME_LIMIT", default=360)
if not 0 < CELERY_TASK_SOFT_TIME_LIMIT < CELERY_TASK_TIME_LIMIT:
    raise ImproperlyConfigured(
        "CELERY_TASK_SOFT_TIME_LIMIT must be positive and below CELERY_TASK_TIME_LIMIT (seconds)."
    )
# Work that calls merchants' servers runs on its own queue, consumed by its own workers
# (`make run`, deploy/compose.yaml), so a slow merchant never holds the workers that apply
# gateway events, build exports or cancel blocked payments. Everything else uses "celery".
CELERY_TASK_DEFAULT_QUEUE = "celery"
MERCHANT_WEBHOOK_QUEUE = "merchant_webhooks"
CELERY_TASK_ROUTES: dict[str, dict[str, str]] = {
    "payments.deliver_merchant_webhook": {"queue": MERCHANT_WEBHOOK_QUEUE},
}
# At most this many deliveries to one merchant's endpoints are attempted at the same time; more
# wait their turn (re-queued with a countdown), so one merchant cannot take every webhook worker.
MERCHANT_WEBHOOK_MAX_CONCURRENT: int = env.int("MERCHANT_WEBHOOK_MAX_CONCURRENT", default=2)
if MERCHANT_WEBHOOK_MAX_CONCURRENT < 1:
    raise ImproperlyConfigured("MERCHANT_WEBHOOK_MAX_CONCURRENT must be at least 1.")
CELERY_RESULT_EXPIRES = timedelta(days=1)
BEAT_HEARTBEAT_SECONDS: int = env.int("BEAT_HEARTBEAT_SECONDS", default=60)
# Apps add their own entries from their settings blocks below; django-celery-beat
# copies this into its tables, where admins can pause or retime them.
CELERY_BEAT_SCHEDULE: dict[str, dict] = {
    "beat-heartbeat": {"task": "fintech_portal.beat_heartbeat", "schedule": BEAT_HEARTBEAT_SECONDS},
    "clear-expired-sessions": {"task": "fintech_portal.clear_expired_sessions", "schedule": 3600},
    "remind-gateway-key-rotation": {"task": "payments.remind_gateway_key_rotation", "schedule": 6 * 3600},
    "sweep-merchant-webhooks": {"task": "payments.sweep_merchant_webhooks", "schedule": 60},
    "sweep-webhook-events": {"task": "payments.sweep_webhook_events", "schedule": 60},
    "purge-idempotency-keys": {"task": "payments.purge_idempotency_keys", "schedule": 3600},
    "purge-merchant-webhook-log": {"task": "payments.purge_merchant_webhook_log", "schedule": 24 * 3600},
    "purge-payment-exports": {"task": "payments.purge_payment_exports", "schedule": 3600},
    "refresh-payment-stats": {"task": "payments.refresh_payment_stats", "schedule": 24 * 3600},
}

# --- Authentication -----------------------------------------------------------------
AUTH_USER_MODEL = "accounts.User"
AUTHENTICATION_BACKENDS = [
    # Axes first: it refuses locked-out email+IP pairs before any password check.
    "axes.backends.AxesStandaloneBackend",
    "allauth.account.auth_backends.AuthenticationBackend",
]
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {
        "NAME": "django.contrib.auth.password_validation.MinimumLengthValidator",
        "OPTIONS": {"min_length": 12},
    },
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
PASSWORD_HASHERS = env.list(
    "PASSWORD_HASHERS",
    default=[
        "django.contrib.auth.hashers.PBKDF2PasswordHasher",
        "django.contrib.auth.hashers.ScryptPasswordHasher",
    ],
)
LOGIN_URL = "account_login"
LOGIN_REDIRECT_URL = "home"
LOGOUT_REDIRECT_URL = "account_login"

# --- Client addresses -------------------------------------------------------------
# How many reverse proxies of ours stand in front of the app, each appending to X-Forwarded-For.
# 0: X-Forwarded-For is ignored. N: the client is the N-th entry from its right (security.client_ip,
# used by lockouts, rate limits, fraud rules, audit and API keys).
TRUSTED_PROXY_COUNT: int = env.int("TRUSTED_PROXY_COUNT", default=0)
if TRUSTED_PROXY_COUNT < 0:
    raise ImproperlyConfigured("TRUSTED_PROXY_COUNT must be 0 (no proxy) or the number of proxies in front.")
# allauth reads the address through accounts.adapters.AccountAdapter.get_client_ip (our helper);
# its own setting says the same, should any of its code read the header itself.
ALLAUTH_TRUSTED_PROXY_COUNT = TRUSTED_PROXY_COUNT

# allauth handles account flows (sign-in, sign-out, password reset); the second
# factor is django-otp's alone, so `request.user.is_verified()` is the one truth.
ACCOUNT_ADAPTER = "accounts.adapters.AccountAdapter"
ACCOUNT_LOGIN_METHODS = {"email"}
ACCOUNT_SIGNUP_FIELDS = ["email*", "password1*", "password2*"]
ACCOUNT_USER_MODEL_USERNAME_FIELD = None
ACCOUNT_EMAIL_VERIFICATION = "none"
ACCOUNT_SESSION_REMEMBER = False
ACCOUNT_LOGOUT_ON_GET = False
ACCOUNT_LOGOUT_ON_PASSWORD_CHANGE = False
ACCOUNT_LOGIN_ON_PASSWORD_RESET = False
ACCOUNT_PREVENT_ENUMERATION = True
ACCOUNT_EMAIL_SUBJECT_PREFIX = "[fintech_portal] "
# Lockout is django-axes' job (account+IP, audited); allauth's own limit stays
# as a coarse per-IP backstop well above it.
ACCOUNT_RATE_LIMITS = {
    "login_failed": "50/m/ip",
    "reset_password": "20/m/ip,5/m/key",
    "reset_password_from_key": "20/m/ip",
}

# Second factor (django-otp).
OTP_TOTP_ISSUER = env.str("OTP_TOTP_ISSUER", default="fintech_portal")
OTP_TOTP_THROTTLE_FACTOR = 1
OTP_STATIC_THROTTLE_FACTOR = 1
BACKUP_CODE_COUNT = 10
RECENT_OTP_MINUTES = 5

# django-axes: lock an email+IP pair after repeated failures.
AXES_FAILURE_LIMIT = env.int("AXES_FAILURE_LIMIT", default=5)
AXES_COOLOFF_TIME = timedelta(minutes=env.int("AXES_COOLOFF_MINUTES", default=15))
AXES_LOCKOUT_PARAMETERS = [["username", "ip_address"]]
AXES_USERNAME_CALLABLE = "accounts.axes.username_from_request"
AXES_LOCKOUT_TEMPLATE = "account/lockout.html"
AXES_RESET_ON_SUCCESS = True
AXES_VERBOSE = False
AXES_SENSITIVE_PARAMETERS = ["password", "password1", "password2", "otp_token", "code"]
# The client address comes from security.client_ip (see TRUSTED_PROXY_COUNT), not from axes'
# optional django-ipware lookup, whose default order trusts X-Forwarded-For's left-most entry.
AXES_CLIENT_IP_CALLABLE = "security.client_ip.client_ip"

# --- Sessions and cookies -----------------------------------------------------------
SESSION_ENGINE = "django.contrib.sessions.backends.db"
SESSION_COOKIE_AGE = env.int("SESSION_COOKIE_AGE", default=60 * 60 * 8)
STAFF_SESSION_IDLE_SECONDS = env.int("STAFF_SESSION_IDLE_SECONDS", default=30 * 60)
SESSION_COOKIE_HTTPONLY = True
SESSION_COOKIE_SAMESITE = "Lax"
CSRF_COOKIE_SAMESITE = "Lax"
CSRF_COOKIE_HTTPONLY = True
SESSION_COOKIE_SECURE: bool = env.bool("SESSION_COOKIE_SECURE", default=not DEBUG)
CSRF_COOKIE_SECURE: bool = SESSION_COOKIE_SECURE
SESSION_COOKIE_NAME = "fp_session"

# --- HTTP security headers ------------------------------------------------------------
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "strict-origin-when-cross-origin"
SECURE_CROSS_ORIGIN_OPENER_POLICY = "same-origin"
X_FRAME_OPTIONS = "DENY"
SECURE_SSL_REDIRECT: bool = env.bool("SECURE_SSL_REDIRECT", default=not DEBUG)
SECURE_REDIRECT_EXEMPT = [r"^healthz$", r"^readyz$"]
SECURE_HSTS_SECONDS = 0 if DEBUG else env.int("SECURE_HSTS_SECONDS", default=31536000)
SECURE_HSTS_INCLUDE_SUBDOMAINS = not DEBUG
SECURE_HSTS_PRELOAD = not DEBUG
if env.bool("TRUST_X_FORWARDED_PROTO", default=False):
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")

SELF = "'self'"
NONE = "'none'"
CONTENT_SECURITY_POLICY = {
    "DIRECTIVES": {
        "default-src": [SELF],
        "script-src": [SELF],
        "style-src": [SELF],
        "img-src": [SELF, "data:"],
        "font-src": [SELF],
        "connect-src": [SELF],
        "frame-src": [NONE],
        "object-src": [NONE],
        "base-uri": [SELF],
        "form-action": [SELF],
        "frame-ancestors": [NONE],
    }
}

# --- Internationalisation and time ------------------------------------------------------
LANGUAGE_CODE = "en-gb"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

# --- Static files -----------------------------------------------------------------------
STATIC_URL = "/static/"
STATIC_ROOT = BASE_DIR / "staticfiles"
STATICFILES_DIRS = [BASE_DIR / "static"]
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {
        "BACKEND": (
            "whitenoise.storage.CompressedManifestStaticFilesStorage"
            if env.bool("STATIC_MANIFEST", default=not DEBUG)
            else "django.contrib.staticfiles.storage.StaticFilesStorage"
        )
    },
}
# Serve straight from the source folders when no collectstatic has run (dev, tests).
WHITENOISE_USE_FINDERS: bool = env.bool("WHITENOISE_USE_FINDERS", default=DEBUG)
MEDIA_ROOT = env.path("MEDIA_ROOT", default=str(VAR_DIR / "media"))

# --- Email ----------------------------------------------------------------------------------
EMAIL_CONFIG = env.email_url("EMAIL_URL", default="consolemail://")
vars().update(EMAIL_CONFIG)
# Seconds an SMTP connection may block (Django's default is forever).
EMAIL_TIMEOUT: int = env.int("EMAIL_TIMEOUT", default=int(EMAIL_CONFIG.get("EMAIL_TIMEOUT") or 10))
DEFAULT_FROM_EMAIL = env.str("DEFAULT_FROM_EMAIL", default="fintech_portal <no-reply@localhost>")
SERVER_EMAIL = DEFAULT_FROM_EMAIL
SITE_URL: str = env.str("SITE_URL", default="http://127.0.0.1:8000")

# --- Django REST framework -------------------------------------------------------------------
REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "accounts.api_auth.ApiKeyAuthentication",
        "accounts.api_auth.VerifiedSessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_THROTTLE_CLASSES": ["accounts.api_auth.ApiRateThrottle"],
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    "EXCEPTION_HANDLER": "security.errors.api_exception_handler",
    "UNAUTHENTICATED_USER": None,
    # Our throttle keys on security.client_ip; should DRF's get_ident run anyway, it agrees.
    "NUM_PROXIES": TRUSTED_PROXY_COUNT,
}
# Requests per API key (or per signed-in user) per period: "<n>/<second|minute|hour|day>".
API_RATE_LIMIT: str = env.str("API_RATE_LIMIT", default="100/minute")
# Requests to the public checkout pages (/pay/...) per client address per period, same format.
CHECKOUT_RATE_LIMIT: str = env.str("CHECKOUT_RATE_LIMIT", default="60/minute")
SPECTACULAR_SETTINGS = {
    "TITLE": "fintech_portal API",
    "DESCRIPTION": (
        "Merchant API: checkout sessions, payments and refunds.\n\n"
        "Authenticate with a merchant API key from Developers (`Authorization: Bearer fp_test_…`); read "
        "keys can only GET. A test key sees test-mode objects, a live key live ones. Amounts are integers "
        "of minor units with an ISO 4217 currency; times are Unix timestamps. Lists are newest first, "
        "paginated by cursor (`limit`, `starting_after`, `ending_before`; `has_more`, `next_cursor`). "
        'Errors are JSON `{"error": {"code", "message", "fields"?}}` with a stable code. Every '
        "POST accepts an `Idempotency-Key` header (24 hours). Requests are rate-limited per key "
        "(429 with Retry-After).\n\n"
        "Outgoing webhooks (Developers → Webhooks) are signed: `Fintech-Signature: t=<unix>,v1=<hex>`, "
        "v1 = HMAC-SHA256(endpoint secret, `<t>.<raw body>`)."
    ),
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
}

# --- Logging ----------------------------------------------------------------------------------
# >>> PII-safe logging (security app, issue #3) >>>
# Every handler runs security.logs.RedactingFilter first (a handler filter also sees records that
# propagate from child loggers), so no handler ever formats card numbers, emails, IBANs, SSNs,
# tokens, keys or passwords. Output is one JSON object per line (LOG_FORMAT=plain for humans).
LOG_LEVEL: str = env.str("LOG_LEVEL", default="INFO")
LOG_FORMAT: str = env.str("LOG_FORMAT", default="json")
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "filters": {
        "redact": {"()": "security.logs.RedactingFilter"},
    },
    "formatters": {
        "json": {"()": "security.logs.JSONFormatter"},
        "plain": {"()": "security.logs.PlainFormatter"},
    },
    "handlers": {
        "console": {
            "class": "logging.StreamHandler",
            "formatter": "plain" if LOG_FORMAT == "plain" else "json",
            "filters": ["redact"],
        },
    },
    "root": {"handlers": ["console"], "level": LOG_LEVEL},
    "loggers": {
        "django": {"handlers": ["console"], "level": LOG_LEVEL, "propagate": False},
        "django.request": {"handlers": ["console"], "level": "WARNING", "propagate": False},
        "django.security": {"handlers": ["console"], "level": "WARNING", "propagate": False},
        # runserver's request lines: through the redacting handler, not Django's own.
        "django.server": {"handlers": ["console"], "level": "INFO", "propagate": False},
        "celery": {"handlers": ["console"], "level": LOG_LEVEL, "propagate": False},
        "fintech_portal": {"handlers": ["console"], "level": LOG_LEVEL, "propagate": False},
        "security": {"handlers": ["console"], "level": LOG_LEVEL, "propagate": False},
    },
}
# Celery must not replace these handlers with its own unfiltered ones.
CELERY_WORKER_HIJACK_ROOT_LOGGER = False
# <<< PII-safe logging <<<

# --- Request bodies -------------------------------------------------------------------------------
# Every route accepts at most REQUEST_BODY_MAX_BYTES of body (forms, JSON); a larger declared
# Content-Length gets 413 before anything reads it. Routes that take more declare it: the
# @security.body_limits.body_limit(n) view decorator, or their URL name here. The gateways'
# webhooks refuse bodies over 1 MB themselves (400 "too_large", their contract): their route
# limit is above that so their own answer is the one a gateway sees.
REQUEST_BODY_MAX_BYTES: int = env.int("REQUEST_BODY_MAX_BYTES", default=64 * 1024)
REQUEST_BODY_LIMITS: dict[str, int] = {
    "webhook_stripe": 2 * 1024 * 1024,
    "webhook_braintree": 2 * 1024 * 1024,
}
# The most a form's fields or a raw body may hold on any route (files in uploads not counted).
DATA_UPLOAD_MAX_MEMORY_SIZE: int = env.int("DATA_UPLOAD_MAX_MEMORY_SIZE", default=2 * 1024 * 1024)
# Characters the card-number guard searches per request (path, query, fields, body; a body is
# searched twice at most, when something card-like was found). Over it: 413, never unchecked.
CARD_GUARD_MAX_BYTES: int = env.int(
    "CARD_GUARD_MAX_BYTES", default=2 * DATA_UPLOAD_MAX_MEMORY_SIZE + 64 * 1024
)

# --- Project-specific ---------------------------------------------------------------------------
# URL names reachable without signing in. Everything else requires a session
# verified with a second factor (see accounts.middleware).
PUBLIC_URL_NAMES: frozenset[str] = frozenset(
    {
        "account_login",
        "account_reset_password",
        "account_reset_password_done",
        "account_reset_password_from_key",
        "account_reset_password_from_key_done",
        "invitation_accept",
        "healthz",
        "readyz",
        "api_schema",
        "checkout_pay",
        "checkout_return",
        "checkout_done",
        "checkout_simulated_3ds",
        "webhook_stripe",
        "webhook_braintree",
    }
)
# Machine-to-machine URL names that skip the browser-session middleware (see
# fintech_portal/middleware.py); only resolved for paths under LEAN_PATH_PREFIXES.
LEAN_PATH_PREFIXES: tuple[str, ...] = ("/webhooks/",)
LEAN_URL_NAMES: frozenset[str] = frozenset({"webhook_stripe", "webhook_braintree"})
# URL names a signed-in user reaches before the second factor is verified.
PARTIAL_AUTH_URL_NAMES: frozenset[str] = frozenset(
    {
        "account_logout",
        "two_factor_verify",
        "two_factor_enrol",
        "two_factor_backup_codes",
    }
)
# --- Gateway webhooks: how stored events are drained (payments.tasks) -------------------------------
# Drains run in parallel only under a backlog; match it to the Celery worker concurrency.
WEBHOOK_DRAIN_PARALLELISM: int = env.int("WEBHOOK_DRAIN_PARALLELISM", default=2)
WEBHOOK_DRAIN_FLAG_SECONDS: int = env.int("WEBHOOK_DRAIN_FLAG_SECONDS", default=30)
# For this long after a process saw a drain running it stores webhooks without asking Redis
# again (one round trip per window, not per event); a drain waits as long before its last look.
WEBHOOK_DRAIN_TRUST_MS: int = env.int("WEBHOOK_DRAIN_TRUST_MS", default=200)
# A drain hands over to a fresh drain task after this long, well inside its time limits.
WEBHOOK_DRAIN_MAX_SECONDS: int = env.int("WEBHOOK_DRAIN_MAX_SECONDS", default=120)
if WEBHOOK_DRAIN_MAX_SECONDS >= CELERY_TASK_SOFT_TIME_LIMIT:
    raise ImproperlyConfigured("WEBHOOK_DRAIN_MAX_SECONDS must be below CELERY_TASK_SOFT_TIME_LIMIT.")

# --- Payment gateways (payments.gateways) ----------------------------------------------------------
# The platform's gateway credentials come from the environment or <NAME>_FILE secret
# files, never from the database. With none set, the simulated gateway is the default.
STRIPE_SECRET_KEY: str = env.str("STRIPE_SECRET_KEY", default="")
STRIPE_PUBLISHABLE_KEY: str = env.str("STRIPE_PUBLISHABLE_KEY", default="")
# Comma-separated: the first signs simulated events; every one verifies (rotation).
STRIPE_WEBHOOK_SECRET: str = env.str("STRIPE_WEBHOOK_SECRET", default="")
BRAINTREE_ENVIRONMENT: str = env.str("BRAINTREE_ENVIRONMENT", default="sandbox")
BRAINTREE_MERCHANT_ID: str = env.str("BRAINTREE_MERCHANT_ID", default="")
BRAINTREE_PUBLIC_KEY: str = env.str("BRAINTREE_PUBLIC_KEY", default="")
BRAINTREE_PRIVATE_KEY: str = env.str("BRAINTREE_PRIVATE_KEY", default="")
# Test and benchmark overrides that point the SDKs at local fakes. Never with live keys.
STRIPE_API_BASE: str = env.str("STRIPE_API_BASE", default="")
BRAINTREE_API_URL: str = env.str("BRAINTREE_API_URL", default="")
# The simulated gateway is always offered when no real gateway is configured; with
# one configured, only when this is on (default: in DEBUG).
PAYMENTS_SIMULATED_GATEWAY: bool = env.bool("PAYMENTS_SIMULATED_GATEWAY", default=DEBUG)
# --- Fraud rules (payments.fraud_rules) ---------------------------------------------------------------
# The request header in which a trusted proxy in front of the app puts the customer's country,
# e.g. "CF-IPCountry" behind Cloudflare (the META form "HTTP_CF_IPCOUNTRY" works too). Unset by
# default: without such a proxy the header is whatever the client chose to send.
PAYMENTS_IP_COUNTRY_HEADER: str = env.str("PAYMENTS_IP_COUNTRY_HEADER", default="")


def _check_gateway_settings() -> None:
    problems = []
    if bool(STRIPE_SECRET_KEY) != bool(STRIPE_PUBLISHABLE_KEY):
        problems.append("set both STRIPE_SECRET_KEY and STRIPE_PUBLISHABLE_KEY, or neither")
    stripe_live = STRIPE_SECRET_KEY.startswith(("sk_live_", "rk_live_"))
    if (
        STRIPE_SECRET_KEY
        and STRIPE_PUBLISHABLE_KEY
        and stripe_live != STRIPE_PUBLISHABLE_KEY.startswith("pk_live_")
    ):
        problems.append("STRIPE_SECRET_KEY and STRIPE_PUBLISHABLE_KEY must both be live or both be test keys")
    if STRIPE_SECRET_KEY and not STRIPE_WEBHOOK_SECRET and not DEBUG:
        problems.append("STRIPE_WEBHOOK_SECRET is required with STRIPE_SECRET_KEY when DEBUG is off")
    if stripe_live and STRIPE_API_BASE:
        problems.append("STRIPE_API_BASE must not be set with a live Stripe key")
    braintree = [BRAINTREE_MERCHANT_ID, BRAINTREE_PUBLIC_KEY, BRAINTREE_PRIVATE_KEY]
    if any(braintree) and not all(braintree):
        problems.append(
            "set all of BRAINTREE_MERCHANT_ID, BRAINTREE_PUBLIC_KEY and BRAINTREE_PRIVATE_KEY, or none"
        )
    if BRAINTREE_ENVIRONMENT not in ("sandbox", "production"):
        problems.append("BRAINTREE_ENVIRONMENT must be sandbox or production")
    if BRAINTREE_ENVIRONMENT == "production" and BRAINTREE_API_URL:
        problems.append("BRAINTREE_API_URL must not be set with BRAINTREE_ENVIRONMENT=production")
    if problems:
        raise ImproperlyConfigured("Payment gateway settings: " + "; ".join(problems) + ".")


_check_gateway_settings()
# --- End of payment gateways -----------------------------------------------------------------------

SEED_DEMO_ALLOWED: bool = DEBUG
OFAC_SDN_PATH: str = env.str(
    "OFAC_SDN_PATH", default=str(BASE_DIR.parent / "shared" / "data" / "ofac-sdn.csv")
)

# === Security (issue #3): encryption keys, blind indexes, audit archive, outbound HTTP ============
# Key-encryption keys: ordered "id:base64-of-32-bytes" entries; the first wraps new data keys, the
# rest stay readable until `manage.py rotate_keys` has moved every data key off them.
FIELD_ENCRYPTION_KEYS: list[str] = env.list("FIELD_ENCRYPTION_KEYS", default=[])
# Or AWS KMS: ordered "id:key-arn-or-alias" entries (take precedence over FIELD_ENCRYPTION_KEYS).
FIELD_ENCRYPTION_KMS_KEYS: list[str] = env.list("FIELD_ENCRYPTION_KMS_KEYS", default=[])
AWS_REGION: str = env.str("AWS_REGION", default="")
FIELD_ENCRYPTION_KEY_CACHE_SECONDS: int = env.int("FIELD_ENCRYPTION_KEY_CACHE_SECONDS", default=60)
FIELD_ENCRYPTION_MAX_FILE_BYTES: int = env.int("FIELD_ENCRYPTION_MAX_FILE_BYTES", default=25 * 1024 * 1024)
# HMAC key for blind indexes (base64 of >= 32 random bytes), separate from the encryption keys.
BLIND_INDEX_KEY: str = env.str("BLIND_INDEX_KEY", default="")
BLIND_INDEX_PHONE_REGION: str = env.str("BLIND_INDEX_PHONE_REGION", default="GB")
# Ed25519 private key (base64 of the 32-byte seed) that signs audit archives.
AUDIT_ARCHIVE_SIGNING_KEY: str = env.str("AUDIT_ARCHIVE_SIGNING_KEY", default="")
# HMAC key of the audit log's hash chain (base64 of >= 32 random bytes), kept out of the database
# so that database rights alone cannot rewrite events and recompute the chain. Required when
# DEBUG is off. After replacing it, list the old key here so older events still verify.
AUDIT_CHAIN_KEY: str = env.str("AUDIT_CHAIN_KEY", default="")
AUDIT_CHAIN_PREVIOUS_KEYS: list[str] = env.list("AUDIT_CHAIN_PREVIOUS_KEYS", default=[])
# Card-number guard: URL path prefixes it skips. Empty: it checks every request.
CARD_GUARD_EXEMPT_PATH_PREFIXES: list[str] = []
# Outbound HTTP (security.outbound): ports besides 443 that may be used, timeouts, size cap.
OUTBOUND_ALLOWED_PORTS: list[int] = [int(p) for p in env.list("OUTBOUND_ALLOWED_PORTS", default=[])]
OUTBOUND_CONNECT_TIMEOUT: float = env.float("OUTBOUND_CONNECT_TIMEOUT", default=3.0)
OUTBOUND_READ_TIMEOUT: float = env.float("OUTBOUND_READ_TIMEOUT", default=10.0)
OUTBOUND_MAX_RESPONSE_BYTES: int = env.int("OUTBOUND_MAX_RESPONSE_BYTES", default=5 * 1024 * 1024)
OUTBOUND_MAX_REDIRECTS = 3
OUTBOUND_CA_BUNDLE: str = env.str("OUTBOUND_CA_BUNDLE", default="")
# Test-only: lets security.outbound reach 127.0.0.1 (plain HTTP, any port). Never set from the
# environment; tests switch it on explicitly with the settings fixture.
OUTBOUND_ALLOW_LOOPBACK_FOR_TESTS = False
# === end Security ================================================================================
