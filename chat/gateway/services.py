"""A chat completion is a turn of a conversation of the caller's.

`completion_create` turns an OpenAI request into what the REST API and the websocket send: a prompt
and request overrides (a `system` message -> `system_prompt`; `temperature`, `top_p`, `max_tokens` /
`max_completion_tokens` -> `step_settings_patch.ai-chat.*`), checked against the profile's policy
before anything is written, then submits it through `chat.turns.turn_enqueue` (the one path of every
turn: same queue, same runtime record). The model picks the profile: a new conversation is created
with it as its own selection, or the conversation named by `X-Conversation-Id` is switched to it.

Earlier messages: the server keeps a conversation's context, so every answer can be traced to the
turns it saw. Without `X-Conversation-Id`, earlier user/assistant messages are refused (400): nothing
unrecorded reaches the engine. With it, they must be the conversation's last completed turns (what the
client got back from us), so clients that resend their whole history work and nothing is dropped.

Waiting and streaming follow the conversation's frames on the channel layer (its group, with a channel
of the request's own), not a poll per token: `Completion.result()` waits for the turn's terminal frame,
`Completion.events()` first replays what was sent before it subscribed (the websocket's `since_seq`
replay) and then turns live `llm.delta` frames into text. Both are bounded (twice
CHAT_ENGINE_TIMEOUT_SECONDS, like `?wait=1`), look at the stored turn after a second without any frame
(a frame a layer lost cannot hang a request) and leave the group when they end.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import time
import uuid
from collections.abc import AsyncGenerator, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from django.conf import settings
from django.db import transaction

from profiles.arms import RolloutSubject
from profiles.errors import InvalidInput, NotFound, ProfileError
from profiles.keys import scope_allows, scope_labels
from profiles.models import ApiKey
from profiles.mounts import Mount
from profiles.resolution import Resolution
from profiles.selectors import profile_resolve
from profiles.validation import ProfileRef, canonical_slug, parse_profile_ref

from .. import frames, replay
from .. import selectors as chat_selectors
from .. import services as chat_services
from ..aio import run_db
from ..models import Conversation, Turn
from ..sequencer import FIRST_MARK, get_sequencer
from ..turns import SILENCE_CHECK_SECONDS, await_turn, turn_enqueue
from ..writer import writer
from . import selectors
from .errors import ModelNotAllowed, ModelNotFound, TurnOutcomeError, UnsupportedParameter

log = logging.getLogger(__name__)

CONVERSATION_HEADER = "X-Conversation-Id"
TURN_HEADER = "X-Turn-Id"
CLIENT_TOOL_KEYS = ("tools", "functions", "tool_choice", "function_call", "parallel_tool_calls")
# OpenAI parameter -> the engine setting (`step_settings_patch.ai-chat.<setting>`) it overrides.
ENGINE_PARAMS = {
    "temperature": "ai-temperature",
    "top_p": "ai-top-p",
    "max_tokens": "ai-max-response-tokens",
    "max_completion_tokens": "ai-max-response-tokens",
}
SYSTEM_ROLES = ("system", "developer")
NO_SEQ_LIMIT = 2**31 - 1
TITLE_CHARS = 60  # as the page titles a conversation from its first prompt
OVERRIDES = "request_overrides"


# --------------------------------------------------------------------------- models


def model_id(registry: str, slug: str, mount: Mount) -> str:
    """`slug` in the mount's default registry, `registry/slug` elsewhere."""
    return slug if registry == mount.default_registry else f"{registry}/{slug}"


def model_ref(model: str, mount: Mount) -> tuple[str, ProfileRef]:
    """(registry, profile ref) a model id names: `[registry/]slug`, pinned `slug@3` or following a label
    `slug@production`; a malformed id names no model (404)."""
    registry, _, ref = model.rpartition("/")
    try:
        return canonical_slug(registry or mount.default_registry, field="model"), parse_profile_ref(ref, field="model")
    except InvalidInput:
        raise ModelNotFound(model) from None


def model_list(*, mount: Mount, user: Any, key: ApiKey | None = None) -> list[selectors.ModelRow]:
    """The models `user` may use; with an API key, those its scopes cover (a label scope lists
    `slug@label`)."""
    rows = selectors.model_list(mount=mount, user=user)
    if key is None:
        return rows
    covered = (
        (row, scope_labels(key.scopes, registry=row.registry, slug=row.slug, default_registry=mount.default_registry))
        for row in rows
    )
    return [dataclasses.replace(row, label=label) for row, labels in covered for label in labels]


def check_key_scope(key: ApiKey | None, *, mount: Mount, model: str, registry: str, ref: ProfileRef) -> None:
    """403 `model_not_allowed` when an API key's scopes do not cover the model (the owner may use it:
    the caller checked that first, so a model the owner may not see stays a 404)."""
    if key is not None and not scope_allows(
        key.scopes, registry=registry, slug=ref.slug, label=ref.label, default_registry=mount.default_registry
    ):
        raise ModelNotAllowed(model, key.name)


def model_get(*, mount: Mount, model: str, user: Any, key: ApiKey | None = None) -> selectors.ModelRow:
    registry, ref = model_ref(model, mount)
    row = selectors.model_get(registry=registry, slug=ref.slug, user=user)
    if row is None:
        raise ModelNotFound(model)
    if ref.mode != "follow":  # the version or label must exist too
        try:
            profile_resolve(registry_slug=registry, profile_slug=str(ref), user=user)
        except NotFound:
            raise ModelNotFound(model) from None
    check_key_scope(key, mount=mount, model=model, registry=registry, ref=ref)
    return dataclasses.replace(row, label=ref.label) if ref.label else row


# --------------------------------------------------------------------------- the request


@dataclass(frozen=True)
class CompletionInput:
    model: str
    prompt: str
    system_prompt: str | None
    history: tuple[tuple[str, str], ...]  # earlier (user, assistant) pairs the client sent
    engine: dict[str, tuple[str, Any]]  # engine setting -> (OpenAI parameter, value), in request order
    stream: bool
    prompt_field: str  # where the prompt is in the request, for errors
    system_field: str = "messages"  # where the system prompt is in the request, for errors

    def overrides(self) -> dict[str, Any]:
        """The request overrides, as REST and websocket clients express them."""
        overrides: dict[str, Any] = {}
        if self.system_prompt is not None:
            overrides["system_prompt"] = self.system_prompt
        if self.engine:
            overrides["step_settings_patch"] = {"ai-chat": {name: value for name, (_, value) in self.engine.items()}}
        return overrides

    def param_for(self, path: str) -> str | None:
        """The OpenAI parameter behind a path the resolution or the turn service reported."""
        if path == "prompt":
            return self.prompt_field
        if path.startswith(f"{OVERRIDES}.system_prompt"):
            return self.system_field
        for name, (param, _) in self.engine.items():
            if path.startswith(f"{OVERRIDES}.step_settings_patch.ai-chat.{name}"):
                return param
        if path.startswith(f"{OVERRIDES}.step_settings_patch") and self.engine:
            return next(iter(self.engine.values()))[0]  # the key itself was refused: the first parameter
        return None


def _text(content: Any, path: str) -> str:
    """A message's text: a string or a list of text parts (other parts are not supported)."""
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        texts = []
        for index, part in enumerate(content):
            if not isinstance(part, Mapping) or part.get("type") != "text" or not isinstance(part.get("text"), str):
                raise UnsupportedParameter(
                    'only text content parts are supported: {"type": "text", "text": "..."}', field=f"{path}[{index}]"
                )
            texts.append(part["text"])
        return "".join(texts)
    raise InvalidInput("must be a string or a list of text parts", field=path)


def completion_input(body: Mapping[str, Any]) -> CompletionInput:
    """The validated request body (shape and ranges checked by the serializer) as prompt, system
    prompt, history and engine overrides. Refuses what this gateway does not do (400), never drops it."""
    for key in CLIENT_TOOL_KEYS:
        if body.get(key) is not None:
            raise UnsupportedParameter(
                f"client-side tools are not supported (`{key}`): the model is a profile whose own allowed tools "
                "run on the server; their calls are in the answer and in the stored turn",
                field=key,
            )
    if body.get("n") not in (None, 1):
        raise UnsupportedParameter("n must be 1: each request is one turn with one answer", field="n")
    if body.get("stream_options") is not None and not body.get("stream"):
        raise InvalidInput("stream_options is only allowed when stream is true", field="stream_options")
    if None not in (body.get("max_tokens"), body.get("max_completion_tokens")) and (
        body["max_tokens"] != body["max_completion_tokens"]
    ):
        raise InvalidInput("max_tokens and max_completion_tokens differ: send one", field="max_completion_tokens")

    system: list[str] = []
    dialogue: list[tuple[int, str, str]] = []  # (index, role, text)
    for index, message in enumerate(body["messages"]):
        at = f"messages[{index}]"
        role = message["role"]
        if role in ("tool", "function") or any(message.get(k) for k in ("tool_calls", "function_call", "tool_call_id")):
            raise UnsupportedParameter(
                "client-side tool calls and tool results are not supported: the profile's tools run on the server",
                field=at,
            )
        text = _text(message.get("content"), f"{at}.content")
        if role in SYSTEM_ROLES:
            system.append(text)
        else:
            dialogue.append((index, role, text))
    if not dialogue or dialogue[-1][1] != "user":
        raise InvalidInput("the last message (besides system messages) must be the user's prompt", field="messages")
    index, _, prompt = dialogue[-1]
    prompt_field = f"messages[{index}].content"
    if not prompt.strip():
        raise InvalidInput("the prompt must not be blank", field=prompt_field)
    if len(prompt) > chat_services.MAX_PROMPT_CHARS:
        raise InvalidInput(f"the prompt is longer than {chat_services.MAX_PROMPT_CHARS} characters", field=prompt_field)
    earlier = dialogue[:-1]
    history = []
    for pair in range(0, len(earlier), 2):
        user, assistant = earlier[pair], earlier[pair + 1] if pair + 1 < len(earlier) else None
        if user[1] != "user" or assistant is None or assistant[1] != "assistant":
            wrong = user if user[1] != "user" else (assistant or user)
            raise InvalidInput(
                "earlier messages must be user/assistant pairs (the conversation's turns)",
                field=f"messages[{wrong[0]}]",
            )
        history.append((user[2], assistant[2]))

    engine: dict[str, tuple[str, Any]] = {}
    for param, setting in ENGINE_PARAMS.items():
        if body.get(param) is not None:
            engine.setdefault(setting, (param, body[param]))
    return CompletionInput(
        model=body["model"],
        prompt=prompt,
        system_prompt="\n\n".join(system) if system else None,
        history=tuple(history),
        engine=engine,
        stream=bool(body.get("stream")),
        prompt_field=prompt_field,
    )


@contextlib.contextmanager
def _as_request_params(data: CompletionInput) -> Iterator[None]:
    """Errors about the overrides the gateway built name the OpenAI parameter the client sent."""
    try:
        yield
    except ProfileError as exc:
        if exc.field and (exc.field == "prompt" or exc.field.startswith(OVERRIDES)):
            param = data.param_for(exc.field)
            exc.message = f"{param}: {exc.message}" if param else exc.message
            exc.args, exc.field = (exc.message,), param
        raise


def _conversation_id(raw: str | None) -> uuid.UUID | None:
    if raw is None:
        return None
    try:
        return uuid.UUID(raw.strip())
    except ValueError:
        raise InvalidInput(
            f"{CONVERSATION_HEADER} must be a conversation id (a UUID)", field=CONVERSATION_HEADER
        ) from None


# --------------------------------------------------------------------------- the turn


def _resolve_model(
    *, user: Any, mount: Mount, data: CompletionInput, key: ApiKey | None, conv_id: uuid.UUID | None = None
) -> Resolution:
    """The model, with the overrides (checked against its policy), as the user may use it and the API key
    covers (a label's rollout picks the arm for the user, or for the new conversation `conv_id`)."""
    registry, ref = model_ref(data.model, mount)
    subject = RolloutSubject(user_id=user.pk, conversation_id=conv_id)
    try:
        resolution = profile_resolve(
            registry_slug=registry,
            profile_slug=str(ref),
            request_overrides=data.overrides(),
            user=user,
            subject=subject,
        )
    except NotFound as exc:
        if exc.field in ("registry", "slug"):
            raise ModelNotFound(data.model) from None
        raise
    check_key_scope(key, mount=mount, model=data.model, registry=registry, ref=ref)
    return resolution


def _new_conversation(
    *, user: Any, mount: Mount, data: CompletionInput, key: ApiKey | None
) -> tuple[Conversation, Resolution]:
    """The model resolved, then a new conversation selecting it, not saved: it is stored with its
    first turn (one transaction), and that turn runs on this resolution."""
    conv_id = uuid.uuid4()
    resolution = _resolve_model(user=user, mount=mount, data=data, key=key, conv_id=conv_id)
    if data.history:
        raise InvalidInput(
            f"earlier user/assistant messages need {CONVERSATION_HEADER}: the server keeps a conversation's "
            f"context so every answer is traceable; send the {CONVERSATION_HEADER} a previous answer returned, "
            "or only the system messages and the new user message",
            field="messages",
        )
    conversation = chat_services.conversation_build(
        owner=user,
        mount=mount,
        conv_id=conv_id,
        registry=resolution.registry,
        profile=str(model_ref(data.model, mount)[1]),
        title=" ".join(data.prompt.split())[:TITLE_CHARS],
        resolution=resolution,
        last_seq=FIRST_MARK,  # its first frame numbers reserved with the row (`submit` primes the sequencer)
    )
    return conversation, resolution


@transaction.atomic  # a write through the writer opens its own atomic block
def _named_conversation(
    *, user: Any, mount: Mount, data: CompletionInput, api_key: ApiKey | None, conv_id: uuid.UUID
) -> Conversation:
    """The model resolved before anything is written, then the named conversation (the caller's, in this
    mount, whose last completed turns are the earlier messages sent), switched to the model if it
    selects another (`api_key`: the request's, whose scopes apply; `key` is the writer's)."""
    resolution = _resolve_model(user=user, mount=mount, data=data, key=api_key)
    ref = str(model_ref(data.model, mount)[1])
    try:
        conversation = chat_selectors.conversation_get(conv_id=conv_id, user=user, mount=mount)
    except ProfileError as exc:
        if exc.field == "conv_id":
            exc.field = CONVERSATION_HEADER
        raise
    if data.history:
        stored = chat_selectors.conversation_history(
            conversation=conversation, before_seq=NO_SEQ_LIMIT, limit=len(data.history)
        )
        if [(p.strip(), r.strip()) for p, r in stored] != [(u.strip(), a.strip()) for u, a in data.history]:
            raise InvalidInput(
                f"the earlier messages are not this conversation's last {len(data.history)} completed turns: "
                f"send them as they were answered, or only the new user message ({CONVERSATION_HEADER} keeps "
                "the context)",
                field="messages",
            )
    if (conversation.selected_registry, chat_selectors.conversation_ref(conversation)) != (resolution.registry, ref):
        chat_services.conversation_select_profile(
            conversation=conversation, user=user, slug=ref, registry=resolution.registry
        )
    return conversation


async def completion_create(
    *,
    user: Any,
    mount: Mount,
    body: Mapping[str, Any],
    conversation_id: str | None = None,
    key: ApiKey | None = None,
) -> Completion:
    """A chat completion request as a turn (`submit`)."""
    return await submit(
        user=user, mount=mount, data=completion_input(body), conv_id=_conversation_id(conversation_id), key=key
    )


async def submit(
    *,
    user: Any,
    mount: Mount,
    data: CompletionInput,
    conv_id: uuid.UUID | None,
    key: ApiKey | None = None,
    metadata: dict[str, str] | None = None,
) -> Completion:
    """Submit a request of the OpenAI-compatible API as a turn (one path for every client:
    `turns.turn_enqueue`) of a new conversation, or of `conv_id`. A refused override, an unknown model, a
    model the API `key` does not cover or a full queue raises before anything is stored; the turn's tokens
    count against the key's `tpm`."""
    registry, ref = model_ref(data.model, mount)
    resolution: Resolution | None = None
    with _as_request_params(data):
        if conv_id is None:  # stored with the turn, in the same transaction
            conversation, resolution = await run_db(_new_conversation, user=user, mount=mount, data=data, key=key)
            get_sequencer().prime(conversation.pk, mark=conversation.last_seq)  # nothing numbered yet
        else:
            conversation = await writer.write(
                _named_conversation, key=conv_id, user=user, mount=mount, data=data, api_key=key, conv_id=conv_id
            )
        submitted = await turn_enqueue(
            conversation=conversation,
            user=user,
            prompt=data.prompt,
            request_overrides=data.overrides() or None,
            resolution=resolution,
            api_key_id=key.pk if key is not None else None,
            metadata=metadata,
        )
    return Completion(
        conv_id=str(conversation.pk),
        turn_id=str(submitted.turn.pk),
        message_seq=submitted.frame["seq"] if submitted.frame else 0,
        mount=mount,
        model=model_id(registry, str(ref), mount),
        stream=data.stream,
        wait_seconds=settings.CHAT_ENGINE_TIMEOUT_SECONDS * 2,
        # Claimed with its submission: the turn as stored, its record included (no read when it starts).
        identity=submitted.turn if submitted.started is not None else None,
    )


# --------------------------------------------------------------------------- following the turn


@dataclass(frozen=True)
class Started:
    """The turn claimed its runtime: the record (model, fingerprint) is stored."""

    turn: Turn


@dataclass(frozen=True)
class Delta:
    text: str


@dataclass(frozen=True)
class Finished:
    result: selectors.TurnResult


@dataclass(frozen=True)
class TimedOut:
    error: TurnOutcomeError


Event = Started | Delta | Finished | TimedOut


def outcome_error(result: selectors.TurnResult) -> TurnOutcomeError | None:
    """None for a completed turn; else the error that answers it (the stored turn keeps its partial text)."""
    turn = result.turn
    if turn.status == Turn.Status.COMPLETED:
        return None
    error = turn.error if isinstance(turn.error, dict) else {}
    where = f"turn {turn.pk} (its partial text is stored in the conversation)"
    if turn.status == Turn.Status.CANCELLED:
        return TurnOutcomeError(f"{where} was cancelled", code="cancelled", http_status=409)
    if turn.status == Turn.Status.INTERRUPTED:
        return TurnOutcomeError(
            f"{where} was interrupted: {error.get('message', '')}", code="interrupted", http_status=503
        )
    code = str(error.get("code") or "turn_failed")
    return TurnOutcomeError(f"{where} failed ({code}): {error.get('message', '')}", code=code, http_status=502)


@dataclass
class _Follow:
    """Which frames are the turn's, and the text already given to the client per message."""

    turn_id: str
    ours: bool = False
    started: bool = False
    done: bool = False
    parts: dict[str, list[str]] = field(default_factory=dict)  # message_id -> text sent, in pieces
    sent: list[str] = field(default_factory=list)

    def add(self, message_id: str, text: str) -> list[Event]:
        if not text:
            return []
        self.parts.setdefault(message_id, []).append(text)
        self.sent.append(text)
        return [Delta(text)]

    def upto(self, message_id: str, text: str) -> list[Event]:
        """A message's text so far (`llm.snapshot`) or whole (`llm.final`): the part not sent yet."""
        sofar = "".join(self.parts.get(message_id, ()))
        if len(text) > len(sofar) and text.startswith(sofar):
            return self.add(message_id, text[len(sofar) :])
        return []


@dataclass
class Completion:
    conv_id: str
    turn_id: str
    message_seq: int  # the turn's `chat.message` frame: the replay starts after it
    mount: Mount
    model: str  # the model id requested (what the turn runs is in its record)
    stream: bool
    wait_seconds: float
    identity: Turn | None = None  # the turn with its runtime record, when its submission claimed it
    deadline: float = 0.0

    def __post_init__(self) -> None:
        self.deadline = time.monotonic() + self.wait_seconds

    def headers(self) -> dict[str, str]:
        return {CONVERSATION_HEADER: self.conv_id, TURN_HEADER: self.turn_id}

    def _timed_out(self) -> TurnOutcomeError:
        return TurnOutcomeError(
            f"turn {self.turn_id} did not finish within {self.wait_seconds:g}s; it goes on and is stored: "
            f"GET {self.mount.path}api/chat/conversations/{self.conv_id}",
            code="timeout",
            http_status=504,
        )

    async def result(self) -> selectors.TurnResult:
        """The finished turn (completed), or the error its outcome is (`chat.turns.await_turn`)."""
        result = await await_turn(
            conv_id=self.conv_id,
            turn_id=self.turn_id,
            timeout=self.deadline - time.monotonic(),
            read=selectors.turn_result,
            ended=self._result_of_end,
        )
        if result is None:
            raise self._timed_out()
        error = outcome_error(result)
        if error is not None:
            raise error
        return result

    async def events(self) -> AsyncGenerator[Event, None]:
        """`Started`, then `Delta`s of the answer as it streams, then `Finished` (or `TimedOut`)."""
        follow = _Follow(self.turn_id)
        # What was sent before the subscription comes first: the same replay as `GET …/events?since_seq=`.
        stream = replay.follow(self.conv_id, self.message_seq, silence=SILENCE_CHECK_SECONDS, deadline=self.deadline)
        async with contextlib.aclosing(stream):
            async for frame in stream:
                if frame is None:
                    result = await run_db(selectors.turn_result, turn_id=self.turn_id)
                    events = self._finish(follow, result) if result is not None else []
                else:
                    events = await self._follow(follow, frame)
                for event in events:
                    yield event
                if follow.done:
                    return
        yield TimedOut(self._timed_out())

    async def _follow(self, follow: _Follow, frame: dict[str, Any]) -> list[Event]:
        kind, data = frame["type"], frame["data"]
        if kind in frames.TERMINAL:
            if data.get("turn_id") != self.turn_id:
                follow.ours = False
                return []
            result = self._result_of_end(frame)
            if result is None:  # stored before it was sent: the row has the final text, usage and record
                result = await run_db(selectors.turn_result, turn_id=self.turn_id)
            return self._finish(follow, result) if result is not None else []
        if kind == "turn.started":
            follow.ours = data.get("turn_id") == self.turn_id
            if follow.ours and not follow.started:
                follow.started = True
                identity = self.identity
                if identity is None:
                    identity = await run_db(selectors.turn_identity, turn_id=self.turn_id)
                return [Started(identity)]
            return []
        if not follow.ours:
            return []
        if kind == "llm.delta":
            return follow.add(data["message_id"], data.get("delta", ""))
        if kind in ("llm.snapshot", "llm.final"):
            return follow.upto(data["message_id"], data.get("text", ""))
        return []

    def _result_of_end(self, frame: dict[str, Any]) -> selectors.TurnResult | None:
        """The result from the terminal frame when the submission gave the identity (no read), else None."""
        if self.identity is None:
            return None
        return selectors.turn_result_of_end(identity=self.identity, frame=frame)

    def _finish(self, follow: _Follow, result: selectors.TurnResult) -> list[Event]:
        events: list[Event] = [] if follow.started else [Started(result.turn)]
        follow.started = follow.done = True
        sent, final = "".join(follow.sent), result.turn.text
        if result.turn.status == Turn.Status.COMPLETED and len(final) > len(sent) and final.startswith(sent):
            events.append(Delta(final[len(sent) :]))  # text no frame carried (lost frames, a closing note)
        events.append(Finished(result))
        return events
