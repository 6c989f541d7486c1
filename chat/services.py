"""Conversation and turn writes (reads are in `chat.selectors`). Synchronous (ORM); async callers
run them on the database pool (`chat.aio.run_db`).

One turn runs at a time per conversation on any worker: a worker claims it with a conditional
UPDATE of `Conversation.active_turn` (works the same on SQLite and PostgreSQL).
"""

from __future__ import annotations

import copy
import logging
import os
import socket
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import transaction
from django.db.models import Count, Max, Q

from profiles.errors import Conflict, InvalidInput, NotFound, ProfileUnavailable
from profiles.mounts import Mount
from profiles.resolution import Resolution
from profiles.selectors import profile_resolve, registry_get
from profiles.services import rollout_guard_check
from profiles.timestamps import now_ms
from profiles.validation import canonical_slug, ensure_storable, parse_profile_ref

from .billing import budgets
from .errors import ConversationForbidden, QueueFull
from .frames import chat_message, for_storage
from .frames import make as make_frame
from .models import Conversation, ConversationEvent, Turn, TurnChunk, TurnFeedback
from .selectors import conversation_get, conversation_resolve, conversation_turn_get, mount_default_registry

log = logging.getLogger(__name__)
WORKER_ID = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
MAX_PROMPT_CHARS = 16_000
MAX_IDEMPOTENCY_KEY = 128
MAX_FEEDBACK_COMMENT_CHARS = 2_000


# --------------------------------------------------------------------------- conversations


def conversation_create(
    *,
    owner: Any,
    mount: Mount,
    conv_id: uuid.UUID | None = None,
    registry: str | None = None,
    profile: str | None = None,
    title: str = "",
) -> Conversation:
    """`profile` (a ref: `slug`, `slug@3`, `slug@label`) and `registry` given at creation become the
    conversation's own selection (checked first)."""
    conversation = conversation_build(
        owner=owner, mount=mount, conv_id=conv_id, registry=registry, profile=profile, title=title
    )
    conversation.save(force_insert=True)
    return conversation


def conversation_build(
    *,
    owner: Any,
    mount: Mount,
    conv_id: uuid.UUID | None = None,
    registry: str | None = None,
    profile: str | None = None,
    title: str = "",
    resolution: Resolution | None = None,
) -> Conversation:
    """A new conversation, checked but not saved: `conversation_create` saves it alone, `turn_submit`
    with its first turn (one transaction). `resolution`: `profile` as the caller just resolved it for
    the owner (not resolved again)."""
    selected_registry = selected_profile = selected_at = ""
    if profile:
        ref = parse_profile_ref(profile, field="profile")
        if resolution is None:
            resolution = profile_resolve(
                registry_slug=registry or mount.default_registry, profile_slug=str(ref), field="profile", user=owner
            )
        selected_registry, selected_profile, selected_at = resolution.registry, resolution.profile, ref.at
    elif registry:
        registry_get(registry)
        selected_registry = canonical_slug(registry, field="registry")
    return Conversation(
        id=conv_id or uuid.uuid4(),
        owner=owner,
        mount=mount.name,
        title=title[:200],
        selected_registry=selected_registry,
        selected_profile=selected_profile,
        selected_at=selected_at,
    )


@dataclass(frozen=True)
class Opened:
    conversation: Conversation
    resolution: Resolution | None  # None: the profile it runs on cannot be used now (`unavailable` says why)
    created: bool
    unavailable: ProfileUnavailable | None = None
    refused: ProfileUnavailable | None = None  # the socket's `profile` for a new conversation, not selected


def conversation_open(
    *, conv_id: uuid.UUID, user: Any, mount: Mount, registry: str | None = None, profile: str | None = None
) -> Opened:
    """A socket's conversation: loaded, or created with the socket's profile/registry as its own
    selection; and the runtime it resolves to now. One call, so a socket opens in one database trip.

    A profile that cannot be used (its stored stack does not resolve) never refuses the socket: the
    socket's `profile` is not selected (`refused`), and a conversation whose profile cannot run opens
    without a runtime (`unavailable`); its turns fail with that error until the profile is fixed."""
    created, refused = False, None
    try:
        conversation = conversation_get(conv_id=conv_id, user=user, mount=mount)
    except NotFound:
        if Conversation.objects.filter(pk=conv_id).exists():
            raise
        try:
            conversation = conversation_create(
                owner=user, mount=mount, conv_id=conv_id, registry=registry, profile=profile
            )
        except ProfileUnavailable as exc:
            refused = exc
            conversation = conversation_create(owner=user, mount=mount, conv_id=conv_id, registry=registry)
        created = True
    try:
        resolution = conversation_resolve(conversation=conversation, user=user)
    except ProfileUnavailable as exc:
        return Opened(conversation, None, created, unavailable=exc, refused=refused)
    return Opened(conversation, resolution, created, refused=refused)


@transaction.atomic
def conversation_rename(*, conversation: Conversation, title: str) -> Conversation:
    if not isinstance(title, str) or len(title) > 200:
        raise InvalidInput("title must be a string of at most 200 characters", field="title")
    ensure_storable(title, field="title")
    conversation.title = title.strip()
    # An update, not save(): a conversation deleted meanwhile is a 404, not a 500.
    if not Conversation.objects.filter(pk=conversation.pk).update(title=conversation.title, updated_at_ms=now_ms()):
        raise NotFound("conversation not found", field="conv_id")
    return conversation


@transaction.atomic
def conversation_select_profile(
    *, conversation: Conversation, user: Any, slug: Any, registry: Any = None
) -> Resolution:
    """`profile.select`: this conversation only, from its next turn. `slug` is a ref (`slug`, `slug@3`,
    `slug@label`); None clears the conversation's own selection, so it follows the user's current
    profile again. A profile that cannot be used (`ProfileUnavailable`: its stack does not resolve) is
    refused either way, before anything changes."""
    if slug is None:
        following = copy.copy(conversation)
        following.selected_registry = following.selected_profile = following.selected_at = ""
        resolution = conversation_resolve(conversation=following, user=user)
        Conversation.objects.filter(pk=conversation.pk).update(
            selected_registry="", selected_profile="", selected_at=""
        )
        conversation.selected_registry = conversation.selected_profile = conversation.selected_at = ""
        return resolution
    ref = parse_profile_ref(slug, field="slug")
    mount_registry = conversation.selected_registry or mount_default_registry(conversation)
    resolution = profile_resolve(registry_slug=registry or mount_registry, profile_slug=str(ref), user=user)
    Conversation.objects.filter(pk=conversation.pk).update(
        selected_registry=resolution.registry, selected_profile=resolution.profile, selected_at=ref.at
    )
    conversation.selected_registry, conversation.selected_profile = resolution.registry, resolution.profile
    conversation.selected_at = ref.at
    return resolution


@transaction.atomic
def conversation_update(*, conversation: Conversation, title: Any = None, archived: Any = None) -> Conversation:
    """PATCH: rename (`title`) and/or archive (`archived: true`) or bring back (`false`). An archived
    conversation keeps everything; it only leaves the default list."""
    changes: dict[str, Any] = {}
    if title is not None:
        if not isinstance(title, str) or len(title) > 200:
            raise InvalidInput("title must be a string of at most 200 characters", field="title")
        ensure_storable(title, field="title")
        changes["title"] = title.strip()
    if archived is not None:
        if not isinstance(archived, bool):
            raise InvalidInput("archived must be true or false", field="archived")
        changes["archived_at_ms"] = (conversation.archived_at_ms or now_ms()) if archived else None
    if not changes:
        raise InvalidInput("nothing to change: send title and/or archived", field="title")
    changes["updated_at_ms"] = now_ms()
    if not Conversation.objects.filter(pk=conversation.pk).update(**changes):
        raise NotFound("conversation not found", field="conv_id")
    for name, value in changes.items():
        setattr(conversation, name, value)
    return conversation


@transaction.atomic
def conversation_delete(*, conversation: Conversation, user: Any) -> list[str]:
    """Delete the owner's conversation with its turns and events. Its queued or running turns are
    cancelled first, in the same transaction: a worker's checkpoint and finish only write a turn that is
    still running, so the worker running one writes nothing more and stops at its next checkpoint
    (`turns.conversation_delete` also asks it to stop at once). Returns the ids of the turns cancelled."""
    if conversation.owner_id != user.pk:
        raise ConversationForbidden("this conversation belongs to another user", field="conv_id")
    open_turns = Turn.objects.filter(
        conversation_id=conversation.pk, status__in=[Turn.Status.QUEUED, Turn.Status.RUNNING]
    )
    cancelled = [str(pk) for pk in open_turns.values_list("pk", flat=True)]
    if cancelled:
        Turn.objects.filter(pk__in=cancelled, status__in=[Turn.Status.QUEUED, Turn.Status.RUNNING]).update(
            status=Turn.Status.CANCELLED, finished_at_ms=now_ms(), lease_until_ms=None
        )
    if not Conversation.objects.filter(pk=conversation.pk).exists():
        raise NotFound("conversation not found", field="conv_id")
    Conversation.objects.filter(pk=conversation.pk).delete()  # its turns and events cascade
    return cancelled


# --------------------------------------------------------------------------- events


def _event_rows(conv_id: Any, turn_id: Any, frames: list[dict[str, Any]]) -> list[ConversationEvent]:
    return [
        ConversationEvent(conversation_id=conv_id, seq=f["seq"], type=f["type"], turn_id=turn_id, frame=for_storage(f))
        for f in frames
    ]


@transaction.atomic
def events_store(*, conv_id: Any, frames: list[dict[str, Any]], turn_id: Any = None) -> None:
    """Store frames numbered by the sequencer (one INSERT for all of them)."""
    ConversationEvent.objects.bulk_create(_event_rows(conv_id, turn_id, frames))


# --------------------------------------------------------------------------- turns


@dataclass(frozen=True)
class Submitted:
    turn: Turn
    created: bool
    position: int  # turns ahead of it (0 = it runs now)
    frame: dict[str, Any] | None = None  # the stored `chat.message` frame, to publish
    resolution: Resolution | None = None  # the profile as resolved for this submission (with its overrides)


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
    api_key_id: int | None = None,
    metadata: dict[str, str] | None = None,
) -> Submitted:
    """Validate and queue a turn, with its `chat.message` frame (numbered `message_seq` by the caller)
    in the same transaction. The override policy is checked now, so a violation stores nothing.

    `conversation` may be new and unsaved (`conversation_build`): it is stored with its first turn.
    `api_key_id`: the API key the request came with (the gateway's). `resolution`: the conversation's
    profile as the caller just resolved it with these overrides (the
    policy check is then done).
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
    if request_overrides and resolution is None:  # checked against the policy now: a refusal stores nothing
        resolution = conversation_resolve(conversation=conversation, user=user, request_overrides=request_overrides)
    with transaction.atomic():
        if new:  # stored with its first turn: nothing to lock, count or find
            reserved = _budget_reserve(conversation, user, resolution, api_key_id)
            conversation.save(force_insert=True)
            turn = _turn_create(
                conversation,
                prompt,
                request_overrides,
                key,
                seq=1,
                replaced=None,
                api_key_id=api_key_id,
                metadata=metadata,
                reserved_usd=reserved,
            )
            frame = _message_frame(conversation, turn, message_seq, replaced=None)
            return Submitted(turn, created=True, position=0, frame=frame, resolution=resolution)
        # One submitter at a time per conversation (the row lock on PostgreSQL; IMMEDIATE on SQLite):
        # the turn's seq, the queue bound and the idempotency check are read-then-write.
        # The lock, and the conversation as it is now (with its owner: the turn's runner needs both).
        # The counts are read after it: a statement that waited for the lock sees rows committed
        # meanwhile only from its next statement on (PostgreSQL: a subquery here would count stale rows).
        locked = (
            Conversation.objects.select_for_update(of=("self",))
            .select_related("owner")
            .filter(pk=conversation.pk)
            .first()
        )
        if locked is None:
            raise NotFound("conversation not found", field="conv_id")
        if key:
            existing = Turn.objects.filter(conversation=conversation, idempotency_key=key).first()
            if existing is not None:
                return Submitted(existing, created=False, position=0)
        counts = Turn.objects.filter(conversation=locked).aggregate(
            last=Max("seq"), waiting=Count("pk", filter=Q(status__in=Turn.WAITING))
        )
        waiting, last = counts["waiting"], counts["last"]
        if replaced is not None:
            _check_replaceable(replaced, last_seq=last)
        if waiting > settings.CHAT_MAX_QUEUED_TURNS:  # the running turn plus at most N waiting
            raise QueueFull(f"{waiting} turns are already waiting in this conversation", field="prompt")
        reserved = _budget_reserve(locked, user, resolution, api_key_id)
        turn = _turn_create(
            locked,
            prompt,
            request_overrides,
            key,
            seq=(last or 0) + 1,
            replaced=replaced,
            api_key_id=api_key_id,
            metadata=metadata,
            reserved_usd=reserved,
        )
        frame = _message_frame(conversation, turn, message_seq, replaced=replaced)
    return Submitted(turn, created=True, position=waiting, frame=frame, resolution=resolution)


def _turn_create(
    conversation: Conversation,
    prompt: str,
    request_overrides: Any,
    key: str,
    *,
    seq: int,
    replaced: Turn | None,
    api_key_id: int | None = None,
    metadata: dict[str, str] | None = None,
    reserved_usd: float | None = None,
) -> Turn:
    return Turn.objects.create(
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
    ConversationEvent.objects.create(
        conversation=conversation, seq=message_seq, type=frame["type"], turn=turn, frame=frame
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


RECORD_FIELDS = (
    "registry",
    "profile_slug",
    "profile_version",
    "profile_ref",
    "rollout",
    "runtime_key",
    "fingerprint",
    "engine",
    "overrides_applied",
    "middlewares",
    "tools",
    "runtime_config",
)


@transaction.atomic
def turn_start(
    *, turn: Turn, record: dict[str, Any] | None, frames: list[dict[str, Any]], worker: str = WORKER_ID
) -> bool:
    """Claim the turn and take its lease, write the runtime it runs on and its first frames, in one
    transaction. The conditional UPDATE of `active_turn` is the cross-worker lock: False = another
    turn of the conversation runs (or another worker took this one)."""
    conv = Conversation.objects.filter(pk=turn.conversation_id, active_turn__isnull=True)
    if record is not None:
        arm = record.get("rollout") or {}
        claimed = conv.update(
            active_turn=turn,
            current_runtime_key=record["runtime_key"],
            current_fingerprint=record["fingerprint"],
            current_profile_version=record["profile_version"],
            rollout_id=arm.get("id"),
            rollout_version=arm.get("version"),
        )
    else:
        claimed = conv.update(active_turn=turn)
    if not claimed:
        return False
    stamp = now_ms()
    fields = {k: record[k] for k in RECORD_FIELDS if k in record} if record is not None else {}
    if fields.get("rollout"):
        fields["rollout_id"] = fields["rollout"]["id"]
    started = Turn.objects.filter(pk=turn.pk, status=Turn.Status.QUEUED).update(
        status=Turn.Status.RUNNING, worker=worker, started_at_ms=stamp, lease_until_ms=_lease_until(stamp), **fields
    )
    if not started:
        transaction.set_rollback(True)
        return False
    ConversationEvent.objects.bulk_create(_event_rows(turn.conversation_id, turn.pk, frames))
    return True


def _lease_until(stamp: int) -> int:
    return stamp + int(settings.CHAT_TURN_LEASE_SECONDS * 1000)


@dataclass(frozen=True)
class Checkpoint:
    turn_id: str
    conv_id: str
    text: str | None  # the text new since the last checkpoint (None: nothing new)
    frames: list[dict[str, Any]]
    start: int = 0  # where `text` begins in the turn's text
    rewrite: bool = False  # `text` is the whole text so far (it changed before `start`): replace it


@transaction.atomic
def turns_checkpoint(*, checkpoints: list[Checkpoint], worker: str = WORKER_ID, renew: bool = True) -> set[str]:
    """A worker's timer: renew the leases of its running turns, store their partial text and the
    frames sent since the last checkpoint. Returns the turns it still holds (a turn whose lease
    expired and was interrupted elsewhere is not written to)."""
    held = {
        str(pk)
        for pk in Turn.objects.filter(
            pk__in=[c.turn_id for c in checkpoints], status=Turn.Status.RUNNING, worker=worker
        ).values_list("pk", flat=True)
    }
    if not held:
        return held
    if renew:
        Turn.objects.filter(pk__in=held, status=Turn.Status.RUNNING, worker=worker).update(
            lease_until_ms=_lease_until(now_ms())
        )
    rows: list[ConversationEvent] = []
    chunks: list[TurnChunk] = []
    for c in checkpoints:
        if c.turn_id not in held:
            continue
        if c.rewrite:  # rare: a message's final text differs from its deltas
            TurnChunk.objects.filter(turn_id=c.turn_id).delete()
            Turn.objects.filter(pk=c.turn_id).update(text=c.text or "")
        elif c.text:
            chunks.append(TurnChunk(turn_id=c.turn_id, start=c.start, text=c.text))
        rows += _event_rows(c.conv_id, c.turn_id, c.frames)
    if chunks:
        TurnChunk.objects.bulk_create(chunks)  # appended: a checkpoint never rewrites the text so far
    if rows:
        ConversationEvent.objects.bulk_create(rows)
    return held


def _consolidated_texts(turn_ids: list[Any]) -> dict[Any, str]:
    """The text so far of running turns that have chunks (`Turn.text` + chunks), for turns that end
    without their worker: one query."""
    texts: dict[Any, list[str]] = {}
    for turn_id, text in (
        TurnChunk.objects.filter(turn_id__in=turn_ids).order_by("turn_id", "start").values_list("turn_id", "text")
    ):
        texts.setdefault(turn_id, []).append(text)
    return {turn_id: "".join(parts) for turn_id, parts in texts.items()}


@dataclass(frozen=True)
class Finished:
    finished: bool  # False: the lease was lost, nothing was written
    more_queued: bool  # turns wait behind it in the conversation


@transaction.atomic
def turn_finish(
    *,
    turn_id: Any,
    status: str,
    text: str,
    usage: dict | None = None,
    error: dict | None = None,
    tool_calls: list | None = None,
    artifacts: list | None = None,
    suggestions: list | None = None,
    frames: Sequence[dict[str, Any]] = (),
    worker: str = WORKER_ID,
    middleware_events: list | None = None,
    has_chunks: bool = False,
) -> Finished:
    """End a turn this worker still holds, with the frames not stored yet (its terminal frame last),
    its whole text (and, `has_chunks`, without the pieces its checkpoints stored).
    Not `finished`: the lease was lost (the turn is `interrupted` already) and nothing is written."""
    finished = Turn.objects.filter(pk=turn_id, status=Turn.Status.RUNNING, worker=worker).update(
        status=status,
        text=text,
        usage=usage or {},
        error=error,
        tool_calls=tool_calls or [],
        artifacts=artifacts or [],
        suggestions=suggestions or [],
        middleware_events=middleware_events or [],
        finished_at_ms=now_ms(),
        lease_until_ms=None,
    )
    if not finished:
        return Finished(False, False)
    if has_chunks:
        TurnChunk.objects.filter(turn_id=turn_id).delete()
    conv_id = frames[0]["conv_id"] if frames else Turn.objects.values_list("conversation_id", flat=True).get(pk=turn_id)
    ConversationEvent.objects.bulk_create(_event_rows(conv_id, turn_id, list(frames)))
    Conversation.objects.filter(pk=conv_id, active_turn_id=turn_id).update(active_turn=None)
    return Finished(True, Turn.objects.filter(conversation_id=conv_id, status=Turn.Status.QUEUED).exists())


INTERRUPTED_ERROR = {"code": "interrupted", "message": "the server stopped while this turn was running"}
LEASE_EXPIRED_ERROR = {
    "code": "interrupted",
    "message": "the worker running this turn stopped renewing it (it stopped, or lost the database) before it finished",
}


def storage_unavailable_error() -> dict[str, str]:
    return {
        "code": "storage_unavailable",
        "message": f"the database did not answer for more than {settings.CHAT_OUTAGE_GRACE_SECONDS:g} s while this "
        "turn was running; the text so far is kept",
    }


def turns_interrupt_expired() -> list[tuple[str, str, str]]:
    """Any worker, on a timer: interrupt running turns whose lease expired (their worker died),
    keeping their last checkpoint of text, and free their conversations. Returns (conv_id, turn_id, text)."""
    expired = list(
        Turn.objects.filter(status=Turn.Status.RUNNING, lease_until_ms__lt=now_ms()).values_list(
            "pk", "conversation_id", "text"
        )
    )
    if not expired:
        return []
    with transaction.atomic():
        done = []
        pieces = _consolidated_texts([turn_id for turn_id, _, _ in expired])
        for turn_id, conv_id, text in expired:
            text += pieces.get(turn_id, "")
            # Conditional per turn: its worker may have finished or renewed it meanwhile.
            if Turn.objects.filter(pk=turn_id, status=Turn.Status.RUNNING, lease_until_ms__lt=now_ms()).update(
                status=Turn.Status.INTERRUPTED,
                finished_at_ms=now_ms(),
                error=LEASE_EXPIRED_ERROR,
                lease_until_ms=None,
                text=text,
            ):
                Conversation.objects.filter(pk=conv_id, active_turn_id=turn_id).update(active_turn=None)
                done.append((str(conv_id), str(turn_id), text))
        if pieces:
            TurnChunk.objects.filter(turn_id__in=list(pieces)).delete()
    return done


def turns_mark_interrupted(
    *, turn_ids: list[Any] | None = None, worker_prefix: str | None = None
) -> list[tuple[str, str, str]]:
    """Mark running turns interrupted (never silently lost) and free their conversations. Returns
    (conv_id, turn_id, text) of each, for its terminal frame."""
    running = Turn.objects.filter(status=Turn.Status.RUNNING)
    if turn_ids is not None:
        running = running.filter(pk__in=turn_ids)
    if worker_prefix is not None:
        running = running.filter(worker__startswith=worker_prefix)
    with transaction.atomic():
        ids = list(running.values_list("pk", flat=True))
        pieces = _consolidated_texts(ids)
        for turn_id, text in Turn.objects.filter(pk__in=list(pieces)).values_list("pk", "text"):
            Turn.objects.filter(pk=turn_id).update(text=text + pieces[turn_id])
        TurnChunk.objects.filter(turn_id__in=list(pieces)).delete()
        Turn.objects.filter(pk__in=ids).update(
            status=Turn.Status.INTERRUPTED, finished_at_ms=now_ms(), error=INTERRUPTED_ERROR, lease_until_ms=None
        )
        Conversation.objects.filter(active_turn_id__in=ids).update(active_turn=None)
        # Queued turns whose conversation has nothing running will be claimed by the next drain.
        ended = Turn.objects.filter(pk__in=ids).values_list("conversation_id", "pk", "text")
        return [(str(conv_id), str(turn_id), text) for conv_id, turn_id, text in ended]


# --------------------------------------------------------------------------- feedback


def rollout_judge(*, rollout_id: int) -> None:
    """A turn of a rollout's arm ended or was rated: the rollout's guard judges its arms now
    (`profiles.services.rollout_guard_check`). A guard that cannot be checked now (the database went
    away) is checked again at the arm's next turn or rating; the caller's write stands either way."""
    try:
        rollout_guard_check(rollout_id=rollout_id)
    except Exception:
        log.exception("the guard of rollout %s could not be checked", rollout_id)


@transaction.atomic
def turn_feedback_set(
    *, conversation: Conversation, user: Any, turn_id: Any, rating: Any, comment: Any = ""
) -> TurnFeedback:
    """The user's rating of a finished turn of their conversation (`up` or `down`, an optional comment),
    replacing the one they gave before. The conversation comes from `selectors.conversation_get`, which
    answers for another user's conversation."""
    if rating not in TurnFeedback.Rating.values:
        raise InvalidInput('rating must be "up" or "down"', field="rating")
    comment = "" if comment is None else comment
    if not isinstance(comment, str) or len(comment) > MAX_FEEDBACK_COMMENT_CHARS:
        raise InvalidInput(
            f"comment must be a string of at most {MAX_FEEDBACK_COMMENT_CHARS} characters", field="comment"
        )
    ensure_storable(comment, field="comment")
    turn = conversation_turn_get(conversation=conversation, turn_id=turn_id)
    if turn.status not in Turn.FINISHED:
        raise Conflict("the turn has not finished yet: feedback is on an answer", field="turn_id")
    feedback, _ = TurnFeedback.objects.update_or_create(
        turn=turn, user=user, defaults={"rating": rating, "comment": comment.strip()}
    )
    if turn.rollout_id is not None:  # a rating counts against the arm's thumbs-down bound
        rollout_id = turn.rollout_id
        transaction.on_commit(lambda: rollout_judge(rollout_id=rollout_id))
    return feedback


@transaction.atomic
def turn_feedback_delete(*, conversation: Conversation, user: Any, turn_id: Any) -> None:
    """Withdraw the user's rating of a turn of their conversation (nothing to withdraw is not an error)."""
    turn = conversation_turn_get(conversation=conversation, turn_id=turn_id)
    TurnFeedback.objects.filter(turn=turn, user=user).delete()
