"""What the chat app tells the profile platform about engines: which step settings choose the engine
and bound a request override, the server's defaults and bounds (read from `config/settings.py` here,
so `profiles` reads no chat setting), and the system check on the default engine."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core import checks

from profiles.definitions import EngineChoice, definitions
from profiles.resolution import public_url

from .runtime.engine_settings import API_TYPES


def server_defaults() -> dict[str, dict[str, Any]]:
    """The lowest layer of engine settings; part of every fingerprint, so nothing changes unseen."""
    return {
        "ai-chat": {"ai-api-type": settings.CHAT_DEFAULT_API_TYPE, "ai-engine": settings.CHAT_DEFAULT_MODEL},
        "openai-chat": {"openai-base-url": public_url(settings.OPENAI_BASE_URL)},
        "anthropic-chat": {"anthropic-base-url": public_url(settings.ANTHROPIC_BASE_URL)},
    }


def override_bounds() -> dict[str, Any]:
    """The server's bounds on request overrides (CHAT_OVERRIDE_*); an empty list means the server default."""
    default_type = str(settings.CHAT_DEFAULT_API_TYPE).strip().lower()
    types = tuple(t.strip().lower() for t in settings.CHAT_OVERRIDE_ALLOWED_API_TYPES if t.strip())
    models = tuple(m.strip() for m in settings.CHAT_OVERRIDE_ALLOWED_MODELS)
    return {
        "api_types": types or (default_type,),
        "models": models or (str(settings.CHAT_DEFAULT_MODEL).strip(),),
        "max_timeout_seconds": settings.CHAT_OVERRIDE_MAX_TIMEOUT_SECONDS,
        "max_response_tokens": settings.CHAT_OVERRIDE_MAX_RESPONSE_TOKENS,
    }


ENGINE_CHOICE = EngineChoice(
    section="ai-chat",
    api_type="ai-api-type",
    model="ai-engine",
    max_response_tokens="ai-max-response-tokens",
    timeout_seconds="ai-timeout-seconds",
    fallback_api_type="offline",
    server_defaults=server_defaults,
    override_bounds=override_bounds,
    bound_names={
        "api_types": "CHAT_OVERRIDE_ALLOWED_API_TYPES",
        "models": "CHAT_OVERRIDE_ALLOWED_MODELS",
        "max_timeout_seconds": "CHAT_OVERRIDE_MAX_TIMEOUT_SECONDS",
        "max_response_tokens": "CHAT_OVERRIDE_MAX_RESPONSE_TOKENS",
    },
)


def register_engine_choice() -> None:
    definitions.register_engine_choice(ENGINE_CHOICE)


@checks.register()
def check_default_engine(app_configs: Any = None, **kwargs: Any) -> list[checks.Error]:
    if settings.CHAT_DEFAULT_API_TYPE not in API_TYPES:
        message = f"CHAT_DEFAULT_API_TYPE={settings.CHAT_DEFAULT_API_TYPE!r} is not one of {list(API_TYPES)}"
        return [checks.Error(message, id="chat.E010")]
    return []
