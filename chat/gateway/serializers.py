"""The gateway's request body and its OpenAI objects (model, chat completion, chunk, error).

The request serializer checks shape, ranges, unknown keys and storable text; `inputs.completion_input`
gives it meaning. Answers are built by the functions below (a chunk per delta must stay cheap); the
serializers after them describe the same objects for the OpenAPI schema.
"""

from __future__ import annotations

import contextlib
import json
import logging
from collections.abc import AsyncIterator
from typing import Any

from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from profiles.api.serializers import FieldsBoundOnce, StrictKeysMixin
from profiles.validation import storable_errors

from . import following, services
from .errors import SERVER_ERROR, error_body
from .selectors import ModelRow, TurnResult

log = logging.getLogger(__name__)

# The engine's stop reason -> OpenAI's finish_reason (tool rounds run on the server: never `tool_calls`).
FINISH_REASONS = {"stop": "stop", "length": "length", "max_tokens": "length", "max_rounds": "length"}
REFUSED = {"refused": "content_filter", "content_filter": "content_filter"}


# --------------------------------------------------------------------------- the request


class StrictObject(StrictKeysMixin):
    """The platform's strict-keys rule, worded for OpenAI clients: a parameter this gateway does not
    implement (or a typo) must not look like success."""

    unknown_message = "unknown or unsupported parameter"


CONTENT_SCHEMA = {
    "oneOf": [
        {"type": "string"},
        {
            "type": "array",
            "items": {
                "type": "object",
                "properties": {"type": {"type": "string", "enum": ["text"]}, "text": {"type": "string"}},
                "required": ["type", "text"],
            },
        },
    ],
    "nullable": True,
    "description": "Text, or a list of text parts.",
}
ANY_SCHEMA = {"description": "Refused unless null (client-side tools are not supported)."}


@extend_schema_field(CONTENT_SCHEMA)
class ContentField(serializers.JSONField):
    pass


@extend_schema_field(ANY_SCHEMA)
class RefusedField(serializers.JSONField):
    pass


class ChatMessageSerializer(StrictObject, serializers.Serializer):
    """One message. `system`/`developer`: the system prompt override; the last `user` message: the prompt;
    earlier user/assistant pairs: the conversation's turns (with `X-Conversation-Id`)."""

    role = serializers.ChoiceField(choices=["system", "developer", "user", "assistant", "tool", "function"])
    content = ContentField(required=False, allow_null=True)
    name = serializers.CharField(required=False, max_length=256, help_text="Not used.")
    # An assistant message echoed back from an answer may carry these (null): accepted, not used.
    refusal = serializers.CharField(required=False, allow_null=True, allow_blank=True)
    annotations = serializers.ListField(required=False, allow_null=True, child=serializers.DictField())
    # Client-side tools: refused unless null.
    tool_calls = RefusedField(required=False, allow_null=True)
    function_call = RefusedField(required=False, allow_null=True)
    tool_call_id = serializers.CharField(required=False, allow_null=True, help_text="Refused.")


class StreamOptionsSerializer(StrictObject, serializers.Serializer):
    """With `include_usage`, a last chunk carries the turn's usage."""

    include_usage = serializers.BooleanField(required=False, allow_null=True)


class StorableRequest:
    """Text no database or JSON encoder takes (lone surrogates, NUL) is a 400 naming its path."""

    def to_internal_value(self, data: Any) -> Any:
        problems = storable_errors(data, field="")
        if problems:
            path, message = problems[0]
            raise serializers.ValidationError({path: [message]})
        return super().to_internal_value(data)  # type: ignore[misc]  # a mixin of a Serializer


class ChatCompletionRequestSerializer(FieldsBoundOnce, StorableRequest, StrictObject, serializers.Serializer):
    """An OpenAI chat completion request. Unknown or unsupported parameters are a 400 naming them;
    `temperature`, `top_p`, `max_tokens`/`max_completion_tokens` and a system message are request
    overrides the profile's policy must allow (else 403)."""

    model = serializers.CharField(
        max_length=300, help_text="A model id from `GET v1/models`: `slug` or `registry/slug`."
    )
    messages = serializers.ListField(child=ChatMessageSerializer(), min_length=1, max_length=1000)
    stream = serializers.BooleanField(required=False, allow_null=True)
    stream_options = StreamOptionsSerializer(required=False, allow_null=True)
    temperature = serializers.FloatField(required=False, allow_null=True, min_value=0, max_value=2)
    top_p = serializers.FloatField(required=False, allow_null=True, min_value=0, max_value=1)
    max_tokens = serializers.IntegerField(required=False, allow_null=True, min_value=1)
    max_completion_tokens = serializers.IntegerField(required=False, allow_null=True, min_value=1)
    n = serializers.IntegerField(required=False, allow_null=True, min_value=1, help_text="Only 1.")
    user = serializers.CharField(required=False, allow_blank=True, max_length=256, help_text="Not used.")
    tools = RefusedField(required=False, allow_null=True)
    functions = RefusedField(required=False, allow_null=True)
    tool_choice = RefusedField(required=False, allow_null=True)
    function_call = RefusedField(required=False, allow_null=True)
    parallel_tool_calls = RefusedField(required=False, allow_null=True)


# --------------------------------------------------------------------------- the answers


def model_object(row: ModelRow, mount: Any) -> dict[str, Any]:
    return {
        "id": services.model_id(row.registry, f"{row.slug}@{row.label}" if row.label else row.slug, mount),
        "object": "model",
        "created": row.created_at_ms // 1000,
        "owned_by": row.registry,
    }


def model_list_body(rows: list[ModelRow], mount: Any) -> dict[str, Any]:
    return {"object": "list", "data": [model_object(row, mount) for row in rows]}


def finish_reason(result: TurnResult) -> str:
    stop = str((result.terminal or {}).get("stop_reason") or "stop")
    return REFUSED.get(stop) or FINISH_REASONS.get(stop, "stop")


def usage(turn: Any) -> dict[str, Any]:
    """OpenAI's usage object, and what the turn cost (`cost_usd`: null for a model without a price)."""
    stored = turn.usage if isinstance(turn.usage, dict) else {}
    prompt, completion = int(stored.get("prompt_tokens") or 0), int(stored.get("completion_tokens") or 0)
    return {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": int(stored.get("total_tokens") or prompt + completion),
        "cost_usd": stored.get("cost_usd"),
    }


def _identity(completion: following.Completion, turn: Any, kind: str) -> dict[str, Any]:
    """What every object of one answer shares: id (the turn's), model and fingerprint (its record)."""
    model = services.model_id(turn.registry, turn.profile_slug, completion.mount) if turn.registry else completion.model
    return {
        "id": f"chatcmpl-{turn.pk.hex}",
        "object": kind,
        "created": turn.created_at_ms // 1000,
        "model": model,
        "system_fingerprint": turn.fingerprint or None,
    }


def completion_body(completion: following.Completion, result: TurnResult) -> dict[str, Any]:
    turn = result.turn
    return {
        **_identity(completion, turn, "chat.completion"),
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": turn.text, "refusal": None},
                "logprobs": None,
                "finish_reason": finish_reason(result),
            }
        ],
        "usage": usage(turn),
    }


def _event(data: dict[str, Any]) -> bytes:
    return f"data: {json.dumps(data)}\n\n".encode()


DONE = b"data: [DONE]\n\n"


async def sse(completion: following.Completion, *, include_usage: bool) -> AsyncIterator[bytes]:
    """Server-sent events: a role chunk, a chunk per delta, the finish_reason chunk, the usage chunk
    (`stream_options.include_usage`), then `[DONE]`. A failed or timed-out turn: an error event, then
    `[DONE]` (the openai SDK raises it as `APIError`)."""
    base: dict[str, Any] = {}
    extra = {"usage": None} if include_usage else {}

    def chunk(delta: dict[str, Any], finish: str | None = None) -> bytes:
        choice = {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}
        return _event({**base, "choices": [choice], **extra})

    try:
        async with contextlib.aclosing(completion.events()) as events:  # a client that leaves ends it now
            async for event in events:
                if isinstance(event, following.Started):
                    base = _identity(completion, event.turn, "chat.completion.chunk")
                    yield chunk({"role": "assistant", "content": ""})
                elif isinstance(event, following.Delta):
                    yield chunk({"content": event.text})
                elif isinstance(event, following.Finished):
                    error = following.outcome_error(event.result)
                    if error is not None:
                        yield _event(error_body(error.http_status, message=error.message, code=error.code))
                        continue
                    yield chunk({}, finish_reason(event.result))
                    if include_usage:
                        yield _event({**base, "choices": [], "usage": usage(event.result.turn)})
                elif isinstance(event, following.TimedOut):
                    yield _event(error_body(504, message=event.error.message, code=event.error.code))
    except Exception:
        log.exception("streaming turn %s failed", completion.turn_id)
        yield _event(error_body(500, message="the stream failed on the server; the turn is stored", code=SERVER_ERROR))
    yield DONE


# --------------------------------------------------------------------------- schema of the answers


class ModelObjectSerializer(serializers.Serializer):
    id = serializers.CharField(help_text="`slug` in this mount's default registry, `registry/slug` otherwise.")
    object = serializers.ChoiceField(choices=["model"])
    created = serializers.IntegerField(help_text="Unix seconds: when the profile was created.")
    owned_by = serializers.CharField(help_text="The profile's registry.")


class ModelListSerializer(serializers.Serializer):
    object = serializers.ChoiceField(choices=["list"])
    data = ModelObjectSerializer(many=True)  # type: ignore[assignment]  # OpenAI's field name; DRF drops the attribute


class AssistantMessageSerializer(serializers.Serializer):
    role = serializers.ChoiceField(choices=["assistant"])
    content = serializers.CharField(allow_blank=True)
    refusal = serializers.CharField(allow_null=True)


class ChoiceSerializer(serializers.Serializer):
    index = serializers.IntegerField()
    message = AssistantMessageSerializer()
    logprobs = serializers.JSONField(allow_null=True)
    finish_reason = serializers.ChoiceField(choices=["stop", "length", "content_filter"])


class UsageSerializer(serializers.Serializer):
    prompt_tokens = serializers.IntegerField()
    completion_tokens = serializers.IntegerField()
    total_tokens = serializers.IntegerField()
    cost_usd = serializers.FloatField(allow_null=True, help_text="At the price in force when the turn started")


class ChatCompletionSerializer(serializers.Serializer):
    id = serializers.CharField(help_text="`chatcmpl-` and the turn's id.")
    object = serializers.ChoiceField(choices=["chat.completion"])
    created = serializers.IntegerField()
    model = serializers.CharField(help_text="The model (profile) the turn ran on, from its runtime record.")
    system_fingerprint = serializers.CharField(
        allow_null=True, help_text="The runtime fingerprint (as `POST …/profiles/{slug}/resolve` returns it)."
    )
    choices = ChoiceSerializer(many=True)
    usage = UsageSerializer()


class OpenAIErrorDetailSerializer(serializers.Serializer):
    message = serializers.CharField()
    type = serializers.CharField(help_text="`invalid_request_error`, `authentication_error`, `permission_error`, …")
    param = serializers.CharField(allow_null=True, help_text="The request parameter (or header) at fault.")
    code = serializers.CharField(allow_null=True, help_text="The project's error code, e.g. `policy_violation`.")


class OpenAIErrorSerializer(serializers.Serializer):
    error = OpenAIErrorDetailSerializer()
