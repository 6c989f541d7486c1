"""The frame catalog: every frame the chat app sends is shaped here, and the one rule that drops a live
frame a replay already gave a client.

A frame is `{type, id, seq, conv_id, ts_ms, data}`. Conversation frames carry the conversation's next
`seq` (see `chat.streams` for numbering and sending); frames for one socket only (`ws.hello`,
`ws.pong`, `error`) are `seq` 0 and never stored. The runtime's own frames (`llm.*`, `tool.*`,
`artifact`, `suggestions`, `middleware.event`) get their `data` from `chat.runtime` and their envelope
here. Plain Python: no database, no channel layer.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from profiles.timestamps import now_ms

Frame = dict[str, Any]

LOCAL_SEQ = 0  # a frame for one socket: not in the conversation's sequence
TERMINAL = frozenset({"turn.completed", "turn.failed", "turn.cancelled"})
NOT_STORED = frozenset({"llm.delta"})  # fanned out only: each message's `llm.final` has its text


def group_name(conv_id: Any) -> str:
    """The channel-layer group of a conversation's sockets and followers, on every worker."""
    return f"conv.{conv_id}"


def ends_group_name(conv_id: Any) -> str:
    """The group of the requests waiting for a turn of the conversation to end (`chat.turns.await_turn`):
    it gets the conversation's terminal frames only, so a waiter is not woken by every delta."""
    return f"conv-ends.{conv_id}"


def control_group_name(conv_id: Any) -> str:
    """The group of the worker running the conversation's turn: cancel and replay requests."""
    return f"conv-control.{conv_id}"


def make(*, type: str, conv_id: Any, seq: int, data: Mapping[str, Any]) -> Frame:
    """The envelope every frame has."""
    return {"type": type, "id": uuid.uuid4().hex, "seq": seq, "conv_id": str(conv_id), "ts_ms": now_ms(), "data": data}


def local(*, type: str, conv_id: Any, data: Mapping[str, Any]) -> Frame:
    """A frame for one socket only (`seq` 0): written nowhere."""
    return make(type=type, conv_id=conv_id, seq=LOCAL_SEQ, data=data)


# --------------------------------------------------------------------------- data of each frame type


def chat_message(*, turn_id: Any, text: str, replaces: Any = None) -> dict[str, Any]:
    data = {"turn_id": str(turn_id), "text": text}
    if replaces is not None:
        data["replaces"] = str(replaces)
    return data


def chat_queued(*, turn_id: Any, position: int) -> dict[str, Any]:
    return {"turn_id": str(turn_id), "position": position}


def runtime_switched(
    *, previous: Mapping[str, Any], to: Mapping[str, Any], reason: Mapping[str, Any]
) -> dict[str, Any]:
    """`previous`: the conversation's runtime before (key, fingerprint, version); `reason`: `{"reason"}`
    and, for a base layer's new version, `layer` and `layers`; for a rollout's arm, `rollout`."""
    return {"from": dict(previous), "to": dict(to), **reason}


def turn_started(*, turn_id: Any, marker: Mapping[str, Any]) -> dict[str, Any]:
    return {"turn_id": str(turn_id), **marker}


def turn_end(
    *,
    turn_id: Any,
    status: str,
    text: str,
    duration_ms: int | None = None,
    error: Any = None,
    usage: Any = None,
    stop_reason: Any = None,
) -> tuple[str, dict[str, Any]]:
    """The terminal frame of a turn: its type and data. An interrupted turn is announced as
    `turn.failed` with `status: "interrupted"` (clients know that frame)."""
    data: dict[str, Any] = {"turn_id": str(turn_id)}
    if duration_ms is not None:
        data["duration_ms"] = duration_ms
    if status in ("failed", "interrupted"):
        data.update(error=error, text=text, status=status)
        return "turn.failed", data
    data.update(usage=usage, text=text, stop_reason=stop_reason)
    return f"turn.{status}", data


def llm_snapshot(*, conv_id: Any, seq: int, message: Mapping[str, Any]) -> Frame:
    """The text so far of the message streaming at `seq` (`{message_id, text}`), for a client that joins."""
    return make(type="llm.snapshot", conv_id=conv_id, seq=seq, data=message)


def error(*, conv_id: Any, code: str, message: str, **extra: Any) -> Frame:
    return local(type="error", conv_id=conv_id, data={"code": code, "message": message, **extra})


def hello(*, conv_id: Any, summary: Mapping[str, Any], last_seq: int) -> Frame:
    data = {"conv_id": str(conv_id), **summary, "server_time_ms": now_ms(), "last_seq": last_seq}
    return local(type="ws.hello", conv_id=conv_id, data=data)


def pong(*, conv_id: Any) -> Frame:
    return local(type="ws.pong", conv_id=conv_id, data={"server_time_ms": now_ms()})


def for_storage(frame: Frame, turn_text: str | None = None) -> Frame:
    """The stored copy of a frame: a terminal frame without its `text` (the turn's row has it; the replay
    puts it back), and so is a message's `llm.final` whose text is the turn's whole text (`turn_text`,
    given when it is stored with the turn's end): a turn's text is stored once in its row, and only the
    messages of a turn of several keep theirs."""
    data = frame["data"]
    if frame["type"] in TERMINAL and "text" in data:
        return {**frame, "data": {k: v for k, v in data.items() if k != "text"}}
    if frame["type"] == "llm.final" and turn_text is not None and data.get("text") == turn_text:
        return {**frame, "data": {**{k: v for k, v in data.items() if k != "text"}, _TEXT_OF_TURN: True}}
    return frame


_TEXT_OF_TURN = "text_of_turn"  # a stored `llm.final` whose text is its turn's (never sent)


def from_storage(frame: Frame, turn_text: str | None) -> Frame:
    """A stored frame as it was sent (see `for_storage`)."""
    data = frame["data"]
    if frame["type"] in TERMINAL and "text" not in data and turn_text is not None:
        return {**frame, "data": {**data, "text": turn_text}}
    if frame["type"] == "llm.final" and data.get(_TEXT_OF_TURN) and turn_text is not None:
        return {**frame, "data": {**{k: v for k, v in data.items() if k != _TEXT_OF_TURN}, "text": turn_text}}
    return frame


def is_end_of(frame: Frame, turn_id: Any) -> bool:
    return frame["type"] in TERMINAL and frame["data"].get("turn_id") == str(turn_id)


# --------------------------------------------------------------------------- replay and live


@dataclass
class LiveFilter:
    """What a client was given by a replay, so the same frames arriving live are dropped: a frame
    recorded for replays before it was sent comes either live or in the replay, and may come both ways.
    Deltas up to the seq a replay covers are in its text: the streaming message's `llm.snapshot`, or a
    finished message's `llm.final` (only the turn's worker sends deltas, and it answered the replay).
    Other frames are dropped only if the replay had them: one numbered elsewhere may still be on its way."""

    replayed: set[int] = field(default_factory=set)
    covered: int = 0  # deltas up to this seq are in the replay's text

    def replaying(self, frame: Frame) -> None:
        self.replayed.add(frame["seq"])

    def covers(self, seq: int) -> None:
        """A replay page covers everything the turn's worker sent up to `seq`."""
        self.covered = max(self.covered, seq)

    def is_new(self, frame: Frame) -> bool:
        if frame["seq"] in self.replayed:
            return False
        return not (frame["type"] == "llm.delta" and frame["seq"] <= self.covered)


GAP_REPAIR_SECONDS = 1.0


@dataclass
class GapWatch:
    """Which conversation frames a client was sent. Frames of one conversation come from several
    publishers (the worker running the turn, the workers taking submissions), so one may overtake
    another for a moment; a gap still open after GAP_REPAIR_SECONDS means frames the channel layer
    dropped (Redis was away), and the replay is asked for them. Numbers may skip (a restarted counter),
    so a repaired gap is closed whatever the replay had."""

    start: int | None = None  # frames up to this one are not watched (sent before, or another's business)
    upto: int = 0  # every seq after `start` up to this one was sent, or is given up on
    above: set[int] = field(default_factory=set)  # seqs sent beyond a hole

    def begin(self, seq: int) -> None:
        """Watch the frames after `seq` (a client that replays from `since_seq` has everything up to it)."""
        self.start = self.upto = seq

    def sent(self, frame: Frame) -> None:
        seq = frame["seq"]
        if self.start is None:
            self.begin(seq - 1)  # a new socket: its first frame starts the watch
        if frame["type"] == "llm.snapshot":  # the text up to it: no hole below it is left to fill
            self.above = {s for s in self.above if s > seq}
            self.upto = max(self.upto, seq)
        elif seq > self.upto:
            self.above.add(seq)
        while self.upto + 1 in self.above:
            self.upto += 1
            self.above.discard(self.upto)

    def has_hole(self) -> bool:
        return bool(self.above)

    def was_sent(self, frame: Frame) -> bool:
        """A frame the client has (its seq was sent, or given up on), whatever its type: a client never
        gets one seq twice. A repair's snapshot at a seq already sent is not needed: the message's
        `llm.final` brings its whole text."""
        if self.start is None:
            return False
        return self.start < frame["seq"] <= self.upto or frame["seq"] in self.above

    def close(self) -> None:
        """After a repair: what the replay did not have is not coming."""
        self.upto = max([self.upto, *self.above])
        self.above.clear()
