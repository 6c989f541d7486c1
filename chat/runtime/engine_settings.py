"""Engine settings (the `step_settings_patch` sections and fields) and the starter-suggestions codec.

Registered by `chat.apps.ChatConfig.ready()`; published by `GET .../schemas/step-settings`.
"""

from __future__ import annotations

from typing import Any

from profiles.definitions import ExtensionCodec, StepSettingField

API_TYPES = ("offline", "openai", "anthropic")

STEP_SETTINGS: list[StepSettingField] = [
    StepSettingField("ai-chat", "ai-api-type", "string", "offline", "Which engine answers.", enum=API_TYPES),
    StepSettingField("ai-chat", "ai-engine", "string", "", "Model name (empty: the engine's default)."),
    StepSettingField(
        "ai-chat",
        "ai-temperature",
        "number",
        None,
        "Sampling temperature (not sent by the anthropic engine: its API refuses it).",
        minimum=0,
        maximum=2,
    ),
    StepSettingField(
        "ai-chat",
        "ai-top-p",
        "number",
        None,
        "Nucleus sampling (not sent by the anthropic engine: its API refuses it).",
        minimum=0,
        maximum=1,
    ),
    StepSettingField(
        "ai-chat",
        "ai-max-response-tokens",
        "integer",
        None,
        "Reply length cap. Empty: none (the anthropic engine, whose API requires one, sends 4096).",
        minimum=1,
    ),
    StepSettingField("ai-chat", "ai-timeout-seconds", "number", None, "Provider timeout.", minimum=1, maximum=600),
    StepSettingField(
        "openai-chat",
        "openai-base-url",
        "string",
        "",
        "OpenAI-compatible server (OpenAI, Ollama, vLLM, llama.cpp, LM Studio). Empty: OPENAI_BASE_URL. "
        "The server's OPENAI_API_KEY is only sent to OPENAI_BASE_URL; requests cannot override this.",
        request_overridable=False,
    ),
    StepSettingField(
        "openai-chat",
        "openai-api-key",
        "string",
        None,
        "Never stored: the key comes from the server's OPENAI_API_KEY.",
        secret=True,
    ),
    StepSettingField(
        "anthropic-chat",
        "anthropic-base-url",
        "string",
        "",
        "Server speaking Anthropic's Messages API (without /v1). Empty: ANTHROPIC_BASE_URL, else Anthropic. "
        "The server's ANTHROPIC_API_KEY is only sent to ANTHROPIC_BASE_URL; requests cannot override this.",
        request_overridable=False,
    ),
    StepSettingField(
        "anthropic-chat",
        "anthropic-api-key",
        "string",
        None,
        "Never stored: the key comes from the server's ANTHROPIC_API_KEY.",
        secret=True,
    ),
]

DEFAULT_MODELS = {"offline": "offline-v1", "openai": "gpt-4o-mini", "anthropic": "claude-haiku-5-5"}


def _normalise_suggestions(value: dict[str, Any]) -> dict[str, Any]:
    items = [item.strip() for item in value["items"] if item.strip()]
    return {**value, "items": items}


STARTER_SUGGESTIONS = ExtensionCodec(
    key="webchat.starter_suggestions@v1",
    schema={
        "type": "object",
        "properties": {"items": {"type": "array", "items": {"type": "string", "maxLength": 500}, "maxItems": 20}},
        "required": ["items"],
        "additionalProperties": False,
    },
    normalise=_normalise_suggestions,
)
