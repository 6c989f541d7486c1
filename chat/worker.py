"""Runs queued turns on the server's event loop, independent of any socket.

A turn keeps running when its socket goes away. Its frames are numbered by the sequencer and sent to
the conversation's group at once, so every socket on every worker sees them; they are stored in a few
transactions per turn (start, a checkpoint about once a second, finish), and `llm.delta` frames are
never stored (each message's `llm.final` has its text). A socket or REST client that joins mid-turn
asks the turn's worker, through the conversation's control group, for what is not stored yet: the
frames since the last checkpoint and the text of the message streaming now (`llm.snapshot`).

A running turn holds a lease its worker renews on a timer; every worker interrupts turns whose lease
expired. A worker that cannot renew in time stops its own turn before anyone else may take it.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import dataclasses
import itertools
import logging
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

from channels.layers import get_channel_layer
from django.conf import settings

from profiles.definitions import definitions
from profiles.errors import ProfileError
from profiles.mounts import get_mount
from profiles.resolution import Resolution, lineage_changes
from profiles.validation import LATEST

from . import selectors, services
from .aio import run_db, run_tool
from .models import Turn
from .runtime.base import EngineError, Message, ToolContext, TurnContext
from .runtime.composer import Runtime, RuntimeCache, compose
from .runtime.engines import build_engine
from .runtime.runner import TurnOutcome, run_turn
from .sequencer import get_sequencer

log = logging.getLogger(__name__)
runtime_cache = RuntimeCache()
REPLAY_PAGE = 500
REPLAY_TIMEOUT_SECONDS = 2.0
RECOVER_SECONDS = 10.0
NOT_STORED = frozenset({"llm.delta"})


def group_name(conv_id: Any) -> str:
    return f"conv.{conv_id}"


def control_group_name(conv_id: Any) -> str:
    return f"conv-control.{conv_id}"


def make_engine(engine_settings: dict[str, dict[str, Any]]):
    return build_engine(
        engine_settings,
        api_key=settings.OPENAI_API_KEY,
        base_url=settings.OPENAI_BASE_URL,
        anthropic_api_key=settings.ANTHROPIC_API_KEY,
        anthropic_base_url=settings.ANTHROPIC_BASE_URL,
        timeout=settings.CHAT_ENGINE_TIMEOUT_SECONDS,
        offline_delay=settings.CHAT_OFFLINE_DELAY_SECONDS,
    )


def runtime_for(mount_name: str, resolution: Resolution) -> Runtime:
    """The composer through the cache: the same fingerprint never builds twice. How the version was
    reached (the ref, the label) is not part of the runtime, so it comes from this resolution."""
    mount = get_mount(mount_name)
    runtime = runtime_cache.get_or_build(
        mount.name,
        resolution,
        lambda: compose(
            resolution,
            mount_tools=mount.tool_names(),
            defs=definitions,
            make_engine=make_engine,
            default_history_turns=settings.CHAT_DEFAULT_CONTEXT_TURNS,
        ),
    )
    if (runtime.ref, runtime.label) != (resolution.ref, resolution.label):
        runtime = dataclasses.replace(runtime, ref=resolution.ref, label=resolution.label)
    return runtime


def runtime_summary(runtime: Runtime) -> dict[str, Any]:
    return {
        "runtime_key": runtime.runtime_key,
        "profile": {
            "registry": runtime.registry,
            "slug": runtime.profile,
            "version": runtime.profile_version,
            "ref": runtime.ref or runtime.profile,
            "label": runtime.label,
        },
        "fingerprint": runtime.fingerprint,
        "engine": {"provider": runtime.engine_info["provider"], "model": runtime.engine_info["model"]},
        "tools": runtime.tool_names,
        "middlewares": runtime.middleware_summary(),
    }


def runtime_config(runtime: Runtime) -> dict[str, Any]:
    """What the turn record keeps of a runtime besides its marker: the system prompt, the engine settings
    (never a secret: they are not in a resolution) and each middleware with its config."""
    return {
        "system_prompt": runtime.system_prompt,
        "engine_settings": runtime.engine_info.get("settings", {}),
        "middlewares": [{"name": m.name, "id": m.id, "config": m.config} for m in runtime.middlewares],
    }


async def new_frame(conv_id: Any, type: str, data: dict[str, Any]) -> dict[str, Any]:
    """A conversation frame with the next seq (no database write: see chat.sequencer)."""
    return services.make_frame(type=type, conv_id=conv_id, seq=await get_sequencer().next(conv_id), data=data)


async def fan_out(frame: dict[str, Any]) -> None:
    await get_channel_layer().group_send(group_name(frame["conv_id"]), {"type": "chat.frame", "frame": frame})


async def publish(conv_id: Any, type: str, data: dict[str, Any], turn_id: Any = None) -> dict[str, Any]:
    """Number, store, then send one frame (frames outside a running turn: they are few)."""
    frame = await new_frame(conv_id, type, data)
    await run_db(services.events_store, conv_id=conv_id, frames=[frame], turn_id=turn_id)
    await fan_out(frame)
    return frame


async def turn_enqueue(
    *,
    conversation: Any,
    user: Any,
    prompt: Any,
    request_overrides: Any = None,
    idempotency_key: Any = None,
    replaces: Any = None,
) -> services.Submitted:
    """Queue a turn, announce it (`chat.message`, and `chat.queued` when it waits) and make sure it
    runs. The one path for the websocket and the REST API. `replaces`: the id of the conversation's last
    turn, regenerated (prompt None: the same prompt) or edited."""
    submitted = await run_db(
        services.turn_submit,
        conversation=conversation,
        user=user,
        prompt=prompt,
        request_overrides=request_overrides,
        idempotency_key=idempotency_key,
        message_seq=await get_sequencer().next(conversation.pk),
        replaces=replaces,
    )
    if submitted.created:
        await fan_out(submitted.frame)
        if submitted.position:
            turn_id = str(submitted.turn.pk)
            await publish(conversation.pk, "chat.queued", {"turn_id": turn_id, "position": submitted.position}, turn_id)
        await dispatcher.kick(conversation.pk)
    return submitted


# --------------------------------------------------------------------------- a running turn


class LeaseLost(Exception):
    """This worker could not renew the turn's lease in time: another worker may interrupt it."""


@dataclass
class LiveTurn:
    """What a running turn has sent and not stored yet, and the text of the message streaming now."""

    turn_id: str
    conv_id: str
    task: asyncio.Task | None = None
    pending: list[dict[str, Any]] = field(default_factory=list)  # sent, not stored yet (no deltas)
    published_seq: int = 0
    message_id: str | None = None
    parts: list[str] = field(default_factory=list)  # the streaming message's deltas
    done_texts: list[str] = field(default_factory=list)  # finished messages of the turn
    checkpointed_chars: int = -1
    lease_deadline: float = 0.0  # monotonic: stop before the stored lease can expire
    cancelled: bool = False
    lease_lost: bool = False
    # Held while its frames are being stored (a checkpoint or the finish): a frame is stored once.
    store_lock: asyncio.Lock = field(default_factory=asyncio.Lock)

    def sent(self, frame: dict[str, Any]) -> None:
        """Called as a frame goes out: keeps what a replay needs (no await: always consistent)."""
        type, data = frame["type"], frame["data"]
        if type == "llm.delta":
            self.parts.append(data["delta"])
        else:
            self.pending.append(frame)
            if type == "llm.start":
                self.message_id, self.parts = data["message_id"], []
            elif type == "llm.final":
                self.done_texts.append(data.get("text", ""))
                self.message_id, self.parts = None, []
        self.published_seq = frame["seq"]

    def partial_text(self) -> str:
        return "".join([*self.done_texts, *self.parts])

    def replay(self) -> dict[str, Any]:
        message = None
        if self.message_id is not None:
            message = {"message_id": self.message_id, "text": "".join(self.parts)}
        return {"seq": self.published_seq, "frames": list(self.pending), "message": message}

    def check_lease(self) -> None:
        if time.monotonic() > self.lease_deadline:
            raise LeaseLost(self.turn_id)

    def renewed(self, at: float) -> None:
        # A margin of a fifth: clocks of two hosts and a slow commit must not let two workers overlap.
        self.lease_deadline = at + settings.CHAT_TURN_LEASE_SECONDS * 0.8


class Dispatcher:
    """One per process. Drains each conversation's queue (one turn at a time), renews leases and
    checkpoints on a timer, sweeps expired leases, and answers cancel and replay requests."""

    def __init__(self) -> None:
        self.loop: asyncio.AbstractEventLoop | None = None
        self._drains: dict[str, asyncio.Task] = {}
        self._again: set[str] = set()
        # One control channel per process, listened to for as long as the process lives: a
        # channel-layer receive must never be cancelled (channels-redis can drop a message then).
        self._control: tuple[Any, Any, str, asyncio.Task] | None = None
        self._ticker: asyncio.Task | None = None
        self.live: dict[str, LiveTurn] = {}  # turn_id -> running here
        self._replies: dict[str, asyncio.Future] = {}

    def bind(self, loop: asyncio.AbstractEventLoop) -> None:
        """Remember the server loop; start the timer that renews leases and sweeps expired ones."""
        if self.loop is not loop:
            self.loop = loop
            self._drains.clear()
            self.live.clear()
            self._ticker = loop.create_task(self._tick_forever(), context=contextvars.Context())

    def coalesce_interval(self) -> float:
        """The delta interval widens once all streams together would exceed CHAT_FRAME_BUDGET frames/s."""
        return max(settings.CHAT_DELTA_COALESCE_SECONDS, len(self.live) / settings.CHAT_FRAME_BUDGET)

    async def kick(self, conv_id: Any) -> asyncio.Task | None:
        """Make sure queued turns of this conversation run. Without a server loop (management
        commands, the test client) the turns run to completion before this returns."""
        loop = asyncio.get_running_loop()
        key = str(conv_id)
        if self.loop is not loop:
            await self._drain(key)
            return None
        task = self._drains.get(key)
        if task is not None and not task.done():
            self._again.add(key)
            return task
        # A fresh context: the drain must not inherit the request's thread-sensitive executor.
        task = loop.create_task(self._drain(key), context=contextvars.Context())
        self._drains[key] = task
        return task

    async def _drain(self, key: str) -> None:
        try:
            while True:
                self._again.discard(key)
                # Loaded afresh: the conversation's selection and current runtime may have changed.
                turn = await run_db(selectors.turn_next_queued, conv_id=key)
                if turn is None or not await execute_turn(turn):
                    if key in self._again:
                        continue
                    return
        except Exception:
            log.exception("the queue of conversation %s stopped", key)
        finally:
            if self._drains.get(key) is asyncio.current_task():
                del self._drains[key]

    # ------------------------------------------------------------------ the timer

    async def _tick_forever(self) -> None:
        interval = min(settings.CHAT_CHECKPOINT_SECONDS, settings.CHAT_TURN_LEASE_SECONDS / 3)
        every = max(1, round(RECOVER_SECONDS / interval))
        for tick in itertools.count():
            # Every tick: renew and checkpoint, then sweep. At start-up and every RECOVER_SECONDS: also
            # restart queues that wait for nothing (a drain that stopped on an error leaves one behind).
            steps = [self.checkpoint, self.recover if tick % every == 0 else self.sweep]
            for step in steps:
                try:
                    await step()
                except asyncio.CancelledError:
                    raise
                except Exception:  # a database hiccup must not end lease renewal or sweeping
                    log.warning("%s failed; retrying at the next tick", step.__name__, exc_info=True)
            await asyncio.sleep(interval)

    async def checkpoint(self) -> None:
        # A turn that is finishing stores its own frames; the others are locked until this commit.
        live = [t for t in self.live.values() if not t.store_lock.locked()]
        if not live:
            return
        for turn in live:
            await turn.store_lock.acquire()  # free: returns at once
        try:
            texts = [t.partial_text() for t in live]
            stored = [len(t.pending) for t in live]
            checkpoints = [
                services.Checkpoint(
                    t.turn_id, t.conv_id, text if len(text) != t.checkpointed_chars else None, t.pending[:n]
                )
                for t, text, n in zip(live, texts, stored, strict=True)
            ]
            started = time.monotonic()
            held = await run_db(services.turns_checkpoint, checkpoints=checkpoints)
            for turn, text, n in zip(live, texts, stored, strict=True):
                if turn.turn_id in held:
                    del turn.pending[:n]
                    turn.checkpointed_chars = len(text)
                    turn.renewed(started)
                elif turn.task is not None and not turn.task.done():
                    turn.lease_lost = True  # interrupted elsewhere: stop without writing anything more
                    turn.task.cancel()
        finally:
            for turn in live:
                turn.store_lock.release()

    async def sweep(self) -> None:
        for conv_id, turn_id, text in await run_db(services.turns_interrupt_expired):
            log.warning("turn %s lost its worker (lease expired): interrupted", turn_id)
            data = {"turn_id": turn_id, "error": services.INTERRUPTED_ERROR, "status": "interrupted", "text": text}
            await publish(conv_id, "turn.failed", data, turn_id)
            await self.kick(conv_id)

    async def recover(self) -> None:
        """Sweep, then start queued turns that wait for nothing (after a restart, or a failed drain)."""
        await self.sweep()
        for conv_id in await run_db(selectors.conversations_with_queued_turns):
            await self.kick(conv_id)

    # ------------------------------------------------------------------ the control channel

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
            future = self._replies.get(message.get("request_id"))
            if future is not None and not future.done():
                future.set_result(message)
            return
        live = self.live.get(message.get("turn_id")) if message.get("turn_id") else None
        if kind == "turn.cancel" and live is not None and live.task is not None and not live.task.done():
            live.cancelled = True
            live.task.cancel()
        elif kind == "turn.replay":
            live = next((t for t in self.live.values() if t.conv_id == message.get("conv_id")), None)
            if live is not None:
                reply = {"type": "turn.replay.reply", "request_id": message["request_id"], **live.replay()}
                await layer.send(message["reply_to"], reply)

    @contextlib.asynccontextmanager
    async def running(self, live: LiveTurn):
        """While the turn runs, this process answers cancel and replay requests sent to the conversation."""
        layer = get_channel_layer()
        group = control_group_name(live.conv_id)
        await layer.group_add(group, await self.control_channel())
        self.live[live.turn_id] = live
        try:
            yield
        finally:
            self.live.pop(live.turn_id, None)
            with contextlib.suppress(Exception):
                await layer.group_discard(group, await self.control_channel())

    async def ask_replay(self, conv_id: Any) -> dict[str, Any] | None:
        """What the worker running this conversation's turn has not stored: None if nobody answers."""
        request_id = uuid.uuid4().hex
        future = asyncio.get_running_loop().create_future()
        self._replies[request_id] = future
        try:
            await get_channel_layer().group_send(
                control_group_name(conv_id),
                {
                    "type": "turn.replay",
                    "conv_id": str(conv_id),
                    "request_id": request_id,
                    "reply_to": await self.control_channel(),
                },
            )
            return await asyncio.wait_for(future, REPLAY_TIMEOUT_SECONDS)
        except TimeoutError:
            return None
        finally:
            self._replies.pop(request_id, None)


dispatcher = Dispatcher()


@dataclass(frozen=True)
class Replay:
    frames: list[dict[str, Any]]
    next_since_seq: int
    more: bool


async def replay(conv_id: Any, since_seq: int, limit: int = REPLAY_PAGE) -> Replay:
    """The frames after `since_seq` for a client that (re)joins: stored ones, the running turn's frames
    not stored yet, then `llm.snapshot` (the streaming message's text so far). Live frames with a seq up
    to `next_since_seq` are covered by it; later ones come live (or from the next call)."""
    live = None
    if await run_db(selectors.conversation_active_turn, conv_id=conv_id):
        live = await dispatcher.ask_replay(conv_id)
    upto = live["seq"] if live else None
    stored, more = await run_db(
        selectors.events_after, conv_id=conv_id, since_seq=since_seq, upto_seq=upto, limit=limit
    )
    by_seq = {f["seq"]: f for f in stored}
    if live and not more:
        by_seq.update({f["seq"]: f for f in live["frames"] if since_seq < f["seq"] <= upto})
    frames = [by_seq[seq] for seq in sorted(by_seq)]
    if more:
        return Replay(frames, frames[-1]["seq"], True)
    if live and live["message"] and upto > since_seq:
        frames.append(services.make_frame(type="llm.snapshot", conv_id=conv_id, seq=upto, data=live["message"]))
    last = frames[-1]["seq"] if frames else since_seq
    return Replay(frames, max(last, upto or 0), False)


class _Recorder:
    """Collects what the turn record stores besides text (artifacts, suggestions)."""

    def __init__(self) -> None:
        self.artifacts: list[dict[str, Any]] = []
        self.suggestions: list[str] = []
        self.middleware_events: list[dict[str, Any]] = []

    def observe(self, type: str, data: dict[str, Any]) -> None:
        if type == "artifact":
            self.artifacts.append(data)
        elif type == "middleware.event":
            self.middleware_events.append(data)
        elif type == "suggestions":
            self.suggestions = list(data.get("items", []))


async def execute_turn(turn: Turn) -> bool:
    """Run one queued turn to its end. True: turns may wait behind it (the drain looks again at once);
    False: none does, or it could not be claimed (another runs, or another worker took it)."""
    conversation, user = turn.conversation, turn.conversation.owner  # loaded with the turn
    conv_id, turn_id = str(conversation.pk), str(turn.pk)
    started = time.monotonic()
    live = LiveTurn(turn_id, conv_id)
    live.renewed(started)

    try:
        resolution = await run_db(
            selectors.conversation_resolve,
            conversation=conversation,
            user=user,
            request_overrides=turn.request_overrides or None,
        )
        runtime = runtime_for(conversation.mount, resolution)
    except (ProfileError, LookupError, ValueError) as exc:
        message = getattr(exc, "message", str(exc))
        if not await run_db(services.turn_start, turn=turn, record=None, frames=[]):
            return False
        error = {"code": "resolution_failed", "message": message}
        return await _finish(live, started, TurnOutcome(), _Recorder(), "failed", error)

    first: list[dict[str, Any]] = []
    previous = conversation.current_fingerprint
    if previous and previous != runtime.fingerprint:
        switched = {
            "from": {
                "runtime_key": conversation.current_runtime_key,
                "fingerprint": previous,
                "profile_version": conversation.current_profile_version,
            },
            "to": runtime.marker(),
            **_switch_reason(conversation, runtime, resolution),
        }
        first.append(await new_frame(conv_id, "runtime.switched", switched))
    first.append(await new_frame(conv_id, "turn.started", {"turn_id": turn_id, **runtime.marker()}))
    # The runtime record and the first frames are stored with the claim, before the first delta.
    record = {**runtime.record(), "runtime_config": {**runtime_config(runtime), **resolution.trace()}}
    if not await run_db(services.turn_start, turn=turn, record=record, frames=first):
        return False

    recorder, outcome = _Recorder(), TurnOutcome()

    async def emit(type: str, data: dict[str, Any]) -> None:
        live.check_lease()
        recorder.observe(type, data)
        frame = await new_frame(conv_id, type, data)
        # Recorded for replays before it goes out: a socket that joins while it is on its way either
        # gets it live or finds it in the replay (then the live copy is dropped by seq), never neither.
        live.sent(frame)
        await fan_out(frame)

    status, error = "completed", None
    async with dispatcher.running(live):
        try:
            for frame in first:
                await fan_out(frame)
                live.published_seq = frame["seq"]
            history = await run_db(
                selectors.conversation_history,
                conversation=conversation,
                before_seq=turn.seq,
                limit=runtime.history_turns,
            )
            messages: list[Message] = []
            for prompt, reply in history:
                messages += [Message("user", prompt), Message("assistant", reply)]
            messages.append(Message("user", turn.prompt))
            ctx = TurnContext(
                conv_id=conv_id,
                turn_id=turn_id,
                prompt=turn.prompt,
                messages=messages,
                system_prompt=runtime.system_prompt,
                emit=emit,
            )
            tool_ctx = ToolContext(
                user_id=user.pk,
                username=user.get_username(),
                mount=conversation.mount,
                has_perm=user.has_perm,
                emit=emit,
            )
            live.task = asyncio.ensure_future(
                run_turn(
                    runtime,
                    ctx,
                    outcome,
                    tool_ctx=tool_ctx,
                    run_sync=run_tool,
                    tool_timeout=settings.CHAT_TOOL_TIMEOUT_SECONDS,
                    coalesce_seconds=dispatcher.coalesce_interval,
                )
            )
            await live.task
        except asyncio.CancelledError:
            if live.lease_lost:
                return True  # another worker interrupted it: nothing more is ours to write
            if not live.cancelled:  # the server is stopping: keep the partial text, then stop
                outcome.text = outcome.text or live.partial_text()
                with contextlib.suppress(Exception):
                    await _finish(live, started, outcome, recorder, "interrupted", services.INTERRUPTED_ERROR)
                raise
            status = "cancelled"
        except LeaseLost:
            log.warning("turn %s stopped: its lease could not be renewed in time", turn_id)
            return True
        except EngineError as exc:
            status, error = "failed", {"code": exc.code, "message": exc.message}
        except Exception:
            log.exception("turn %s failed", turn_id)
            status = "failed"
            error = {"code": "internal_error", "message": "the turn failed on the server; see the server log"}
        if not outcome.text:
            outcome.text = live.partial_text()
        return await _finish(live, started, outcome, recorder, status, error)


def _switch_reason(conversation: Any, runtime: Runtime, resolution: Resolution) -> dict[str, Any]:
    """`{"reason"}` of a `runtime.switched` frame, and for a base layer's new version `layers` (each
    changed layer with its versions) and `layer` (the first of them)."""
    if conversation.current_runtime_key != runtime.runtime_key:
        # Away from a profile the user may no longer use (later switches have their own reasons).
        return {"reason": "access_revoked" if resolution.fallback == "access_revoked" else "profile_changed"}
    if conversation.current_profile_version != runtime.profile_version:
        # A runtime that follows a label changes version only when the label moves.
        return {"reason": "label_moved" if runtime.label and runtime.label != LATEST else "profile_updated"}
    changed = lineage_changes(resolution.previous_lineage, resolution.lineage)
    if changed:
        return {"reason": "profile_updated", "layer": changed[0], "layers": changed}
    return {"reason": "runtime_changed"}


async def _finish(
    live: LiveTurn, started: float, outcome: TurnOutcome, recorder: _Recorder, status: str, error: Any
) -> bool:
    """Store the turn's end with every frame not stored yet, then announce it. Writes nothing when
    the lease was lost meanwhile (the turn is `interrupted` already). True: turns wait behind it."""
    data: dict[str, Any] = {"turn_id": live.turn_id, "duration_ms": int((time.monotonic() - started) * 1000)}
    if status in ("failed", "interrupted"):
        # An interrupted turn is announced as failed (code `interrupted`): clients know that frame.
        data.update(error=error, text=outcome.text, status=status)
    else:
        data.update(usage=outcome.usage, text=outcome.text, stop_reason=outcome.stop_reason)
    last = await new_frame(live.conv_id, "turn.failed" if status == "interrupted" else f"turn.{status}", data)
    async with live.store_lock:
        result = await run_db(
            services.turn_finish,
            turn_id=live.turn_id,
            status=status,
            text=outcome.text,
            usage=outcome.usage,
            error=error,
            tool_calls=outcome.tool_calls,
            artifacts=recorder.artifacts,
            suggestions=recorder.suggestions,
            middleware_events=recorder.middleware_events,
            frames=[*live.pending, last],
        )
        if result.finished:
            live.pending.clear()
    if result.finished:
        await fan_out(last)
    return result.more_queued


async def request_cancel(conv_id: Any) -> bool:
    """Ask whichever worker runs this conversation's turn to cancel it."""
    turn_id = await run_db(selectors.conversation_running_turn_id, conv_id=conv_id)
    if turn_id is None:
        return False
    await get_channel_layer().group_send(control_group_name(conv_id), {"type": "turn.cancel", "turn_id": str(turn_id)})
    return True


async def conversation_delete(*, conversation: Any, user: Any) -> None:
    """Delete a conversation: its running turn is asked to stop first (whichever worker runs it), then
    `services.conversation_delete` cancels what is left and deletes it; the sockets still open on it are
    told (`chat.deleted`: they close)."""
    await request_cancel(conversation.pk)
    await run_db(services.conversation_delete, conversation=conversation, user=user)
    await get_channel_layer().group_send(group_name(conversation.pk), {"type": "chat.deleted"})


def bind_server_loop(app):
    """Wrap the ASGI app so the dispatcher knows the server loop (REST-submitted turns run there)."""

    async def asgi(scope, receive, send):
        if scope["type"] in ("http", "websocket"):
            dispatcher.bind(asyncio.get_running_loop())
        return await app(scope, receive, send)

    return asgi
