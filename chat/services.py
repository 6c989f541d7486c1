"""Conversation and turn writes, and the reads the runtime needs. Synchronous (ORM); async callers
wrap them in `database_sync_to_async`.

One turn runs at a time per conversation on any worker: a worker claims it with a conditional
UPDATE of `Conversation.active_turn` (works the same on SQLite and PostgreSQL).
"""

from __future__ import annotations

import os
import socket
import uuid
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.db import transaction
from django.db.models import F, Q

from profiles.errors import InvalidInput, NotFound, ProfileError
from profiles.mounts import Mount
from profiles.resolution import Resolution
from profiles.selectors import current_profile, profile_resolve, registry_get
from profiles.services import now_ms
from profiles.validation import canonical_slug

from .models import Conversation, ConversationEvent, Turn

WORKER_ID = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
MAX_PROMPT_CHARS = 16_000
MAX_IDEMPOTENCY_KEY = 128


class ConversationForbidden(ProfileError):
    status = 403
    code = "permission_denied"


class QueueFull(ProfileError):
    status = 429
    code = "queue_full"


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
    """`profile`/`registry` given at creation become the conversation's own selection (checked first)."""
    selected_registry = selected_profile = ""
    if profile:
        resolution = profile_resolve(registry_slug=registry or mount.default_registry, profile_slug=profile)
        selected_registry, selected_profile = resolution.registry, resolution.profile
    elif registry:
        registry_get(registry)
        selected_registry = canonical_slug(registry, field="registry")
    return Conversation.objects.create(
        id=conv_id or uuid.uuid4(),
        owner=owner,
        mount=mount.name,
        title=title[:200],
        selected_registry=selected_registry,
        selected_profile=selected_profile,
    )


def conversation_get(*, conv_id: Any, user: Any, mount: Mount) -> Conversation:
    try:
        conversation = Conversation.objects.get(pk=conv_id)
    except (Conversation.DoesNotExist, ValueError):
        raise NotFound("conversation not found", field="conv_id") from None
    if conversation.owner_id != user.pk:
        raise ConversationForbidden("this conversation belongs to another user", field="conv_id")
    if conversation.mount != mount.name:
        raise NotFound(f"conversation not found in the {mount.name} app", field="conv_id")
    return conversation


@transaction.atomic
def conversation_rename(*, conversation: Conversation, title: str) -> Conversation:
    if not isinstance(title, str) or len(title) > 200:
        raise InvalidInput("title must be a string of at most 200 characters", field="title")
    conversation.title = title.strip()
    conversation.save(update_fields=["title", "updated_at"])
    return conversation


@transaction.atomic
def conversation_select_profile(
    *, conversation: Conversation, user: Any, slug: Any, registry: Any = None
) -> Resolution:
    """`profile.select`: this conversation only, from its next turn. `slug=None` clears the
    conversation's own selection, so it follows the user's current profile again."""
    if slug is None:
        Conversation.objects.filter(pk=conversation.pk).update(selected_registry="", selected_profile="")
        conversation.selected_registry = conversation.selected_profile = ""
        return conversation_resolve(conversation=conversation, user=user)
    mount_registry = conversation.selected_registry or _default_registry(conversation)
    resolution = profile_resolve(registry_slug=registry or mount_registry, profile_slug=canonical_slug(slug))
    Conversation.objects.filter(pk=conversation.pk).update(
        selected_registry=resolution.registry, selected_profile=resolution.profile
    )
    conversation.selected_registry, conversation.selected_profile = resolution.registry, resolution.profile
    return resolution


def _default_registry(conversation: Conversation) -> str:
    from profiles.mounts import get_mount

    return get_mount(conversation.mount).default_registry


def conversation_resolve(*, conversation: Conversation, user: Any, request_overrides: Any = None) -> Resolution:
    """The conversation's own selection, else the user's current profile for the mount, else the default.

    A selection that no longer resolves (its profile was deleted) falls back to its registry's
    default: never an error for the user. The next turn then says so with `runtime.switched`.
    """
    default_registry = _default_registry(conversation)
    if conversation.selected_profile:
        try:
            return profile_resolve(
                registry_slug=conversation.selected_registry,
                profile_slug=conversation.selected_profile,
                request_overrides=request_overrides,
            )
        except NotFound as exc:
            if exc.field == "slug":
                return profile_resolve(
                    registry_slug=conversation.selected_registry, request_overrides=request_overrides
                )
            # The registry itself is gone: follow the user's current profile.
    elif conversation.selected_registry:
        default_registry = conversation.selected_registry
    current = current_profile(user=user, mount=conversation.mount, default_registry=default_registry)
    return profile_resolve(
        registry_slug=current.registry.slug, profile_slug=current.profile.slug, request_overrides=request_overrides
    )


def conversation_history(*, conversation: Conversation, before_seq: int) -> list[tuple[str, str]]:
    """(prompt, reply) of the turns that finished with a reply, oldest first."""
    rows = (
        Turn.objects.filter(conversation=conversation, seq__lt=before_seq, status=Turn.Status.COMPLETED)
        .order_by("seq")
        .values_list("prompt", "text")
    )
    return list(rows)


# --------------------------------------------------------------------------- events


def seq_allocate(*, conv_id: Any, count: int = 1) -> int:
    """Reserve `count` numbers; returns the last. Strictly increasing across workers."""
    with transaction.atomic():
        Conversation.objects.filter(pk=conv_id).update(last_seq=F("last_seq") + count)
        return Conversation.objects.values_list("last_seq", flat=True).get(pk=conv_id)


def make_frame(*, type: str, conv_id: Any, seq: int, data: dict[str, Any]) -> dict[str, Any]:
    return {"type": type, "id": uuid.uuid4().hex, "seq": seq, "conv_id": str(conv_id), "ts_ms": now_ms(), "data": data}


def event_append(*, conv_id: Any, type: str, data: dict[str, Any], turn_id: Any = None) -> dict[str, Any]:
    """Number, store and return one frame; it keeps the running turn's heartbeat fresh too."""
    with transaction.atomic():
        seq = seq_allocate(conv_id=conv_id)
        frame = make_frame(type=type, conv_id=conv_id, seq=seq, data=data)
        ConversationEvent.objects.create(conversation_id=conv_id, seq=seq, type=type, turn_id=turn_id, frame=frame)
        if turn_id is not None:
            Turn.objects.filter(pk=turn_id, status=Turn.Status.RUNNING).update(heartbeat_at_ms=frame["ts_ms"])
    return frame


def events_since(*, conversation: Conversation, since_seq: int, limit: int = 1000) -> list[dict[str, Any]]:
    rows = ConversationEvent.objects.filter(conversation=conversation, seq__gt=since_seq).order_by("seq")[:limit]
    return [row.frame for row in rows]


# --------------------------------------------------------------------------- turns


@dataclass(frozen=True)
class Submitted:
    turn: Turn
    created: bool
    position: int  # turns ahead of it (0 = it runs now)


def turn_submit(
    *, conversation: Conversation, user: Any, prompt: Any, request_overrides: Any = None, idempotency_key: Any = None
) -> Submitted:
    """Validate and queue a turn. The override policy is checked now, so a violation stores nothing."""
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
    conversation_resolve(conversation=conversation, user=user, request_overrides=request_overrides)
    with transaction.atomic():
        # One submitter at a time per conversation (the row lock on PostgreSQL; IMMEDIATE on SQLite):
        # the turn's seq, the queue bound and the idempotency check are read-then-write.
        Conversation.objects.select_for_update().filter(pk=conversation.pk).values_list("pk", flat=True).first()
        if key:
            existing = Turn.objects.filter(conversation=conversation, idempotency_key=key).first()
            if existing is not None:
                return Submitted(existing, created=False, position=0)
        waiting = Turn.objects.filter(
            conversation=conversation, status__in=[Turn.Status.QUEUED, Turn.Status.RUNNING]
        ).count()
        if waiting > settings.CHAT_MAX_QUEUED_TURNS:  # the running turn plus at most N waiting
            raise QueueFull(f"{waiting} turns are already waiting in this conversation", field="prompt")
        last = Turn.objects.filter(conversation=conversation).order_by("-seq").values_list("seq", flat=True).first()
        turn = Turn.objects.create(
            conversation=conversation,
            seq=(last or 0) + 1,
            prompt=prompt,
            request_overrides=request_overrides or {},
            idempotency_key=key,
            created_at_ms=now_ms(),
        )
    return Submitted(turn, created=True, position=waiting)


def turn_claim_next(*, conv_id: Any, worker: str = WORKER_ID) -> Turn | None:
    """Claim the oldest queued turn if none runs. The conditional UPDATE is the cross-worker lock."""
    turns_mark_stale(conv_id=conv_id)  # a dead worker's turn must not block the conversation forever
    with transaction.atomic():
        turn = Turn.objects.filter(conversation_id=conv_id, status=Turn.Status.QUEUED).order_by("seq").first()
        if turn is None:
            return None
        if not Conversation.objects.filter(pk=conv_id, active_turn__isnull=True).update(active_turn=turn):
            return None
        stamp = now_ms()
        Turn.objects.filter(pk=turn.pk).update(
            status=Turn.Status.RUNNING, worker=worker, started_at_ms=stamp, heartbeat_at_ms=stamp
        )
    # With its conversation and owner: the turn's runner needs both and should not ask again.
    return Turn.objects.select_related("conversation__owner").get(pk=turn.pk)


def turns_mark_stale(*, conv_id: Any = None) -> int:
    """Interrupt running turns whose worker has not updated them for CHAT_TURN_STALE_SECONDS."""
    stale = Turn.objects.filter(
        status=Turn.Status.RUNNING, heartbeat_at_ms__lt=now_ms() - settings.CHAT_TURN_STALE_SECONDS * 1000
    )
    if conv_id is not None:
        stale = stale.filter(conversation_id=conv_id)
    turn_ids = list(stale.values_list("pk", flat=True))
    return turns_mark_interrupted(turn_ids=turn_ids) if turn_ids else 0


@transaction.atomic
def turn_record_runtime(*, turn: Turn, record: dict[str, Any]) -> None:
    """Written before the first delta: the turn row says which runtime produced it."""
    fields = {
        k: record[k]
        for k in (
            "registry",
            "profile_slug",
            "profile_version",
            "runtime_key",
            "fingerprint",
            "engine",
            "overrides_applied",
            "middlewares",
            "tools",
        )
    }
    Turn.objects.filter(pk=turn.pk).update(**fields)
    Conversation.objects.filter(pk=turn.conversation_id).update(
        current_runtime_key=record["runtime_key"],
        current_fingerprint=record["fingerprint"],
        current_profile_version=record["profile_version"],
    )


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
) -> Turn:
    with transaction.atomic():
        Turn.objects.filter(pk=turn_id).update(
            status=status,
            text=text,
            usage=usage or {},
            error=error,
            tool_calls=tool_calls or [],
            artifacts=artifacts or [],
            suggestions=suggestions or [],
            finished_at_ms=now_ms(),
        )
        turn = Turn.objects.get(pk=turn_id)
        Conversation.objects.filter(pk=turn.conversation_id, active_turn_id=turn_id).update(active_turn=None)
    return turn


def turns_mark_interrupted(*, turn_ids: list[Any] | None = None, worker_prefix: str | None = None) -> int:
    """Mark running turns interrupted (never silently lost) and free their conversations."""
    running = Turn.objects.filter(status=Turn.Status.RUNNING)
    if turn_ids is not None:
        running = running.filter(pk__in=turn_ids)
    if worker_prefix is not None:
        running = running.filter(worker__startswith=worker_prefix)
    with transaction.atomic():
        ids = list(running.values_list("pk", flat=True))
        count = Turn.objects.filter(pk__in=ids).update(
            status=Turn.Status.INTERRUPTED,
            finished_at_ms=now_ms(),
            error={"code": "interrupted", "message": "the server stopped while this turn was running"},
        )
        Conversation.objects.filter(active_turn_id__in=ids).update(active_turn=None)
        # Queued turns whose conversation has nothing running will be claimed by the next drain.
    return count


def conversations_with_queued_turns() -> list[Any]:
    return list(
        Conversation.objects.filter(Q(active_turn__isnull=True), turns__status=Turn.Status.QUEUED)
        .values_list("pk", flat=True)
        .distinct()
    )
