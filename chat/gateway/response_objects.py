"""The Response object of OpenAI's Responses API, made from a turn's row: its id (`resp_<turn id>`), its
status, its output items (the message, and an `mcp_call` item per tool the profile ran) and its usage;
with the serializers that describe it in the schema."""

from __future__ import annotations

import json
import uuid
from typing import Any

from rest_framework import serializers

from profiles.errors import NotFound
from profiles.mounts import Mount

from ..models import Turn
from . import services
from .serializers import usage

PREFIX = "resp_"
STATUS = {"queued": "in_progress", "running": "in_progress", "completed": "completed", "cancelled": "cancelled"}


class OutputTextSerializer(serializers.Serializer):
    type = serializers.ChoiceField(choices=["output_text"])
    text = serializers.CharField(allow_blank=True)
    annotations = serializers.ListField(child=serializers.DictField())


class OutputItemSerializer(serializers.Serializer):
    type = serializers.ChoiceField(choices=["message", "mcp_call"], help_text="`mcp_call`: a tool the profile ran")
    id = serializers.CharField()
    status = serializers.CharField(required=False)
    role = serializers.CharField(required=False)
    content = OutputTextSerializer(many=True, required=False)
    server_label = serializers.CharField(required=False, help_text="mcp_call: the profile")
    name = serializers.CharField(required=False)
    arguments = serializers.CharField(required=False, help_text="mcp_call: JSON")
    output = serializers.CharField(required=False, allow_null=True, help_text="mcp_call: JSON")
    error = serializers.CharField(required=False, allow_null=True)


class ResponseUsageSerializer(serializers.Serializer):
    input_tokens = serializers.IntegerField()
    output_tokens = serializers.IntegerField()
    total_tokens = serializers.IntegerField()
    input_tokens_details = serializers.DictField()
    output_tokens_details = serializers.DictField()


class ResponseObjectSerializer(serializers.Serializer):
    """The Response object (`response_body`), for the schema."""

    id = serializers.CharField(help_text="`resp_` and the turn's id")
    object = serializers.ChoiceField(choices=["response"])
    created_at = serializers.IntegerField()
    status = serializers.ChoiceField(choices=["in_progress", "completed", "failed", "cancelled"])
    model = serializers.CharField()
    output = OutputItemSerializer(many=True)
    usage = ResponseUsageSerializer()
    previous_response_id = serializers.CharField(allow_null=True)
    instructions = serializers.CharField(allow_null=True)
    metadata = serializers.DictField(child=serializers.CharField())
    error = serializers.DictField(allow_null=True)
    system_fingerprint = serializers.CharField(allow_null=True)


def response_id(turn_id: Any) -> str:
    return f"{PREFIX}{uuid.UUID(str(turn_id)).hex}"


def turn_id_of(raw: str, *, field: str) -> uuid.UUID:
    try:
        if not raw.startswith(PREFIX):
            raise ValueError
        return uuid.UUID(hex=raw[len(PREFIX) :])
    except ValueError:
        raise NotFound(f"no response {raw[:100]!r}", field=field) from None


def _status(turn: Turn) -> str:
    return STATUS.get(turn.status, "failed")


def _tool_items(turn: Turn) -> list[dict[str, Any]]:
    items = []
    for call in turn.tool_calls or []:
        failed = call.get("error")
        items.append(
            {
                "type": "mcp_call",
                "id": f"mcp_{call.get('call_id', '')}",
                "server_label": turn.profile_slug,
                "name": call.get("name", ""),
                "arguments": json.dumps(call.get("input") or {}),
                "output": None if failed else json.dumps(call.get("result"), default=str),
                "error": str(failed) if failed else None,
            }
        )
    return items


def message_item(turn: Turn, text: str, status: str) -> dict[str, Any]:
    content = [{"type": "output_text", "text": text, "annotations": []}] if status != "in_progress" or text else []
    return {
        "type": "message",
        "id": f"msg_{uuid.UUID(str(turn.pk)).hex}",
        "status": status,
        "role": "assistant",
        "content": content,
    }


def opened_body(turn: Turn, *, mount: Mount) -> dict[str, Any]:
    """A response whose turn has just started: its identity (the turn's id, model and fingerprint) only."""
    return {
        "id": response_id(turn.pk),
        "object": "response",
        "created_at": turn.created_at_ms // 1000,
        "status": "in_progress",
        "model": services.model_id(turn.registry, turn.profile_slug, mount) if turn.registry else "",
        "output": [],
        "usage": None,
        "error": None,
        "incomplete_details": None,
        "parallel_tool_calls": False,
        "tool_choice": "none",
        "tools": [],
        "store": True,
        "text": {"format": {"type": "text"}},
        "system_fingerprint": turn.fingerprint or None,
    }


def response_body(turn: Turn, *, mount: Mount, previous: uuid.UUID | None) -> dict[str, Any]:
    """The Response object of a turn (a row with `ROW_FIELDS`), finished or not."""
    status = _status(turn)
    overrides = turn.request_overrides or {}
    engine = (overrides.get("step_settings_patch") or {}).get("ai-chat") or {}
    error = turn.error if isinstance(turn.error, dict) else None
    counted = usage(turn)
    return {
        **opened_body(turn, mount=mount),
        "status": status,
        "output": [] if status == "in_progress" else [message_item(turn, turn.text, "completed"), *_tool_items(turn)],
        "usage": {
            "input_tokens": counted["prompt_tokens"],
            "input_tokens_details": {"cached_tokens": 0},
            "output_tokens": counted["completion_tokens"],
            "output_tokens_details": {"reasoning_tokens": 0},
            "total_tokens": counted["total_tokens"],
            "cost_usd": counted["cost_usd"],
        },
        "previous_response_id": response_id(previous) if previous else None,
        "instructions": overrides.get("system_prompt"),
        "metadata": turn.metadata or {},
        "error": {"code": str(error.get("code") or "turn_failed"), "message": str(error.get("message") or "")}
        if status == "failed" and error
        else None,
        "temperature": engine.get("ai-temperature"),
        "top_p": engine.get("ai-top-p"),
        "max_output_tokens": engine.get("ai-max-response-tokens"),
    }
