"""Following a submitted completion's turn on the channel layer: its conversation's frames (its group,
with a channel of the request's own), not a poll per token. `Completion.result()` waits for the turn's
terminal frame; `Completion.events()` first replays what was sent before it subscribed (the websocket's
`since_seq` replay) and then turns live `llm.delta` frames into text. Both are bounded (twice
CHAT_ENGINE_TIMEOUT_SECONDS, like `?wait=1`), look at the stored turn after a second without any frame
(a frame a layer lost cannot hang a request) and leave the group when they end."""

from __future__ import annotations

import contextlib
import time
from collections.abc import AsyncGenerator
from dataclasses import dataclass, field
from typing import Any

from profiles.mounts import Mount

from .. import frames, replay
from ..aio import run_db
from ..models import Turn
from ..turns import SILENCE_CHECK_SECONDS, await_turn
from . import selectors
from .errors import TurnOutcomeError
from .inputs import CONVERSATION_HEADER, TURN_HEADER


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
