"""Engine factory: effective engine settings (+ server-side secrets) -> an Engine.

API keys and default base URLs come from the server's environment through the arguments; the
profile's settings never carry a key.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from chat.runtime.base import Engine
from chat.runtime.engine_settings import API_TYPES, DEFAULT_MODELS
from chat.runtime.engines.offline import OfflineEngine
from profiles.resolution import public_url

if TYPE_CHECKING:
    from chat.runtime.engines.anthropic import AnthropicEngine
    from chat.runtime.engines.openai import OpenAIEngine

__all__ = ["AnthropicEngine", "OfflineEngine", "OpenAIEngine", "build_engine"]

# The provider SDKs take about two seconds to import: loaded when an engine of theirs is first built (or
# named), not by every process that starts (the server, each management command, each test server).
_SDK_ENGINES = {"AnthropicEngine": "anthropic", "OpenAIEngine": "openai"}


def _sdk_engine(name: str) -> Any:
    return getattr(importlib.import_module(f"{__name__}.{_SDK_ENGINES[name]}"), name)


def __getattr__(name: str) -> Any:  # `from chat.runtime.engines import OpenAIEngine` imports it then
    if name not in _SDK_ENGINES:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return _sdk_engine(name)


def _setting(settings: dict[str, dict[str, Any]], section: str, key: str) -> Any:
    """A setting value, with None/"" meaning "not set"."""
    value = (settings.get(section) or {}).get(key)
    if isinstance(value, str):
        value = value.strip()
    return None if value in (None, "") else value


def _number(value: Any, name: str) -> float | None:
    if value is None:
        return None
    try:
        return float(value)
    except (TypeError, ValueError):
        raise ValueError(f"engine setting {name} must be a number, got {value!r}") from None


def build_engine(
    settings: dict[str, dict[str, Any]],
    *,
    api_key: str = "",
    base_url: str = "",
    anthropic_api_key: str = "",
    anthropic_base_url: str = "",
    timeout: float = 60.0,
    offline_delay: float = 0.0,
) -> Engine:
    """Build the engine chosen by `ai-chat.ai-api-type` (default offline); unknown types raise ValueError.

    `api_key`/`base_url` come from the server env (OPENAI_API_KEY/OPENAI_BASE_URL); a base URL in
    `openai-chat.openai-base-url` wins over `base_url`. Likewise `anthropic_api_key`/`anthropic_base_url`
    (ANTHROPIC_API_KEY/ANTHROPIC_BASE_URL) and `anthropic-chat.anthropic-base-url`.
    `ai-chat.ai-timeout-seconds` overrides `timeout`.
    """
    api_type = str(_setting(settings, "ai-chat", "ai-api-type") or "offline").lower()
    if api_type not in API_TYPES:
        raise ValueError(f"unknown ai-api-type {api_type!r} (expected one of: {', '.join(API_TYPES)})")
    model = str(_setting(settings, "ai-chat", "ai-engine") or DEFAULT_MODELS[api_type])
    if api_type == "offline":
        return OfflineEngine(model=model, delay=offline_delay)

    timeout_setting = _number(_setting(settings, "ai-chat", "ai-timeout-seconds"), "ai-timeout-seconds")
    max_tokens = _number(_setting(settings, "ai-chat", "ai-max-response-tokens"), "ai-max-response-tokens")
    round_timeout = timeout_setting if timeout_setting is not None else timeout
    token_cap = int(max_tokens) if max_tokens is not None else None
    if api_type == "anthropic":
        # ai-temperature and ai-top-p are not passed: the Messages API version of the SDK refuses them.
        chosen = str(_setting(settings, "anthropic-chat", "anthropic-base-url") or "")
        target = _target(chosen, anthropic_base_url, anthropic_api_key)
        return _sdk_engine("AnthropicEngine")(model, **target, timeout=round_timeout, max_tokens=token_cap)
    chosen = str(_setting(settings, "openai-chat", "openai-base-url") or "")
    return _sdk_engine("OpenAIEngine")(
        model,
        **_target(chosen, base_url, api_key),
        timeout=round_timeout,
        max_tokens=token_cap,
        temperature=_number(_setting(settings, "ai-chat", "ai-temperature"), "ai-temperature"),
        top_p=_number(_setting(settings, "ai-chat", "ai-top-p"), "ai-top-p"),
    )


def _target(chosen: str, server_url: str, server_key: str) -> dict[str, Any]:
    """Where the requests go and with which key: the server's key goes only to the server's own
    provider (its base URL, or the provider's public API when unset); a profile pointing elsewhere
    (Ollama, vLLM, a proxy) gets no key, so the key can never be sent to another host."""
    own_target = not chosen or public_url(chosen) == public_url(server_url)
    return {
        "api_key": (server_key or "") if own_target else "",
        "base_url": (server_url if own_target else chosen) or None,
    }
