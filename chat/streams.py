"""Numbering, sending and following a conversation's frames on the channel layer.

A frame's `seq` comes from the sequencer (no database write: see `chat.sequencer`); it is sent to the
conversation's group, so every socket and follower on every worker gets it. `Subscription` is the
receiving side for a request that follows a turn (the gateway, REST `?wait=1`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

from channels.layers import get_channel_layer

from profiles.errors import is_outage

from . import frames, services
from .aio import run_db
from .frames import Frame
from .sequencer import get_sequencer

log = logging.getLogger(__name__)


async def number(conv_id: Any, type: str, data: dict[str, Any], *, running_here: bool = False) -> Frame:
    """A conversation frame with the next seq. `running_here`: a frame of the turn this process runs,
    which may be numbered on while Redis is away (see `chat.sequencer`)."""
    seq = await get_sequencer().next(conv_id, running_here=running_here)
    return frames.make(type=type, conv_id=conv_id, seq=seq, data=data)


_layer_down = False


async def fan_out(frame: Frame) -> bool:
    """Send a frame to the conversation's group, and a terminal frame to its waiters' group too. False:
    the channel layer is away (Redis); the frame reaches clients through the replay, which never
    depended on the layer."""
    global _layer_down
    message = {"type": "chat.frame", "frame": frame}
    try:
        layer = get_channel_layer()
        await layer.group_send(frames.group_name(frame["conv_id"]), message)
        if frame["type"] in frames.TERMINAL:
            await layer.group_send(frames.ends_group_name(frame["conv_id"]), message)
    except Exception as exc:
        if not is_outage(exc):
            raise
        if not _layer_down:
            log.warning("the channel layer is not answering: frames reach clients through the replay")
            _layer_down = True
        return False
    if _layer_down:
        log.warning("the channel layer answers again")
        _layer_down = False
    return True


async def publish(conv_id: Any, type: str, data: dict[str, Any], turn_id: Any = None) -> Frame:
    """Number, store, then send one frame (frames outside a running turn: they are few)."""
    frame = await number(conv_id, type, data)
    await run_db(services.events_store, conv_id=conv_id, frames=[frame], turn_id=turn_id)
    await fan_out(frame)
    return frame


class Subscription:
    """The conversation's frames as they are sent, on a channel of this request's own in the
    conversation's group (`ends_only`: its terminal frames only, from its ends group). A receive is never cancelled while the subscription
    is used (channels-redis unsubscribes a channel whose receive is cancelled): `next()` waits for it
    with a timeout instead."""

    def __init__(self, conv_id: Any, *, ends_only: bool = False) -> None:
        self.group = frames.ends_group_name(conv_id) if ends_only else frames.group_name(conv_id)
        self.layer: Any = None
        self.channel = ""
        self.pending: asyncio.Future | None = None

    async def __aenter__(self) -> Subscription:
        self.layer = get_channel_layer()
        self.channel = await self.layer.new_channel()
        await self.layer.group_add(self.group, self.channel)
        return self

    async def __aexit__(self, *exc_info: Any) -> None:
        # Leaving (also when the client went away and the request is cancelled): the receive may go now,
        # with the channel, and the channel leaves the group.
        pending, self.pending = self.pending, None
        if pending is not None:
            pending.cancel()
        try:
            with contextlib.suppress(Exception):
                await self.layer.group_discard(self.group, self.channel)
        finally:
            if pending is not None:
                await asyncio.gather(pending, return_exceptions=True)

    async def next(self, timeout: float) -> Frame | None:
        """The next frame, or None when none came within `timeout` seconds."""
        if self.pending is None:
            self.pending = asyncio.ensure_future(self.layer.receive(self.channel))
        done, _ = await asyncio.wait({self.pending}, timeout=max(0.0, timeout))
        if not done:
            return None
        pending, self.pending = self.pending, None
        try:
            message = pending.result()
        except Exception:  # a broken layer connection: the caller looks at the stored turn
            log.warning("channel layer receive failed for %s", self.group, exc_info=True)
            await asyncio.sleep(timeout)
            return None
        return message.get("frame") if isinstance(message, dict) else None
