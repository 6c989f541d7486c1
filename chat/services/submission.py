"""A turn's submission: validated, admitted by the budgets that apply, queued with its `chat.message`
frame in one transaction (one submitter at a time per conversation); and frames stored on their own."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import transaction
from django.db.models import F, OuterRef

from profiles.access import remember_group_names, user_group_names_of
from profiles.errors import Conflict, InvalidInput, NotFound
from profiles.prepared import Insert, Param, Select, Update, flush_held
from profiles.resolution import Resolution
from profiles.timestamps import now_ms
from profiles.validation import ensure_storable

from ..billing import budgets
from ..errors import QueueFull
from ..frames import chat_message
from ..frames import make as make_frame
from ..models import Conversation, ConversationEvent, Turn
from ..selectors import conversation_resolve, mount_default_registry
from .common import MAX_IDEMPOTENCY_KEY, MAX_PROMPT_CHARS
from .events import events_insert
from .running import conversation_claim, turn_claimed

log = logging.getLogger(__name__)


# Every turn's rows, inserted without compiling (profiles.prepared).
_turn_insert = Insert(Turn, holdable=True)
_conversation_insert = Insert(Conversation)


# The statements of every submission, compiled once (profiles.prepared): the lock, with the conversation
# as it is now (its turn counts included: `Conversation.queued_turns`) and its owner (the turn's runner
# needs both); and a turn queued behind others, counted.
_LOCKED = Select(
    lambda: (
        Conversation.objects.select_for_update(of=("self",))
        .select_related("owner")
        .filter(pk=Param("conv_id"))
        .annotate(owner_groups=user_group_names_of(OuterRef("owner_id")))  # the resolution needs them
        .order_by()[:1]
    )
)
_QUEUED = Update(
    lambda: Conversation.objects.filter(pk=Param("conv_id")),
    last_turn_seq=Param("seq"),
    queued_turns=F("queued_turns") + 1,
)


@dataclass(frozen=True)
class Submitted:
    turn: Turn
    created: bool
    position: int  # turns ahead of it (0 = it runs now)
    frame: dict[str, Any] | None = None  # the stored `chat.message` frame, to publish
    resolution: Resolution | None = None  # the profile as resolved for this submission (with its overrides)
    started: Any = None  # what `start` prepared: the turn was claimed with its submission (running already)


# `start(conversation, turn, resolution)`: called under the conversation's lock when nothing runs or waits
# in it, with the conversation as stored, the turn about to be inserted (`turn.seq` known) and the
# submission's resolution (or None). It returns what the turn
# will run on (its `record`, the runtime record; anything else is the caller's), and the turn is inserted
# running, claimed in the same transaction; or None, and the turn is queued for the dispatcher.
Start = Callable[[Conversation, Turn, Resolution | None], Any]


def turn_submit(
    *,
    conversation: Conversation,
    user: Any,
    prompt: Any,
    request_overrides: Any = None,
    idempotency_key: Any = None,
    message_seq: int = 0,
    replaces: Any = None,
    resolution: Resolution | None = None,
    resolve: Callable[[], Resolution] | None = None,
    api_key_id: int | None = None,
    metadata: dict[str, str] | None = None,
    start: Start | None = None,
) -> Submitted:
    """Validate and queue a turn, with its `chat.message` frame (numbered `message_seq` by the caller)
    in the same transaction. The override policy is checked now, so a violation stores nothing.

    `conversation` may be new and unsaved (`conversation_build`): it is stored with its first turn.
    `api_key_id`: the API key the request came with (the gateway's). `resolution`: the conversation's
    profile as the caller just resolved it with these overrides (the
    policy check is then done); `resolve`, for a new conversation: that resolution made here, in this
    write, so that a refusal (an unknown profile, a refused override) stores nothing and the caller makes
    one trip to the database, not two. `start`: a turn that would run at once is claimed in the same
    transaction, already running (see `Start`): its submission, claim and runtime record are one write.
    `replaces` (a turn id): regenerate, retry or edit-and-resend. The conversation's last turn, finished;
    the new turn links to it, and its prompt and request overrides default to that turn's."""
    new = conversation._state.adding
    replaced = None
    if replaces is not None:
        replaced = _replaced_turn(conversation, replaces)
        prompt = replaced.prompt if prompt is None else prompt
        request_overrides = (replaced.request_overrides or None) if request_overrides is None else request_overrides
    if not isinstance(prompt, str) or not prompt.strip():
        raise InvalidInput("prompt must be a non-empty string", field="prompt")
    if len(prompt) > MAX_PROMPT_CHARS:
        raise InvalidInput(f"prompt is longer than {MAX_PROMPT_CHARS} characters", field="prompt")
    key = idempotency_key or ""
    if not isinstance(key, str) or len(key) > MAX_IDEMPOTENCY_KEY:
        raise InvalidInput(
            f"idempotency_key must be a string of at most {MAX_IDEMPOTENCY_KEY} characters", field="idempotency_key"
        )
    if request_overrides is not None and not isinstance(request_overrides, dict):
        raise InvalidInput("request_overrides must be an object", field="request_overrides")
    ensure_storable({"prompt": prompt, "idempotency_key": key, "request_overrides": request_overrides}, field="")
    if resolve is not None and not new:
        raise ValueError("`resolve` is for a new conversation's first turn")
    if request_overrides and resolution is None and resolve is None:  # the policy now: a refusal stores nothing
        resolution = conversation_resolve(conversation=conversation, user=user, request_overrides=request_overrides)
    turn_fields = {"request_overrides": request_overrides, "key": key, "api_key_id": api_key_id, "metadata": metadata}
    with transaction.atomic():
        if new:  # stored with its first turn: nothing to lock, count or find
            if resolve is not None:
                resolution = resolve()
            reserved = _budget_reserve(conversation, user, resolution, api_key_id)
            turn = _turn_build(conversation, prompt, seq=1, replaced=None, reserved_usd=reserved, **turn_fields)
            started = start(conversation, turn, resolution) if start is not None else None
            if started is not None:  # the row is stored claimed, with the record
                for name, value in turn_claimed(turn, started.record).items():
                    setattr(conversation, name, value)
                conversation.active_turn_id = turn.pk
            conversation.last_turn_seq, conversation.queued_turns = turn.seq, int(started is None)
            conversation.updated_at_ms = now_ms()  # as its save() would stamp it
            _conversation_insert([conversation])
            _turn_insert([turn])
            frame = _message_frame(conversation, turn, message_seq, replaced=None)
            return Submitted(turn, True, 0, frame=frame, resolution=resolution, started=started)
        # One submitter at a time per conversation (the row lock on PostgreSQL; IMMEDIATE on SQLite):
        # the turn's seq, the queue bound and the idempotency check are read-then-write.
        locked = _LOCKED.first(conv_id=conversation.pk)
        if locked is None:
            raise NotFound("conversation not found", field="conv_id")
        remember_group_names(locked.owner, locked.owner_groups)
        if key:
            flush_held()  # a turn an earlier write of the same group commit stored with this key
            existing = Turn.objects.filter(conversation=conversation, idempotency_key=key).first()
            if existing is not None:
                return Submitted(existing, created=False, position=0)
        waiting = locked.queued_turns + (locked.active_turn_id is not None)  # the running turn and the queue
        if replaced is not None:
            _check_replaceable(replaced, last_seq=locked.last_turn_seq)
        if waiting > settings.CHAT_MAX_QUEUED_TURNS:  # the running turn plus at most N waiting
            raise QueueFull(f"{waiting} turns are already waiting in this conversation", field="prompt")
        reserved = _budget_reserve(locked, user, resolution, api_key_id)
        seq = locked.last_turn_seq + 1
        turn = _turn_build(locked, prompt, seq=seq, replaced=replaced, reserved_usd=reserved, **turn_fields)
        started = start(locked, turn, resolution) if start is not None and not waiting else None
        record = turn_claimed(turn, started.record) if started is not None else None  # stored running
        _turn_insert([turn])
        if record is None:
            _QUEUED(conv_id=locked.pk, seq=seq)
        elif not conversation_claim(conv_id=locked.pk, turn_id=turn.pk, record=record, seq=seq):
            raise RuntimeError(f"conversation {locked.pk} could not be claimed under its lock")
        frame = _message_frame(conversation, turn, message_seq, replaced=replaced)
    return Submitted(turn, True, waiting, frame=frame, resolution=resolution, started=started)


def _turn_build(
    conversation: Conversation,
    prompt: str,
    *,
    request_overrides: Any,
    key: str,
    seq: int,
    replaced: Turn | None,
    api_key_id: int | None = None,
    metadata: dict[str, str] | None = None,
    reserved_usd: float | None = None,
) -> Turn:
    return Turn(
        conversation=conversation,
        seq=seq,
        prompt=prompt,
        request_overrides=request_overrides or {},
        idempotency_key=key,
        created_at_ms=now_ms(),
        replaces=replaced,
        api_key_id=api_key_id,
        metadata=metadata or {},
        reserved_usd=reserved_usd,
    )


def _budget_reserve(
    conversation: Conversation, user: Any, resolution: Resolution | None, api_key_id: int | None
) -> float | None:
    """The budgets that apply to the turn admit it (or `BudgetExceeded`); what it reserves. Its profile is
    the one just resolved, else the one the conversation selects or last ran on."""
    if resolution is not None:
        registry, slug = resolution.registry, resolution.profile
    elif conversation.selected_profile:
        registry, slug = conversation.selected_registry, conversation.selected_profile
    else:
        registry = conversation.selected_registry or mount_default_registry(conversation)
        slug = conversation.current_runtime_key
    subject = budgets.Subject(user=user, registry=registry, slug=slug, api_key_id=api_key_id)
    return budgets.budget_admit(subject)


def _message_frame(
    conversation: Conversation, turn: Turn, message_seq: int, *, replaced: Turn | None
) -> dict[str, Any] | None:
    """The turn's `chat.message` frame, stored (none when the caller numbered none)."""
    if not message_seq:
        return None
    data = chat_message(turn_id=turn.pk, text=turn.prompt, replaces=replaced.pk if replaced else None)
    frame = make_frame(type="chat.message", conv_id=conversation.pk, seq=message_seq, data=data)
    events_insert(
        [ConversationEvent(conversation=conversation, seq=message_seq, type=frame["type"], turn=turn, frame=frame)]
    )
    return frame


def _replaced_turn(conversation: Conversation, turn_id: Any) -> Turn:
    try:
        replaced = Turn.objects.filter(conversation_id=conversation.pk, pk=turn_id).first()
    except (ValueError, ValidationError):
        replaced = None
    if replaced is None:
        raise NotFound("turn not found in this conversation", field="turn_id")
    return replaced


def _check_replaceable(replaced: Turn, *, last_seq: int | None) -> None:
    """Under the conversation's lock: only its last turn, once it has finished, can be replaced."""
    if replaced.seq != last_seq:
        raise Conflict("only the conversation's last turn can be regenerated or edited", field="turn_id")
    if not Turn.objects.filter(pk=replaced.pk, status__in=Turn.FINISHED).exists():
        raise Conflict("the turn has not finished yet: cancel it or wait for it", field="turn_id")
