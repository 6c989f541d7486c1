"""What a turn runs on: its resolved profile, the runtime composed from it, its history and its price,
with its runtime record and the switch its first frame announces. Prepared under the conversation's lock
by its submission (`start_at_submission`, which then claims it) or by the drain when its turn comes."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from profiles.errors import is_outage
from profiles.resolution import Resolution
from profiles.timestamps import now_ms

from . import selectors
from .billing import prices
from .composition import runtime_for, runtime_record, switch_reason, switched_from
from .models import Turn
from .runtime.composer import Runtime


def turn_inputs(
    *, turn: Turn, resolution: Resolution | None
) -> tuple[Resolution, Runtime, list[tuple[str, str]], prices.Rate | None]:
    """What a turn runs on, read in one database hop: its resolved profile (unless its submission just
    resolved it), the runtime composed from it (cached by fingerprint) and the conversation's history
    within the runtime's window (a first turn has none), and the price of its engine's model now."""
    conversation = turn.conversation
    if resolution is None:
        resolution = selectors.conversation_resolve(
            conversation=conversation, user=conversation.owner, request_overrides=turn.request_overrides or None
        )
    runtime = runtime_for(conversation.mount, resolution)
    history: list[tuple[str, str]] = []
    before = turn.seq
    if turn._state.adding and turn.replaces is not None:
        # Prepared by its submission, before its row exists: the turn it replaces (the conversation's last,
        # in memory) is not marked replaced yet, so the window ends before it.
        before = turn.replaces.seq
    if before > 1 and runtime.history_turns:
        history = selectors.conversation_history(
            conversation=conversation, before_seq=before, limit=runtime.history_turns
        )
    engine = runtime.engine_info
    rate = prices.table.rate(engine["provider"], engine["model"], at_ms=now_ms())
    return resolution, runtime, history, rate


@dataclass(frozen=True)
class Prepared:
    """What a turn runs on, prepared by its submission (then claimed with it) or by the drain."""

    resolution: Resolution
    runtime: Runtime
    history: list[tuple[str, str]]
    rate: prices.Rate | None
    record: dict[str, Any]  # its runtime record, stored with its claim
    switch: tuple[dict[str, Any], dict[str, Any]] | None  # (the runtime before, why) when it changes


def prepare(*, turn: Turn, resolution: Resolution | None) -> Prepared:
    """What the turn runs on (one database hop, see `turn_inputs`), its runtime record, and the switch
    its first frame announces when the conversation ran on another runtime before."""
    conversation = turn.conversation
    resolution, runtime, history, rate = turn_inputs(turn=turn, resolution=resolution)
    previous = switched_from(conversation, runtime)
    switch = None if previous is None else (previous, switch_reason(conversation, runtime, resolution))
    return Prepared(resolution, runtime, history, rate, runtime_record(runtime, resolution), switch)


def start_at_submission(conversation: Any, turn: Turn, resolution: Resolution | None) -> Prepared | None:
    """`turn_submit`'s `start` (`turn.conversation` is `conversation` as locked): what the turn runs on, so
    that its submission claims it with its record. None when it cannot be prepared (the drain then fails
    it and says why, as for any queued turn); an outage fails the submission."""
    try:
        return prepare(turn=turn, resolution=resolution)
    except Exception as exc:
        if is_outage(exc):
            raise
        return None
