"""Where turns run: one dispatcher per process drains each conversation's queue on the server's event
loop, independent of any socket, and keeps the running turns' leases, checkpoints and control channel.

A running turn holds a lease its worker renews on a timer (with a checkpoint of its partial text and
the frames sent since the last one); every worker interrupts turns whose lease expired. A worker that
cannot renew in time while the database answers stops its own turn before anyone else may take it.

Outages are normal. While the database does not answer, running turns go on streaming and keep what
they have not stored in memory; leases are judged when it answers again (every worker waits a lease
period after an outage before it sweeps, so the owners renew first). An outage longer than
CHAT_OUTAGE_GRACE_SECONDS ends the running turns `failed` (`storage_unavailable`); their text is
written when the database is back. Frames the channel layer could not take (Redis away) reach clients
through the replay; terminal frames are sent again once it answers. A socket or REST client that
joins mid-turn asks the turn's worker, through the conversation's control group, for what is not stored
yet (`ask_replay`); cancel requests take the same way (`chat.control`).
"""

from __future__ import annotations

import asyncio
import contextvars
import itertools
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

from django.conf import settings

from profiles.errors import is_outage

from . import frames, selectors, services, streams
from .aio import run_db
from .control import ControlChannel
from .frames import Frame
from .live import RENEW_WHEN_LEFT, LiveTurn
from .models import Turn
from .writer import writer

log = logging.getLogger(__name__)
DRAIN_RETRY_SECONDS = 0.5  # a queue whose turn met a database error (a deadlock, an outage) tries again
RECOVER_SECONDS = 10.0
TICK_SECONDS = 1.0  # the timer's beat: outages noticed, expired leases swept, terminal frames sent again
Execute = Callable[[Turn, Any], Awaitable[bool]]  # (turn, what its submitter prepared for it or None)


class Dispatcher(ControlChannel):
    """One per process. Drains each conversation's queue (one turn at a time) with `execute`, renews
    leases and checkpoints on a timer, sweeps expired leases, and answers cancel and replay requests.

    `execute(turn)` runs one queued turn to its end: True when turns may wait behind it (the drain looks
    again at once), False when none does or it could not be claimed."""

    def __init__(self, execute: Execute) -> None:
        self.execute = execute
        self.loop: asyncio.AbstractEventLoop | None = None
        self._drains: dict[str, asyncio.Task] = {}
        self._again: set[str] = set()
        # A turn handed to a conversation's drain while it was busy (its submission claimed it, or loaded it).
        self._first: dict[str, tuple[Turn, Any]] = {}
        self._claimed: set[str] = set()  # turns claimed by their submission here, not run to their end yet
        # One control channel per process, listened to for as long as the process lives: a
        # channel-layer receive must never be cancelled (channels-redis can drop a message then).
        self._control: tuple[Any, Any, str, asyncio.Task] | None = None
        self._ticker: asyncio.Task | None = None
        self.live: dict[str, LiveTurn] = {}  # turn_id -> running here
        self._replies: dict[str, asyncio.Future] = {}
        self.storage_down_since: float | None = None  # monotonic: when the database stopped answering
        self.storage_back_at = float("-inf")  # monotonic: when it answered again
        self._unsent: list[Frame] = []  # terminal frames the channel layer did not take: sent again

    def bind(self, loop: asyncio.AbstractEventLoop) -> None:
        """Remember the server loop; start the timer that renews leases and sweeps expired ones."""
        if self.loop is not loop:
            self.loop = loop
            writer.bind(loop)
            self._drains.clear()
            self.live.clear()
            self._ticker = loop.create_task(self._tick_forever(), context=contextvars.Context())

    def coalesce_interval(self) -> float:
        """The delta interval widens once all streams together would exceed CHAT_FRAME_BUDGET frames/s."""
        return max(settings.CHAT_DELTA_COALESCE_SECONDS, len(self.live) / settings.CHAT_FRAME_BUDGET)

    async def kick(
        self, conv_id: Any, *, first: Turn | None = None, prepared: Any = None, claimed: bool = False
    ) -> asyncio.Task | None:
        """Make sure queued turns of this conversation run. Without a server loop (management
        commands, the test client) the turns run to completion before this returns.

        `first`: the conversation's oldest queued turn, just loaded with its conversation and owner
        (a submission that found nothing ahead of it), or a turn its submission claimed already: the
        drain starts with it without reading it again (after the turn it runs now, if any), and hands
        `prepared` (what its submitter already worked out for it) to `execute` with it. `claimed`: `first`
        was claimed by its submission: until it has run here, `runs_here` says so."""
        loop = asyncio.get_running_loop()
        key = str(conv_id)
        if self.loop is not loop:
            await self._drain(key, first, prepared)
            return None
        if claimed and first is not None:
            self._claimed.add(str(first.pk))
        task = self._drains.get(key)
        if task is not None and not task.done():
            if first is not None:  # claimed or loaded already: the drain takes it from here
                self._first[key] = (first, prepared)
            self._again.add(key)
            return task
        # A fresh context: the drain must not inherit the request's thread-sensitive executor.
        task = loop.create_task(self._drain(key, first, prepared), context=contextvars.Context())
        self._drains[key] = task
        return task

    async def _drain(self, key: str, first: Turn | None = None, prepared: Any = None) -> None:
        try:
            while True:
                self._again.discard(key)
                if first is None and key in self._first:
                    first, prepared = self._first.pop(key)
                # Loaded afresh: the conversation's selection and current runtime may have changed.
                try:
                    turn, first = first or await run_db(selectors.turn_next_queued, conv_id=key), None
                    try:
                        more = turn is not None and await self.execute(turn, prepared)
                    finally:
                        if turn is not None:
                            self._claimed.discard(str(turn.pk))
                    prepared = None
                except Exception as exc:
                    if not is_outage(exc):
                        raise
                    # A deadlock, a lost connection, the database away: the queue goes on shortly.
                    log.warning("the queue of conversation %s waits for the database: %s", key, exc)
                    await asyncio.sleep(DRAIN_RETRY_SECONDS)
                    continue
                if not more:
                    if key in self._again:
                        continue
                    return
        except Exception:
            log.exception("the queue of conversation %s stopped", key)
        finally:
            if self._drains.get(key) is asyncio.current_task():
                del self._drains[key]
                handed = self._first.pop(key, None)
                if handed is not None:  # its lease expires: the sweep interrupts it
                    self._claimed.discard(str(handed[0].pk))
                    log.warning("a turn handed to the stopped queue of conversation %s is left to its lease", key)

    # ------------------------------------------------------------------ outages

    def storage_down(self) -> bool:
        return self.storage_down_since is not None

    def storage_failed(self) -> None:
        """A database call could not reach the database."""
        if self.storage_down_since is None:
            self.storage_down_since = time.monotonic()
            log.warning("the database is not answering: running turns go on and are stored when it answers")

    def storage_answered(self) -> None:
        if self.storage_down_since is not None:
            log.warning("the database answers again after %.1f s", time.monotonic() - self.storage_down_since)
            self.storage_down_since = None
            self.storage_back_at = time.monotonic()

    def sweep_paused(self) -> bool:
        """No sweeping while the database is away, nor for a lease period after: owners renew first."""
        return self.storage_down() or time.monotonic() < self.storage_back_at + settings.CHAT_TURN_LEASE_SECONDS

    def _stop_turns_past_grace(self) -> None:
        """An outage longer than the grace, or more unstored frames than memory may hold: the turns end
        `failed` (`storage_unavailable`) and are written when the database answers."""
        if self.storage_down_since is None:
            return
        past_grace = time.monotonic() - self.storage_down_since > settings.CHAT_OUTAGE_GRACE_SECONDS
        for live in self.live.values():
            too_much = len(live.pending) > settings.CHAT_OUTAGE_MAX_PENDING_FRAMES
            if (past_grace or too_much) and not live.storage_lost and live.task is not None and not live.task.done():
                live.storage_lost = True
                live.task.cancel()

    def resend(self, frame: Frame) -> None:
        """A terminal frame the channel layer did not take: sent again at the next tick."""
        self._unsent.append(frame)

    async def _resend_unsent(self) -> None:
        unsent, self._unsent = self._unsent, []
        for frame in unsent:
            if not await streams.fan_out(frame):
                self._unsent.append(frame)

    # ------------------------------------------------------------------ the timer

    @staticmethod
    def checkpoint_interval() -> float:
        return min(settings.CHAT_CHECKPOINT_SECONDS, settings.CHAT_TURN_LEASE_SECONDS / 3)

    async def _tick_forever(self) -> None:
        interval = self.checkpoint_interval()
        beat = min(TICK_SECONDS, interval)
        checkpoint_every = max(1, round(interval / beat))
        recover_every = max(1, round(RECOVER_SECONDS / beat))
        for tick in itertools.count():
            # Every beat: checkpoint and renew when one is due (and while the database is away, to ask it
            # whether it is back); between checkpoints, while turns run here, ask the database whether it
            # answers, so that an outage is noticed (and its grace counted) within a beat. Then sweep.
            # At start-up and every RECOVER_SECONDS: also restart queues that wait for nothing (a drain
            # that stopped on an error leaves one behind).
            self._stop_turns_past_grace()
            if tick % checkpoint_every == 0 or self.storage_down():
                await self._step(self.renew)
            elif self.live:
                await self._step(self.probe)
            self._stop_turns_past_grace()
            await self._step(self._resend_unsent)
            if not self.sweep_paused():
                await self._step(self.sweep)
            if tick % recover_every == 0:
                await self._step(self.restart_queues)
            await asyncio.sleep(beat)

    async def probe(self) -> None:
        await run_db(selectors.database_answers)
        self.storage_answered()

    async def _step(self, step: Callable[[], Awaitable[None]]) -> None:
        try:
            await step()
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # a database hiccup must not end lease renewal or sweeping
            if is_outage(exc):
                self.storage_failed()
            else:
                log.warning("%s failed; retrying at the next tick", step.__name__, exc_info=True)

    async def renew(self) -> None:
        """Checkpoint and renew; with nothing to checkpoint during an outage, ask whether it is over."""
        if not await self.checkpoint() and self.storage_down():
            await run_db(selectors.database_answers)
        self.storage_answered()

    async def checkpoint(self) -> bool:
        """Store what the running turns sent since the last checkpoint and renew their leases. False:
        nothing to store (the database was not asked)."""
        # A turn that is finishing stores its own frames; the others are locked until this commit.
        live = [t for t in self.live.values() if not t.store_lock.locked()]
        if not live:
            return False
        for turn in live:
            await turn.store_lock.acquire()  # free: returns at once
        try:
            stored = [len(t.pending) for t in live]
            texts = [t.text_checkpoint() for t in live]
            started = time.monotonic()
            # A checkpoint that stores a turn's text renews its lease with it (no write of its own); a
            # turn with nothing new (a tool call, a slow provider) is renewed only when it is due: under
            # load, a tick renews the few such turns that are due, not every running turn.
            due = max(RENEW_WHEN_LEFT * settings.CHAT_TURN_LEASE_SECONDS, 2 * self.checkpoint_interval())
            renew = [t.lease_deadline - started < due for t in live]
            checkpoints = [
                services.Checkpoint(t.turn_id, t.conv_id, text, t.pending[:n], start=start, rewrite=rewrite, renew=r)
                for t, (text, start, rewrite), n, r in zip(live, texts, stored, renew, strict=True)
            ]
            try:
                held = await run_db(services.turns_checkpoint, checkpoints=checkpoints)
            except BaseException:
                for turn, (text, _start, rewrite) in zip(live, texts, strict=True):
                    turn.unstored(text, rewrite)  # not stored: the next checkpoint tries again
                raise
            for turn, checkpoint, n in zip(live, checkpoints, stored, strict=True):
                if turn.turn_id in held:
                    del turn.pending[:n]
                    turn.stored_chars = (0 if checkpoint.rewrite else checkpoint.start) + len(checkpoint.text or "")
                    if checkpoint.renews:
                        turn.renewed(started)
                elif turn.task is not None and not turn.task.done():
                    turn.lease_lost = True  # interrupted elsewhere: stop without writing anything more
                    turn.task.cancel()
        finally:
            for turn in live:
                turn.store_lock.release()
        return True

    async def sweep(self) -> None:
        for conv_id, turn_id, text in await run_db(services.turns_interrupt_expired):
            log.warning("turn %s lost its worker (lease expired): interrupted", turn_id)
            type, data = frames.turn_end(
                turn_id=turn_id, status="interrupted", text=text, error=services.LEASE_EXPIRED_ERROR
            )
            await streams.publish(conv_id, type, data, turn_id)
            await self.kick(conv_id)

    async def restart_queues(self) -> None:
        """Start queued turns that wait for nothing (after a restart, an outage, or a failed drain)."""
        for conv_id in await run_db(selectors.conversations_with_queued_turns):
            await self.kick(conv_id)

    async def recover(self) -> None:
        """Sweep, then start queued turns that wait for nothing."""
        await self.sweep()
        await self.restart_queues()

    def runs_here(self, turn_id: Any) -> bool:
        """The turn was claimed by its submission in this process and has not run to its end: its terminal
        frame is still to be sent (from this loop)."""
        return asyncio.get_running_loop() is self.loop and str(turn_id) in self._claimed
