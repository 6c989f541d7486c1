"""A running turn's writes: the claim with its runtime record, checkpoints (leases, text, frames), the
finish, and interruptions (expired leases, a stopped server)."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.db import transaction

from profiles.prepared import Insert, Param, Select, Update
from profiles.timestamps import now_ms

from ..models import Conversation, ConversationEvent, Turn, TurnChunk
from .common import WORKER_ID
from .submission import event_rows, events_insert

log = logging.getLogger(__name__)


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


# The statements of every turn's claim and finish, compiled once (profiles.prepared).
def _params(*names: str) -> dict[str, Param]:
    return {name: Param(name) for name in names}


def _free_conversation() -> Any:
    return Conversation.objects.filter(pk=Param("conv_id"), active_turn__isnull=True)


def _queued_turn() -> Any:
    return Turn.objects.filter(pk=Param("turn_id"), status=Turn.Status.QUEUED)


_CONVERSATION_RECORD = (
    "current_runtime_key",
    "current_fingerprint",
    "current_profile_version",
    "rollout_id",
    "rollout_version",
)
_LEASE = {"status": Turn.Status.RUNNING, **_params("worker", "started_at_ms", "lease_until_ms")}
_CLAIM = Update(_free_conversation, active_turn=Param("turn_id"))
_CLAIM_WITH_RECORD = Update(_free_conversation, active_turn=Param("turn_id"), **_params(*_CONVERSATION_RECORD))
_STARTED = Update(_queued_turn, **_LEASE)
_STARTED_WITH_RECORD = Update(_queued_turn, **_LEASE, **_params(*RECORD_FIELDS, "rollout_id"))
_FINISHED = Update(
    lambda: Turn.objects.filter(pk=Param("turn_id"), status=Turn.Status.RUNNING, worker=Param("worker")),
    **{
        name: Param(name)
        for name in (
            "status",
            "text",
            "usage",
            "error",
            "tool_calls",
            "artifacts",
            "suggestions",
            "middleware_events",
            "finished_at_ms",
        )
    },
    lease_until_ms=None,
)
_RELEASED = Update(
    lambda: Conversation.objects.filter(pk=Param("conv_id"), active_turn_id=Param("turn_id")), active_turn=None
)
_MORE_QUEUED = Select(
    lambda: (
        Turn.objects.filter(conversation_id=Param("conv_id"), status=Turn.Status.QUEUED)
        .order_by()
        .values_list("pk")[:1]
    )
)


@transaction.atomic
def turn_start(
    *, turn: Turn, record: dict[str, Any] | None, frames: list[dict[str, Any]], worker: str = WORKER_ID
) -> bool:
    """Claim the turn and take its lease, write the runtime it runs on and its first frames, in one
    transaction. The conditional UPDATE of `active_turn` is the cross-worker lock: False = another
    turn of the conversation runs (or another worker took this one)."""
    ids = {"conv_id": turn.conversation_id, "turn_id": turn.pk}
    stamp = now_ms()
    lease = {"worker": worker, "started_at_ms": stamp, "lease_until_ms": _lease_until(stamp)}
    if record is None:
        if not _CLAIM(**ids):
            return False
        started = _STARTED(**ids, **lease)
    else:
        arm = record["rollout"] or {}
        conversation = {
            "current_runtime_key": record["runtime_key"],
            "current_fingerprint": record["fingerprint"],
            "current_profile_version": record["profile_version"],
            "rollout_id": arm.get("id"),
            "rollout_version": arm.get("version"),
        }
        if not _CLAIM_WITH_RECORD(**ids, **conversation):
            return False
        fields = {name: record[name] for name in RECORD_FIELDS}
        started = _STARTED_WITH_RECORD(**ids, **lease, **fields, rollout_id=arm.get("id"))
    if not started:
        transaction.set_rollback(True)
        return False
    events_insert(event_rows(turn.conversation_id, turn.pk, frames))
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
    renew: bool = True  # its lease is renewed (a third of it has passed)


_chunks_insert = Insert(TurnChunk)


@transaction.atomic
def turns_checkpoint(*, checkpoints: list[Checkpoint], worker: str = WORKER_ID) -> set[str]:
    """A worker's timer: renew the leases of its running turns that are due, store their partial text
    and the frames sent since the last checkpoint. Returns the turns it still holds (a turn whose lease
    expired and was interrupted elsewhere is not written to)."""
    held = {
        str(pk)
        for pk in Turn.objects.filter(
            pk__in=[c.turn_id for c in checkpoints], status=Turn.Status.RUNNING, worker=worker
        ).values_list("pk", flat=True)
    }
    if not held:
        return held
    renew = [c.turn_id for c in checkpoints if c.renew and c.turn_id in held]
    if renew:
        Turn.objects.filter(pk__in=renew, status=Turn.Status.RUNNING, worker=worker).update(
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
        rows += event_rows(c.conv_id, c.turn_id, c.frames)
    if chunks:
        _chunks_insert(chunks)  # appended: a checkpoint never rewrites the text so far
    if rows:
        events_insert(rows)
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
    finished = _FINISHED(
        turn_id=turn_id,
        worker=worker,
        status=status,
        text=text,
        usage=usage or {},
        error=error,
        tool_calls=tool_calls or [],
        artifacts=artifacts or [],
        suggestions=suggestions or [],
        middleware_events=middleware_events or [],
        finished_at_ms=now_ms(),
    )
    if not finished:
        return Finished(False, False)
    if has_chunks:
        TurnChunk.objects.filter(turn_id=turn_id).delete()
    conv_id = frames[0]["conv_id"] if frames else Turn.objects.values_list("conversation_id", flat=True).get(pk=turn_id)
    events_insert(event_rows(conv_id, turn_id, list(frames)))
    _RELEASED(conv_id=conv_id, turn_id=turn_id)
    return Finished(True, _MORE_QUEUED.row(conv_id=conv_id) is not None)


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
