"""OpenAI's Responses API on the gateway: `POST v1/responses` is a turn, like a chat completion (the same
submission, keys, scopes, limits, policy and record); `previous_response_id` continues the conversation of
that response as its next turn; `GET v1/responses/{id}` reads a stored one. A response's id is its turn's
(`resp_<turn id>`). Client-side tools are refused; the profile's own tools run on the server and are
listed as `mcp_call` output items (name, arguments, output), labelled with the profile."""

from __future__ import annotations

import contextlib
import json
import logging
import uuid
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from typing import Any

from rest_framework import serializers

from profiles.api.serializers import FieldsBoundOnce
from profiles.errors import Conflict, InvalidInput, NotFound
from profiles.mounts import Mount
from profiles.validation import parse_profile_ref

from .. import services as chat_services
from ..aio import run_db
from ..models import Turn
from . import following, inputs, services
from .errors import UnsupportedParameter
from .response_objects import message_item, opened_body, response_body, response_id, turn_id_of
from .serializers import RefusedField, StorableRequest, StrictObject

log = logging.getLogger(__name__)

ROLES = ("user", "assistant", "system", "developer")
TEXT_PARTS = ("input_text", "output_text", "text")
# Responses parameter -> the engine setting it overrides (as the chat completion parameters do).
ENGINE_PARAMS = {"temperature": "ai-temperature", "top_p": "ai-top-p", "max_output_tokens": "ai-max-response-tokens"}
ROW_FIELDS = (
    "id",
    "conversation_id",
    "seq",
    "registry",
    "profile_slug",
    "profile_ref",
    "fingerprint",
    "created_at_ms",
    "status",
    "text",
    "usage",
    "error",
    "tool_calls",
    "metadata",
    "request_overrides",
)


class ResponseRequestSerializer(FieldsBoundOnce, StorableRequest, StrictObject, serializers.Serializer):
    """An OpenAI Responses request. `instructions`, `temperature`, `top_p` and `max_output_tokens` are
    request overrides the profile's policy must allow (else 403)."""

    model = serializers.CharField(max_length=300, help_text="A model id from `GET v1/models`.")
    input = serializers.JSONField(help_text="The prompt: a string, or message items (the last is the user's).")
    instructions = serializers.CharField(required=False, allow_null=True, allow_blank=True)
    previous_response_id = serializers.CharField(required=False, allow_null=True, max_length=100)
    stream = serializers.BooleanField(required=False, allow_null=True)
    store = serializers.BooleanField(required=False, allow_null=True, help_text="Always stored: false is refused.")
    max_output_tokens = serializers.IntegerField(required=False, allow_null=True, min_value=1)
    temperature = serializers.FloatField(required=False, allow_null=True, min_value=0, max_value=2)
    top_p = serializers.FloatField(required=False, allow_null=True, min_value=0, max_value=1)
    metadata = serializers.DictField(
        child=serializers.CharField(max_length=512, allow_blank=True),
        required=False,
        allow_null=True,
        help_text="Up to 16 string labels, given back with the response.",
    )
    user = serializers.CharField(required=False, allow_blank=True, max_length=256, help_text="Not used.")
    tools = RefusedField(required=False, allow_null=True)
    tool_choice = RefusedField(required=False, allow_null=True)
    parallel_tool_calls = RefusedField(required=False, allow_null=True)


@dataclass(frozen=True)
class ResponseInput:
    data: inputs.CompletionInput
    previous: uuid.UUID | None  # the turn of `previous_response_id`
    metadata: dict[str, str]


def _item_text(content: Any, path: str) -> str:
    if isinstance(content, str):
        return content
    if not isinstance(content, list):
        raise InvalidInput("must be a string or a list of text parts", field=path)
    texts = []
    for index, part in enumerate(content):
        if not isinstance(part, Mapping) or part.get("type") not in TEXT_PARTS or not isinstance(part.get("text"), str):
            raise UnsupportedParameter(
                'only text parts are supported: {"type": "input_text", "text": "..."}', field=f"{path}[{index}]"
            )
        texts.append(part["text"])
    return "".join(texts)


def _items(raw: Any) -> tuple[list[str], list[tuple[str, str, str]]]:
    """(system texts, [(path, role, text)] of the other messages) of `input`."""
    if isinstance(raw, str):
        return [], [("input", "user", raw)]
    if not isinstance(raw, list) or not raw:
        raise InvalidInput("must be a string or a non-empty list of message items", field="input")
    system, dialogue = [], []
    for index, item in enumerate(raw):
        at = f"input[{index}]"
        if not isinstance(item, Mapping) or item.get("type", "message") != "message" or item.get("role") not in ROLES:
            raise UnsupportedParameter(
                'only message items are supported: {"role": "user" | "assistant" | "system" | "developer", '
                '"content": ...} (the profile\'s tools run on the server; client-side tools are not supported)',
                field=at,
            )
        text = _item_text(item.get("content"), f"{at}.content")
        if item["role"] in ("system", "developer"):
            system.append(text)
        else:
            dialogue.append((f"{at}.content", item["role"], text))
    return system, dialogue


def response_input(body: Mapping[str, Any]) -> ResponseInput:
    """The validated body as a turn's prompt, system prompt and engine overrides. Refuses what this gateway
    does not do (400): client-side tools, `store: false`, earlier turns sent as items (the conversation
    keeps them: `previous_response_id`)."""
    for key in ("tools", "tool_choice", "parallel_tool_calls"):
        if body.get(key) not in (None, [], False) and not (key == "tool_choice" and body[key] == "none"):
            raise UnsupportedParameter(
                f"client-side tools are not supported (`{key}`): the model is a profile whose own allowed tools "
                "run on the server; their calls are output items of the response",
                field=key,
            )
    if body.get("store") is False:
        raise InvalidInput(
            "every response is stored (it is a turn of your conversation, with its runtime record): "
            "store must be true or absent",
            field="store",
        )
    metadata = body.get("metadata") or {}
    if len(metadata) > 16:
        raise InvalidInput("at most 16 metadata keys", field="metadata")
    system, dialogue = _items(body["input"])
    if not dialogue or dialogue[-1][1] != "user":
        raise InvalidInput("the last input item (besides system items) must be the user's prompt", field="input")
    prompt_field, _, prompt = dialogue[-1]
    if len(dialogue) > 1:
        raise InvalidInput(
            "send only the new input: earlier turns are the conversation's, continued with previous_response_id",
            field=dialogue[0][0].removesuffix(".content"),
        )
    if not prompt.strip():
        raise InvalidInput("the prompt must not be blank", field=prompt_field)
    if len(prompt) > chat_services.MAX_PROMPT_CHARS:
        raise InvalidInput(f"the prompt is longer than {chat_services.MAX_PROMPT_CHARS} characters", field=prompt_field)
    instructions = [body["instructions"]] if body.get("instructions") else []
    engine = {setting: (param, body[param]) for param, setting in ENGINE_PARAMS.items() if body.get(param) is not None}
    previous = body.get("previous_response_id")
    return ResponseInput(
        data=inputs.CompletionInput(
            model=body["model"],
            prompt=prompt,
            system_prompt="\n\n".join(instructions + system) if instructions or system else None,
            history=(),
            engine=engine,
            stream=bool(body.get("stream")),
            prompt_field=prompt_field,
            system_field="instructions" if instructions else "input",
        ),
        previous=turn_id_of(previous, field="previous_response_id") if previous else None,
        metadata=dict(metadata),
    )


# --------------------------------------------------------------------------- reads


def _own_turn(turn_id: uuid.UUID, *, user: Any, mount: Mount, field: str) -> Turn:
    """The turn if it is in one of the user's conversations of this mount; else 404 (nothing leaks)."""
    turn = (
        Turn.objects.only(*ROW_FIELDS)
        .filter(pk=turn_id, conversation__owner=user, conversation__mount=mount.name)
        .order_by()
        .first()
    )
    if turn is None:
        raise NotFound(f"no response {response_id(turn_id)!r}", field=field)
    return turn


def previous_conversation(*, user: Any, mount: Mount, previous: uuid.UUID) -> uuid.UUID:
    """The conversation a `previous_response_id` continues: it must be that conversation's latest turn
    (a response is continued, never branched)."""
    turn = _own_turn(previous, user=user, mount=mount, field="previous_response_id")
    latest = (
        Turn.objects.filter(conversation_id=turn.conversation_id, replaced_by__isnull=True)
        .order_by("-seq")
        .values_list("pk", flat=True)
        .first()
    )
    if latest != turn.pk:
        raise Conflict(
            f"{response_id(turn.pk)} is not the latest response of its conversation ({response_id(latest)} is): "
            "continue from the latest (branching is not supported)",
            field="previous_response_id",
        )
    return turn.conversation_id


def response_get(*, user: Any, mount: Mount, raw_id: str, key: Any = None) -> dict[str, Any]:
    """A stored response as the Responses API shows it; the API key's scopes must cover its model."""
    turn = _own_turn(turn_id_of(raw_id, field="response_id"), user=user, mount=mount, field="response_id")
    if key is not None and turn.registry:
        ref = parse_profile_ref(turn.profile_ref or turn.profile_slug, field="model")
        services.check_key_scope(key, mount=mount, model=turn.profile_slug, registry=turn.registry, ref=ref)
    return response_body(turn, mount=mount, previous=_previous_id(turn))


def _previous_id(turn: Turn) -> uuid.UUID | None:
    return (
        Turn.objects.filter(conversation_id=turn.conversation_id, seq__lt=turn.seq, replaced_by__isnull=True)
        .order_by("-seq")
        .values_list("pk", flat=True)
        .first()
    )


def response_row(*, turn_id: Any) -> tuple[Turn, uuid.UUID | None]:
    turn = Turn.objects.only(*ROW_FIELDS).get(pk=turn_id)
    return turn, _previous_id(turn)


# --------------------------------------------------------------------------- the stream


def _sse(kind: str, data: dict[str, Any]) -> bytes:
    return f"event: {kind}\ndata: {json.dumps({'type': kind, **data})}\n\n".encode()


async def response_events(completion: following.Completion, *, mount: Mount) -> AsyncIterator[bytes]:
    """The Responses event stream of a turn: `response.created`, `response.in_progress`, the message item
    and its text part opened, `response.output_text.delta` per delta, then the text, part and item done
    and `response.completed` (the whole response); `response.failed` for a turn that failed; an `error`
    event when it did not finish in time (it goes on and is stored)."""
    number = 0
    item = ""

    def event(kind: str, **data: Any) -> bytes:
        nonlocal number
        number += 1
        return _sse(kind, {"sequence_number": number - 1, **data})

    at = {"output_index": 0, "content_index": 0}
    try:
        async with contextlib.aclosing(completion.events()) as events:
            async for step in events:
                if isinstance(step, following.Started):
                    turn = step.turn
                    opened = opened_body(turn, mount=mount)
                    item = f"msg_{uuid.UUID(str(turn.pk)).hex}"
                    yield event("response.created", response=opened)
                    yield event("response.in_progress", response=opened)
                    yield event(
                        "response.output_item.added", output_index=0, item=message_item(turn, "", "in_progress")
                    )
                    part = {"type": "output_text", "text": "", "annotations": []}
                    yield event("response.content_part.added", item_id=item, **at, part=part)
                elif isinstance(step, following.Delta):
                    yield event("response.output_text.delta", item_id=item, **at, delta=step.text)
                elif isinstance(step, following.Finished):
                    turn, previous = await run_db(response_row, turn_id=step.result.turn.pk)
                    whole = response_body(turn, mount=mount, previous=previous)
                    if whole["status"] != "completed":
                        yield event("response.failed", response=whole)
                        continue
                    final = turn.text
                    part = {"type": "output_text", "text": final, "annotations": []}
                    yield event("response.output_text.done", item_id=item, **at, text=final)
                    yield event("response.content_part.done", item_id=item, **at, part=part)
                    yield event(
                        "response.output_item.done", output_index=0, item=message_item(turn, final, "completed")
                    )
                    yield event("response.completed", response=whole)
                elif isinstance(step, following.TimedOut):
                    yield event("error", code=step.error.code, message=step.error.message, param=None)
    except Exception:
        log.exception("streaming response %s failed", completion.turn_id)
        yield event(
            "error", code="server_error", message="the stream failed on the server; the turn is stored", param=None
        )
