"""A running turn as its worker holds it: what it has sent and not stored yet (for replays and the next
checkpoint), the text of the message streaming now, and its own lease deadline."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from django.conf import settings

from . import frames
from .frames import Frame

# A turn's own deadline is 80% of its lease; it is renewed when less than this fraction of the lease is
# left before that deadline (a third of the lease has passed since the last renewal), or when the next
# two ticks might not come before it.
RENEW_WHEN_LEFT = 0.8 - 1 / 3


class LeaseLost(Exception):
    """This worker could not renew the turn's lease in time: another worker may interrupt it."""


def _never() -> bool:
    return False


@dataclass
class LiveTurn:
    """What a running turn has sent and not stored yet, and the text of the message streaming now."""

    turn_id: str
    conv_id: str
    task: asyncio.Task | None = None
    pending: list[Frame] = field(default_factory=list)  # sent, not stored yet (no deltas)
    published_seq: int = 0
    message_id: str | None = None
    parts: list[str] = field(default_factory=list)  # the streaming message's deltas
    done_texts: list[str] = field(default_factory=list)  # finished messages of the turn
    # The text since the last checkpoint, appended as it streams; `rewritten`: the text changed before
    # it (a message's final text differs from its deltas), so the next checkpoint stores it whole.
    fresh: list[str] = field(default_factory=list)
    rewritten: bool = False
    stored_chars: int = 0  # characters of the text the checkpoints stored
    lease_deadline: float = 0.0  # monotonic: stop before the stored lease can expire
    cancelled: bool = False
    lease_lost: bool = False
    storage_lost: bool = False  # stopped by an outage longer than the grace (or too much held in memory)
    # True while the database does not answer: the lease is judged when it answers again.
    storage_down: Callable[[], bool] = _never
    # Held while its frames are being stored (a checkpoint or the finish): a frame is stored once.
    store_lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    rollout_id: int | None = None  # the rollout whose arm it runs on: its guard is checked at the end
    api_key_id: int | None = None  # the API key it was asked with: its tokens count against the key's tpm
    rate: Any = None  # the price of its engine's model when it started (`chat.billing.prices.Rate`)

    def sent(self, frame: Frame) -> None:
        """Called as a frame goes out: keeps what a replay needs (no await: always consistent)."""
        type, data = frame["type"], frame["data"]
        if type in frames.NOT_STORED:
            self.parts.append(data["delta"])
            self.fresh.append(data["delta"])
        else:
            self.pending.append(frame)
            if type == "llm.start":
                self.rewritten |= bool(self.parts)  # a message left unfinished: its text goes
                self.message_id, self.parts = data["message_id"], []
            elif type == "llm.final":
                text = data.get("text", "")
                if text != "".join(self.parts):
                    self.rewritten = True
                self.done_texts.append(text)
                self.message_id, self.parts = None, []
        self.published_seq = frame["seq"]

    def text_checkpoint(self) -> tuple[str | None, int, bool]:
        """What the next checkpoint stores of the text: (text, start, rewrite) and forgets it as new."""
        if self.rewritten:
            text = self.partial_text()
            self.rewritten, self.fresh = False, []
            return text, 0, True
        if not self.fresh:
            return None, self.stored_chars, False
        text, self.fresh = "".join(self.fresh), []
        return text, self.stored_chars, False

    def unstored(self, text: str | None, rewrite: bool) -> None:
        """A checkpoint failed: what it took is new again (before what came since)."""
        if rewrite:
            self.rewritten = True
        elif text:
            self.fresh.insert(0, text)

    def partial_text(self) -> str:
        return "".join([*self.done_texts, *self.parts])

    def replay(self) -> dict[str, Any]:
        message = None
        if self.message_id is not None:
            message = {"message_id": self.message_id, "text": "".join(self.parts)}
        # Nothing published yet: every stored frame may be replayed (the claim's come live again, dropped by seq).
        return {"seq": self.published_seq or None, "frames": list(self.pending), "message": message}

    def check_lease(self) -> None:
        if time.monotonic() > self.lease_deadline and not self.storage_down():
            raise LeaseLost(self.turn_id)

    def renewed(self, at: float) -> None:
        # A margin of a fifth: clocks of two hosts and a slow commit must not let two workers overlap.
        self.lease_deadline = at + settings.CHAT_TURN_LEASE_SECONDS * 0.8
