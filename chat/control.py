"""A worker's control channel: what other workers (and this one's other loops) ask of the turns running
here. A socket or REST client that joins mid-turn asks the turn's worker, through the conversation's
control group, for what is not stored yet (`ask_replay`); cancel requests take the same way. Part of
the dispatcher (`chat.dispatcher.Dispatcher` is a `ControlChannel`), in a room of its own.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import logging
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

from channels.layers import get_channel_layer
from django.conf import settings

from profiles.errors import is_outage

from . import frames, selectors
from .aio import run_db
from .live import LiveTurn

log = logging.getLogger(__name__)
REPLAY_TIMEOUT_SECONDS = 2.0
REPLAY_RESEND_SECONDS = 0.4


class ControlChannel:
    """The running turns of this process (`live`), and the channel they answer cancel and replay requests
    on. The dispatcher sets the state in its `__init__` and `bind`."""

    loop: asyncio.AbstractEventLoop | None
    live: dict[str, LiveTurn]
    _claimed: set[str]
    # One control channel per process, listened to for as long as the process lives: a channel-layer
    # receive must never be cancelled (channels-redis can drop a message then).
    _control: tuple[Any, Any, str, asyncio.Task] | None
    _replies: dict[str, asyncio.Future]

    def storage_down(self) -> bool:
        raise NotImplementedError

    async def control_channel(self) -> str:
        loop, layer = asyncio.get_running_loop(), get_channel_layer()
        if self._control and self._control[0] is loop and self._control[1] is layer and not self._control[3].done():
            return self._control[2]
        channel = await layer.new_channel()
        task = loop.create_task(self._listen(layer, channel), context=contextvars.Context())
        self._control = (loop, layer, channel, task)
        return channel

    async def _listen(self, layer: Any, channel: str) -> None:
        while True:
            try:
                message = await layer.receive(channel)
            except asyncio.CancelledError:
                raise
            except Exception:  # a broken connection must not end cancellation for this process
                log.warning("control channel receive failed; retrying", exc_info=True)
                await asyncio.sleep(1)
                continue
            try:
                await self._control_message(layer, message)
            except Exception:
                log.warning("control message %r failed", message.get("type"), exc_info=True)

    async def _control_message(self, layer: Any, message: dict[str, Any]) -> None:
        kind = message.get("type")
        if kind == "turn.replay.reply":
            future = self._replies.get(message.get("request_id", ""))
            if future is not None and not future.done():
                future.set_result(message)
            return
        live = self.live.get(message.get("turn_id", "")) if message.get("turn_id") else None
        if kind == "turn.cancel" and live is not None and live.task is not None and not live.task.done():
            live.cancelled = True
            live.task.cancel()
        elif kind == "turn.replay":
            live = self._running(message.get("conv_id"))
            if live is not None:
                reply = {"type": "turn.replay.reply", "request_id": message["request_id"], **live.replay()}
                await layer.send(message["reply_to"], reply)

    @contextlib.asynccontextmanager
    async def running(self, live: LiveTurn) -> AsyncIterator[None]:
        """While the turn runs, this process answers cancel and replay requests sent to the conversation.
        Registered before anything is awaited: a replay asked here meanwhile is answered at once."""
        live.storage_down = self.storage_down
        self.live[live.turn_id] = live
        layer = get_channel_layer()
        group = frames.control_group_name(live.conv_id)
        try:
            try:
                await layer.group_add(group, await self.control_channel())
            except Exception as exc:  # Redis away: the turn runs; cancel and replay requests cannot reach it
                if not is_outage(exc):
                    raise
                log.warning("turn %s runs without its control channel (the channel layer is away)", live.turn_id)
            yield
        finally:
            self.live.pop(live.turn_id, None)
            with contextlib.suppress(Exception):
                await layer.group_discard(group, await self.control_channel())

    def _running(self, conv_id: Any) -> LiveTurn | None:
        """The conversation's turn if it runs in this process."""
        return next((t for t in self.live.values() if t.conv_id == str(conv_id)), None)

    def local_replay(self, conv_id: Any) -> dict[str, Any] | None:
        """What the conversation's turn has not stored when it runs in this process and this is the server's
        loop (its state is that loop's), else None: nothing to ask, and no need to look whether one runs."""
        if asyncio.get_running_loop() is not self.loop:
            return None
        local = self._running(conv_id)
        return local.replay() if local is not None else None

    async def ask_replay(self, conv_id: Any) -> dict[str, Any] | None:
        """What the worker running this conversation's turn has not stored: None if nobody answers.

        A turn running in this process answers at once when asked from the server's loop (the turn's state
        is that loop's; a sync view's call runs on a loop of its own). Otherwise the request goes to the
        conversation's control group. Pub/sub delivers at most once, and a worker that just got Redis back
        may not have subscribed to it again yet: the request is sent again every REPLAY_RESEND_SECONDS
        until an answer comes (answers are matched by request id), or until the turn is found to have
        ended meanwhile (nobody would answer)."""
        if asyncio.get_running_loop() is self.loop:
            local = self.local_replay(conv_id)
            if local is not None:
                return local
            if not settings.REDIS_URL:  # one process (the in-memory layer): nobody else runs it
                return None  # it is claimed and not started here yet, or finishing: its frames are stored
        request_id = uuid.uuid4().hex
        future = asyncio.get_running_loop().create_future()
        self._replies[request_id] = future
        deadline = time.monotonic() + REPLAY_TIMEOUT_SECONDS
        request = {"type": "turn.replay", "conv_id": str(conv_id), "request_id": request_id}
        try:
            while (remaining := deadline - time.monotonic()) > 0:
                with contextlib.suppress(Exception):  # the layer is away: try again until the deadline
                    reply_to = await self.control_channel()
                    await get_channel_layer().group_send(
                        frames.control_group_name(conv_id), {**request, "reply_to": reply_to}
                    )
                done, _ = await asyncio.wait({future}, timeout=min(REPLAY_RESEND_SECONDS, remaining))
                if done:
                    return future.result()
                if not await run_db(selectors.conversation_active_turn, conv_id=conv_id):
                    return None  # it ended meanwhile: what it sent is stored
            return None
        finally:
            self._replies.pop(request_id, None)

    async def request_cancel(self, conv_id: Any) -> bool:
        """Ask whichever worker runs this conversation's turn to cancel it. False: none runs."""
        turn_id = await run_db(selectors.conversation_running_turn_id, conv_id=conv_id)
        if turn_id is None:
            return False
        await get_channel_layer().group_send(
            frames.control_group_name(conv_id), {"type": "turn.cancel", "turn_id": str(turn_id)}
        )
        return True
