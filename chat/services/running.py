"""A running turn's writes: the claim with its runtime record, checkpoints (leases, text, frames), the
finish, and interruptions (expired leases, a stopped server)."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.db import transaction
from django.db.models import Exists, F, OuterRef

from profiles.prepared import Insert, Param, Select, Update, UpdateReturning
from profiles.timestamps import now_ms

from ..models import Conversation, ConversationEvent, Turn, TurnChunk
from .common import WORKER_ID
from .events import event_rows, events_insert

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


def _queue_served() -> Any:
    return _free_conversation().filter(queued_turns__gt=0)  # none counted: the turn is not queued any more


def _counted(submitted: bool) -> dict[str, Any]:
    """A claim counts the turn submitted with it (its `seq`, the newest), or takes a queued one off the count."""
    return {"last_turn_seq": Param("seq")} if submitted else {"queued_turns": F("queued_turns") - 1}


_CLAIMS = {
    (submitted, recorded): Update(
        _free_conversation if submitted else _queue_served,
        active_turn=Param("turn_id"),
        **_counted(submitted),
        **(_params(*_CONVERSATION_RECORD) if recorded else {}),
    )
    for submitted in (False, True)
    for recorded in (False, True)
}
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


def _released() -> Any:
    return Conversation.objects.filter(pk=Param("conv_id"), active_turn_id=Param("turn_id"))


# The release says whether turns wait behind it: its row's count, current even after a lock wait.
_RELEASED = UpdateReturning(_released, "queued_turns", active_turn=None)
_QUEUED = Select(lambda: Conversation.objects.filter(pk=Param("conv_id")).order_by().values_list("queued_turns"))


def turn_claimed(turn: Turn, record: dict[str, Any] | None, *, worker: str = WORKER_ID) -> dict[str, Any]:
    """Make `turn` (in memory) running on this worker under a new lease, with its runtime record; returns
    what its conversation stores of that record (`conversation_claim`)."""
    stamp = now_ms()
    turn.status, turn.worker = Turn.Status.RUNNING, worker
    turn.started_at_ms, turn.lease_until_ms = stamp, _lease_until(stamp)
    if record is None:
        return {}
    arm = record["rollout"] or {}
    for name in RECORD_FIELDS:
        setattr(turn, name, record[name])
    turn.rollout_id = arm.get("id")
    return {
        "current_runtime_key": record["runtime_key"],
        "current_fingerprint": record["fingerprint"],
        "current_profile_version": record["profile_version"],
        "rollout_id": arm.get("id"),
        "rollout_version": arm.get("version"),
    }


def conversation_claim(*, conv_id: Any, turn_id: Any, record: dict[str, Any], seq: int | None = None) -> bool:
    """The cross-worker lock: the conversation's `active_turn` becomes this turn if it has none (a
    conditional UPDATE, the same on SQLite and PostgreSQL), with what it stores of the turn's record.
    `seq`: the turn is being submitted (its conversation's newest); else it was queued (one fewer waits)."""
    values = {"conv_id": conv_id, "turn_id": turn_id, **record, **({"seq": seq} if seq is not None else {})}
    return bool(_CLAIMS[seq is not None, bool(record)](**values))


@transaction.atomic
def turn_start(*, turn: Turn, record: dict[str, Any] | None, worker: str = WORKER_ID) -> bool:
    """Claim a queued turn and take its lease, and write the runtime it runs on, in one transaction
    (a turn claimed at its submission skips this). False = another turn of the conversation runs (or
    another worker took this one). Its first frames are stored with its first checkpoint or its end."""
    conversation = turn_claimed(turn, record, worker=worker)
    if not conversation_claim(conv_id=turn.conversation_id, turn_id=turn.pk, record=conversation):
        return False
    lease = {"worker": worker, "started_at_ms": turn.started_at_ms, "lease_until_ms": turn.lease_until_ms}
    ids = {"conv_id": turn.conversation_id, "turn_id": turn.pk}
    if record is None:
        started = _STARTED(**ids, **lease)
    else:
        fields = {name: record[name] for name in RECORD_FIELDS}
        started = _STARTED_WITH_RECORD(**ids, **lease, **fields, rollout_id=turn.rollout_id)
    if not started:
        transaction.set_rollback(True)
        return False
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
    renew: bool = True  # with no text to store, its lease is renewed all the same (it is due)

    @property
    def renews(self) -> bool:
        """Whether this checkpoint renews the turn's lease: always when it stores text (the chunk, or the
        rewritten row, carries the lease), else when it is due."""
        return bool(self.text) or self.rewrite or self.renew


_chunks_insert = Insert(TurnChunk)


@transaction.atomic
def turns_checkpoint(*, checkpoints: list[Checkpoint], worker: str = WORKER_ID) -> set[str]:
    """A worker's timer: store the running turns' partial text and the frames sent since the last
    checkpoint, and renew their leases: a turn with new text renews it with its chunk (one write per turn),
    one without only when it is due. Returns the turns it still holds (a turn whose lease expired and was
    interrupted elsewhere is not written to)."""
    held = {
        str(pk)
        for pk in Turn.objects.filter(
            pk__in=[c.turn_id for c in checkpoints], status=Turn.Status.RUNNING, worker=worker
        ).values_list("pk", flat=True)
    }
    if not held:
        return held
    lease = _lease_until(now_ms())
    renew = [c.turn_id for c in checkpoints if c.renew and not c.text and not c.rewrite and c.turn_id in held]
    if renew:
        Turn.objects.filter(pk__in=renew, status=Turn.Status.RUNNING, worker=worker).update(lease_until_ms=lease)
    rows: list[ConversationEvent] = []
    chunks: list[TurnChunk] = []
    for c in checkpoints:
        if c.turn_id not in held:
            continue
        if c.rewrite:  # rare: a message's final text differs from its deltas
            TurnChunk.objects.filter(turn_id=c.turn_id).delete()
            Turn.objects.filter(pk=c.turn_id).update(text=c.text or "", lease_until_ms=lease)
        elif c.text:
            chunks.append(TurnChunk(turn_id=c.turn_id, start=c.start, text=c.text, lease_until_ms=lease))
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
    events_insert(event_rows(conv_id, turn_id, list(frames), turn_text=text))
    queued = _RELEASED.returned(conv_id=conv_id, turn_id=turn_id) or _QUEUED.row(conv_id=conv_id)  # not its own
    return Finished(True, bool(queued and queued[0]))


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


def _expired(stamp: int) -> Any:
    """Running turns whose lease expired at `stamp`: neither their row's lease nor their newest chunk's
    (a checkpoint that stored text renewed it with the chunk) runs past it."""
    renewed_by_chunk = TurnChunk.objects.filter(turn_id=OuterRef("pk"), lease_until_ms__gte=stamp)
    return Turn.objects.filter(status=Turn.Status.RUNNING, lease_until_ms__lt=stamp).exclude(Exists(renewed_by_chunk))


def turns_interrupt_expired() -> list[tuple[str, str, str]]:
    """Any worker, on a timer: interrupt running turns whose lease expired (their worker died),
    keeping their last checkpoint of text, and free their conversations. Returns (conv_id, turn_id, text)."""
    expired = list(_expired(now_ms()).values_list("pk", "conversation_id", "text"))
    if not expired:
        return []
    with transaction.atomic():
        done = []
        pieces = _consolidated_texts([turn_id for turn_id, _, _ in expired])
        for turn_id, conv_id, text in expired:
            text += pieces.get(turn_id, "")
            # Conditional per turn: its worker may have finished or renewed it meanwhile.
            if (
                _expired(now_ms())
                .filter(pk=turn_id)
                .update(
                    status=Turn.Status.INTERRUPTED,
                    finished_at_ms=now_ms(),
                    error=LEASE_EXPIRED_ERROR,
                    lease_until_ms=None,
                    text=text,
                )
            ):
                Conversation.objects.filter(pk=conv_id, active_turn_id=turn_id).update(active_turn=None)
                done.append((str(conv_id), str(turn_id), text))
        consolidated = [turn_id for _, turn_id, _ in done if turn_id in {str(pk) for pk in pieces}]
        if consolidated:  # a turn renewed meanwhile keeps its chunks
            TurnChunk.objects.filter(turn_id__in=consolidated).delete()
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
