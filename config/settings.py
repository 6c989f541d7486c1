"""Settings, read from the environment. Missing or malformed values fail loudly at start-up."""

import os
from pathlib import Path
from typing import Any

import environ
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

BASE_DIR = Path(__file__).resolve().parent.parent
# The demo registries `make run` seeds (a copy of ../shared/fixtures/registries.yaml, kept equal by a test).
PROFILES_SEED_FILE = BASE_DIR / "config" / "seed" / "registries.yaml"

env = environ.Env()
environ.Env.read_env(BASE_DIR / ".env", overwrite=False)

DEBUG = env.bool("DEBUG", default=False)
SECRET_KEY = env.str("SECRET_KEY", default="")
if not SECRET_KEY:
    if not DEBUG and env.bool("REQUIRE_SECRET_KEY", default=False):
        raise environ.ImproperlyConfigured("SECRET_KEY must be set when REQUIRE_SECRET_KEY is true")
    # Embedded default only: a per-checkout key, never shared between installations.
    _key_file = BASE_DIR / ".secret_key"
    if not _key_file.exists():
        import secrets

        _key_file.write_text(secrets.token_urlsafe(50))
        _key_file.chmod(0o600)
    SECRET_KEY = _key_file.read_text().strip()

HOST = env.str("HOST", default="127.0.0.1")
PORT = env.int("PORT", default=8000)
ALLOWED_HOSTS = env.list("ALLOWED_HOSTS", default=["127.0.0.1", "localhost", "[::1]", "testserver"])
CSRF_TRUSTED_ORIGINS = env.list("CSRF_TRUSTED_ORIGINS", default=[])

INSTALLED_APPS = [
    "daphne",
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "rest_framework.authtoken",
    "django_filters",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "simple_history",
    "channels",
    "profiles",
    "chat",
    "inventory",
]

MIDDLEWARE = [
    # Django's own middlewares, whose hooks run on the event loop under ASGI (config.middleware).
    "config.middleware.Security",
    "config.static.AsyncWhiteNoiseMiddleware",  # WhiteNoise, without holding a thread per request
    "config.middleware.Sessions",
    "config.middleware.Common",
    "config.middleware.Csrf",
    "config.middleware.Authentication",
    "config.middleware.Messages",
    "config.middleware.XFrameOptions",
    "simple_history.middleware.HistoryRequestMiddleware",
    "profiles.audit.AuditOriginMiddleware",  # the request's address for the audit log
]

ROOT_URLCONF = "config.urls"
ASGI_APPLICATION = "config.asgi.application"

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

# Database: SQLite file in WAL mode by default; DATABASE_URL for PostgreSQL.
DATABASES = {"default": env.db("DATABASE_URL", default=f"sqlite:///{BASE_DIR / 'db.sqlite3'}")}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    DATABASES["default"].setdefault("OPTIONS", {}).update(
        {
            # IMMEDIATE makes every atomic block take the write lock up front, so
            # read-then-write sequences (seq allocation, claims) cannot interleave.
            "transaction_mode": "IMMEDIATE",
            "timeout": 20,
            "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
        }
    )
    # A file, not :memory:, so end-to-end tests can share it with a real server process.
    # Per process, so test runs side by side do not share one file.
    DATABASES["default"]["TEST"] = {"NAME": str(BASE_DIR / f".test_db.{os.getpid()}.sqlite3")}
# SQLite: persistent connections: turns and sockets use bounded thread pools (CHAT_DB_THREADS), each
# thread keeps its connection (a WAL checkpoint at each close otherwise). PostgreSQL: Django's psycopg
# connection pool instead (below, sized from the thread pools), so a worker never opens more than
# DB_POOL_MAX_SIZE connections and a burst waits for one (then answers 503) instead of failing.
DATABASES["default"]["CONN_MAX_AGE"] = env.int("CONN_MAX_AGE", default=600)
# Off by default: a health check is an extra round trip (`SELECT 1` on PostgreSQL) before the first
# query of every pool call; a connection that broke fails one call and is then replaced.
DATABASES["default"]["CONN_HEALTH_CHECKS"] = env.bool("CONN_HEALTH_CHECKS", default=False)

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# The cache holds DRF throttle counts: per process by default; e.g. CACHE_URL=redis://host:6379/1
# (a database of its own: clearing the cache must not touch the channel layer's keys) for a cluster.
CACHES = {"default": env.cache("CACHE_URL", default="locmemcache://")}

# Channels: Redis when REDIS_URL is set (scale-out), otherwise the in-process layer.
REDIS_URL = env.str("REDIS_URL", default="")
REDIS_MAX_CONNECTIONS = env.int("REDIS_MAX_CONNECTIONS", default=1000)
REDIS_CONNECT_TIMEOUT = env.float("REDIS_CONNECT_TIMEOUT", default=2.0)
if REDIS_URL:
    CHANNEL_LAYERS = {
        "default": {
            # Redis pub/sub: a group_send is one PUBLISH whatever the number of sockets, and a receive
            # reads an in-process queue. channels-redis' list-based layer pays four round trips per
            # received message and silently drops messages past a per-process capacity: under 100
            # concurrent turns it lost the end of most turns (see docs/architecture.md). Missed frames
            # are recovered by the replay (stored frames and the running turn's snapshot). chat.layers'
            # subclass sends the PUBLISHes made while one is under way together, in order.
            "BACKEND": "chat.layers.RedisPubSubChannelLayer",
            # No client read timeout: redis-py's own 5 s socket timeout would close idle subscriptions.
            # redis-py refuses a command past its pool's size (100 by default) instead of waiting.
            # A Redis that is away fails a send within REDIS_CONNECT_TIMEOUT (one immediate retry, no
            # backoff): the frame reaches clients through the replay instead of stalling the turn.
            "CONFIG": {
                "hosts": [
                    {
                        "address": REDIS_URL,
                        "socket_timeout": None,
                        "socket_connect_timeout": REDIS_CONNECT_TIMEOUT,
                        "retry": Retry(NoBackoff(), 1),
                        "max_connections": REDIS_MAX_CONNECTIONS,
                    }
                ]
            },
        }
    }
else:
    # Channels' own in-memory layer scans every channel on every operation (75% of a core at 5,000
    # idle sockets); ours sweeps expired messages at most once a second.
    CHANNEL_LAYERS = {"default": {"BACKEND": "chat.layers.InMemoryChannelLayer", "CONFIG": {"capacity": 1000}}}

# Object permissions (django-rules): who may edit a registry's profiles and use a profile are rules
# over the object (`profiles.access`); the model permissions stay with Django's ModelBackend.
AUTHENTICATION_BACKENDS = [
    "rules.permissions.ObjectPermissionBackend",
    "django.contrib.auth.backends.ModelBackend",
]

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
]

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATICFILES_DIRS = [BASE_DIR / "static"]
STATIC_ROOT = None  # no collectstatic: WhiteNoise serves from the finders
# daphne serves no static files: WhiteNoise does, straight from the finders (no collectstatic step).
WHITENOISE_USE_FINDERS = True
WHITENOISE_AUTOREFRESH = DEBUG

LOGIN_URL = "/accounts/login/"
LOGIN_REDIRECT_URL = "/"
LOGOUT_REDIRECT_URL = "/accounts/login/"

REST_FRAMEWORK: dict[str, Any] = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        # Token first: its WWW-Authenticate header makes unauthenticated requests 401, not 403.
        "profiles.api.authentication.TokenAuthentication",  # DRF's, its lookup compiled once
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    "DEFAULT_PARSER_CLASSES": ["profiles.api.parsers.SafeJSONParser"],
    # Scoped per user: turns cost provider money; token requests are password guesses.
    "DEFAULT_THROTTLE_RATES": {
        "turns": env.str("CHAT_REST_TURN_RATE", default="60/min"),
        "auth": env.str("AUTH_TOKEN_RATE", default="20/min"),
    },
    "DEFAULT_FILTER_BACKENDS": ["django_filters.rest_framework.DjangoFilterBackend"],
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "EXCEPTION_HANDLER": "profiles.api.errors.exception_handler",
}
if DEBUG:
    REST_FRAMEWORK["DEFAULT_RENDERER_CLASSES"].append("rest_framework.renderers.BrowsableAPIRenderer")

SPECTACULAR_SETTINGS = {
    "TITLE": "Profile-driven chat runtime API",
    "DESCRIPTION": "Shared profile API (mounted by the chat and inventory apps), conversations and inventory.",
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    "SERVE_PERMISSIONS": ["rest_framework.permissions.IsAuthenticated"],
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    # Several models have a `status`: each choice set gets its own name in the schema.
    "ENUM_NAME_OVERRIDES": {
        "TurnStatusEnum": "chat.models.Turn.Status",
        "EvaluationStatusEnum": "chat.models.EvaluationRun.Status",
    },
}

# Engine defaults: the lowest layer of engine settings (server defaults < profile < request).
# They are part of every resolution and fingerprint, so they never act behind a profile's back.
CHAT_DEFAULT_API_TYPE = env.str("CHAT_DEFAULT_API_TYPE", default="offline")
CHAT_DEFAULT_MODEL = env.str("CHAT_DEFAULT_MODEL", default="")
OPENAI_API_KEY = env.str("OPENAI_API_KEY", default="")
OPENAI_BASE_URL = env.str("OPENAI_BASE_URL", default="")
# The `anthropic` engine's key and server (empty: Anthropic's API). Same rules as the OpenAI key: read
# from the environment only, never stored, logged or fingerprinted, only sent to ANTHROPIC_BASE_URL.
ANTHROPIC_API_KEY = env.str("ANTHROPIC_API_KEY", default="")
ANTHROPIC_BASE_URL = env.str("ANTHROPIC_BASE_URL", default="")
CHAT_TOOL_TIMEOUT_SECONDS = env.float("CHAT_TOOL_TIMEOUT_SECONDS", default=30.0)
CHAT_ENGINE_TIMEOUT_SECONDS = env.float("CHAT_ENGINE_TIMEOUT_SECONDS", default=60.0)
CHAT_MAX_QUEUED_TURNS = env.int("CHAT_MAX_QUEUED_TURNS", default=5)
CHAT_MAX_FRAME_BYTES = env.int("CHAT_MAX_FRAME_BYTES", default=32_768)
CHAT_RATE_LIMIT_PER_MINUTE = env.int("CHAT_RATE_LIMIT_PER_MINUTE", default=60)
CHAT_OFFLINE_DELAY_SECONDS = env.float("CHAT_OFFLINE_DELAY_SECONDS", default=0.02)
# A running turn holds a lease its worker renews every third of it; any worker interrupts turns
# whose lease expired (their worker died), keeping the last checkpoint of their text.
CHAT_TURN_LEASE_SECONDS = env.float("CHAT_TURN_LEASE_SECONDS", default=15.0)
# Partial text (and frames not yet stored) are written at most this often while a turn runs.
CHAT_CHECKPOINT_SECONDS = env.float("CHAT_CHECKPOINT_SECONDS", default=5.0)
# How long a worker keeps the price table before reading it again (chat.billing.prices).
CHAT_PRICE_CACHE_SECONDS = env.float("CHAT_PRICE_CACHE_SECONDS", default=10.0)
# What a turn reserves against a budget when its profile has no priced turn to estimate from (US$).
CHAT_BUDGET_RESERVE_USD = env.float("CHAT_BUDGET_RESERVE_USD", default=0.01)
# Outages: a running turn rides through a database outage (it streams on and keeps what it has not
# stored in memory, at most this many frames) up to the grace; past it, it ends `failed`
# (`storage_unavailable`) and its text is written when the database answers again.
CHAT_OUTAGE_GRACE_SECONDS = env.float("CHAT_OUTAGE_GRACE_SECONDS", default=60.0)
CHAT_OUTAGE_MAX_PENDING_FRAMES = env.int("CHAT_OUTAGE_MAX_PENDING_FRAMES", default=10_000)
CHAT_DELTA_COALESCE_SECONDS = env.float("CHAT_DELTA_COALESCE_MS", default=30.0) / 1000
# Delta frames per second one worker aims to send in all: past it, coalescing widens (an idle
# stream still gets its first delta at once). A bare Channels consumer sends ~10-15k frames/s here.
CHAT_FRAME_BUDGET = env.int("CHAT_FRAME_BUDGET", default=4000)
# Bounded pools: database work of all conversations, and tool calls (isolated from the database pool).
CHAT_DB_THREADS = env.int("CHAT_DB_THREADS", default=8)
# Group commit (chat.writer): the submissions, claims and finishes of concurrent turns share one
# transaction: the writes that arrive while a batch commits form the next (at most this many); a busy
# writer also waits CHAT_WRITE_BATCH_MS for more (an idle one commits at once: no added latency).
CHAT_WRITE_BATCH_MS = env.float("CHAT_WRITE_BATCH_MS", default=2.0)
CHAT_WRITE_BATCH_SIZE = env.int("CHAT_WRITE_BATCH_SIZE", default=64)
CHAT_TOOL_THREADS = env.int("CHAT_TOOL_THREADS", default=8)
# Evaluation case turns running at once per worker (`chat.evaluations.runner`): what runs may take from people.
CHAT_EVAL_CONCURRENCY = env.int("CHAT_EVAL_CONCURRENCY", default=2)
# Threads that run synchronous HTTP views (the profile API, pages, the admin): shared by all requests
# (config.asgi), so a burst of requests queues instead of starting a thread each.
HTTP_SYNC_THREADS = env.int("HTTP_SYNC_THREADS", default=4)
if DATABASES["default"]["ENGINE"] == "django.db.backends.postgresql":
    # One connection per thread that may hold one at a time: the sizing rule is
    # workers x DB_POOL_MAX_SIZE (+ other clients) <= PostgreSQL's max_connections (100 by default).
    DB_POOL_MAX_SIZE = env.int("DB_POOL_MAX_SIZE", default=CHAT_DB_THREADS + CHAT_TOOL_THREADS + HTTP_SYNC_THREADS)
    DATABASES["default"]["CONN_MAX_AGE"] = 0  # the pool keeps the connections
    DATABASES["default"].setdefault("OPTIONS", {}).update(
        {
            # A server that does not answer fails a call within seconds (an outage is then a 503).
            "connect_timeout": env.int("DB_CONNECT_TIMEOUT", default=5),
            # Parameters sent apart from the statement (psycopg's default cursor): no quoting of every
            # value in Python, and a statement a connection runs again and again is prepared once.
            "server_side_binding": env.bool("DB_SERVER_SIDE_BINDING", default=True),
            "pool": {
                "min_size": min(2, DB_POOL_MAX_SIZE),
                "max_size": DB_POOL_MAX_SIZE,
                # Waiting longer for a free connection (or for a database that is away) answers 503 with
                # Retry-After: short, so an outage is told within seconds.
                "timeout": env.float("DB_POOL_TIMEOUT", default=3.0),
            },
        }
    )
# Turns of history sent to the engine when the profile has no `context_window` middleware.
CHAT_DEFAULT_CONTEXT_TURNS = env.int("CHAT_DEFAULT_CONTEXT_TURNS", default=20)

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": env.str("LOG_LEVEL", default="INFO")},
    "loggers": {"django.channels.server": {"level": "WARNING"}},
}

# Request-override value bounds. A profile's policy allows override *keys*; these bound the *values* a request may choose with
# `step_settings_patch`, so a request cannot spend the server's key unchecked. Checked during
# resolution (403 `policy_violation`, like a refused key); a request may always keep what the profile
# or server already uses. They only refuse requests, so they are not part of any fingerprint.
# Engines a request may switch to ("*": any); empty = the server's default engine only.
CHAT_OVERRIDE_ALLOWED_API_TYPES = [
    v.strip() for v in env.list("CHAT_OVERRIDE_ALLOWED_API_TYPES", default=[CHAT_DEFAULT_API_TYPE])
]
# Models a request may switch to ("*": any; an empty entry: the engine's default model); empty = the
# server's default model only.
CHAT_OVERRIDE_ALLOWED_MODELS = [
    v.strip() for v in env.list("CHAT_OVERRIDE_ALLOWED_MODELS", default=[CHAT_DEFAULT_MODEL])
]
# Highest `ai-chat.ai-timeout-seconds` and `ai-chat.ai-max-response-tokens` a request may set.
CHAT_OVERRIDE_MAX_TIMEOUT_SECONDS = env.float("CHAT_OVERRIDE_MAX_TIMEOUT_SECONDS", default=60.0)
CHAT_OVERRIDE_MAX_RESPONSE_TOKENS = env.int("CHAT_OVERRIDE_MAX_RESPONSE_TOKENS", default=4096)

# Webhooks (`profiles.webhooks`): hosts (names or addresses) that may receive them although they are
# loopback, private or reserved; the first retry's pause (it doubles each time) and the attempts before a
# delivery is `failed` (30 s and 8: about an hour); how often each worker looks for due deliveries.
WEBHOOK_ALLOWED_HOSTS = env.list("WEBHOOK_ALLOWED_HOSTS", default=[])
# MCP servers (`chat.mcp`): hosts that may be loopback, private or reserved addresses (others are refused,
# at creation and before each call), and the prefix every environment variable named in a server's
# `headers_from_env` must have (so a server's headers can never carry SECRET_KEY or a provider's key).
MCP_ALLOWED_HOSTS = env.list("MCP_ALLOWED_HOSTS", default=["127.0.0.1", "localhost"])
MCP_HEADER_ENV_PREFIX = env.str("MCP_HEADER_ENV_PREFIX", default="MCP_")
WEBHOOK_RETRY_SECONDS = env.float("WEBHOOK_RETRY_SECONDS", default=30.0)
WEBHOOK_MAX_ATTEMPTS = env.int("WEBHOOK_MAX_ATTEMPTS", default=8)
WEBHOOK_POLL_SECONDS = env.float("WEBHOOK_POLL_SECONDS", default=1.0)
