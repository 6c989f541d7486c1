"""Runs queued turns on the server's event loop, independent of any socket.

A turn keeps running when its socket goes away; its frames are stored (numbered) and sent to the
conversation's group, so every socket on every worker sees them. Cancels arrive through a
per-conversation control group that the running turn listens to, wherever it runs.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import logging
import time
from typing import Any

from channels.db import database_sync_to_async
from channels.layers import get_channel_layer
from django.conf import settings

from profiles.definitions import definitions
from profiles.errors import ProfileError
from profiles.mounts import get_mount
from profiles.resolution import Resolution

from . import services
from .models import Turn
from .runtime.base import EngineError, Message, ToolContext, TurnContext
from .runtime.composer import Runtime, RuntimeCache, compose
from .runtime.engines import build_engine
from .runtime.runner import TurnOutcome, run_turn

log = logging.getLogger(__name__)
db = database_sync_to_async
runtime_cache = RuntimeCache()


async def run_sync(fn: Any, *args: Any) -> Any:
    """Blocking work (ORM, tools) off the loop, with Django's connection handling."""
    return await db(fn)(*args)


def group_name(conv_id: Any) -> str:
    return f"conv.{conv_id}"


def control_group_name(conv_id: Any) -> str:
    return f"conv-control.{conv_id}"


def make_engine(engine_settings: dict[str, dict[str, Any]]):
    return build_engine(
        engine_settings,
        api_key=settings.OPENAI_API_KEY,
        base_url=settings.OPENAI_BASE_URL,
        timeout=settings.CHAT_ENGINE_TIMEOUT_SECONDS,
        offline_delay=settings.CHAT_OFFLINE_DELAY_SECONDS,
    )


def runtime_for(mount_name: str, resolution: Resolution) -> Runtime:
    """The composer through the cache: the same fingerprint never builds twice."""
    mount = get_mount(mount_name)
    return runtime_cache.get_or_build(
        mount.name,
        resolution,
        lambda: compose(resolution, mount_tools=mount.tool_names(), defs=definitions, make_engine=make_engine),
    )


def runtime_summary(runtime: Runtime) -> dict[str, Any]:
    return {
        "runtime_key": runtime.runtime_key,
        "profile": {"registry": runtime.registry, "slug": runtime.profile, "version": runtime.profile_version},
        "fingerprint": runtime.fingerprint,
        "engine": {"provider": runtime.engine_info["provider"], "model": runtime.engine_info["model"]},
        "tools": runtime.tool_names,
        "middlewares": runtime.middleware_summary(),
    }


async def publish(conv_id: Any, type: str, data: dict[str, Any], turn_id: Any = None) -> dict[str, Any]:
    """Store the frame with the next seq, then send it to every socket of the conversation."""
    frame = await db(services.event_append)(conv_id=conv_id, type=type, data=data, turn_id=turn_id)
    await get_channel_layer().group_send(group_name(conv_id), {"type": "chat.frame", "frame": frame})
    return frame


async def turn_enqueue(
    *, conversation: Any, user: Any, prompt: Any, request_overrides: Any = None, idempotency_key: Any = None
) -> services.Submitted:
    """Queue a turn, announce it (`chat.message`, and `chat.queued` when it waits) and make sure it
    runs. The one path for the websocket and the REST API."""
    submitted = await db(services.turn_submit)(
        conversation=conversation,
        user=user,
        prompt=prompt,
        request_overrides=request_overrides,
        idempotency_key=idempotency_key,
    )
    if submitted.created:
        turn_id = str(submitted.turn.pk)
        await publish(conversation.pk, "chat.message", {"turn_id": turn_id, "text": submitted.turn.prompt}, turn_id)
        if submitted.position:
            await publish(conversation.pk, "chat.queued", {"turn_id": turn_id, "position": submitted.position}, turn_id)
        await dispatcher.kick(conversation.pk)
    return submitted


class Dispatcher:
    """One per process. Starts at most one drain task per conversation on the server loop."""

    def __init__(self) -> None:
        self.loop: asyncio.AbstractEventLoop | None = None
        self._drains: dict[str, asyncio.Task] = {}
        self._again: set[str] = set()
        self._recovered = False
        # One control channel per process, listened to for as long as the process lives: a
        # channel-layer receive must never be cancelled (channels-redis can drop a message then).
        self._control: tuple[Any, Any, str, asyncio.Task] | None = None
        self._running: dict[str, asyncio.Task] = {}
        self.cancelled: set[str] = set()

    def bind(self, loop: asyncio.AbstractEventLoop) -> None:
        """Remember the server loop; the first time, sweep stale turns and restart queued ones."""
        if self.loop is not loop:
            self.loop = loop
            self._drains.clear()
            self._recovered = False
            loop.create_task(self.recover(), context=contextvars.Context())

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
                turn = await db(services.turn_claim_next)(conv_id=key)
                if turn is None:
                    if key in self._again:
                        continue
                    return
                await execute_turn(turn)
        finally:
            if self._drains.get(key) is asyncio.current_task():
                del self._drains[key]

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
            turn_id = message.get("turn_id")
            task = self._running.get(turn_id)
            if message.get("type") == "turn.cancel" and task is not None and not task.done():
                self.cancelled.add(turn_id)
                task.cancel()

    @contextlib.asynccontextmanager
    async def running(self, conv_id: Any, turn_id: str, task: asyncio.Task):
        """While the turn runs, this process answers cancels sent to the conversation's control group."""
        layer = get_channel_layer()
        group = control_group_name(conv_id)
        await layer.group_add(group, await self.control_channel())
        self._running[turn_id] = task
        try:
            yield
        finally:
            self._running.pop(turn_id, None)
            self.cancelled.discard(turn_id)
            with contextlib.suppress(Exception):
                await layer.group_discard(group, await self.control_channel())

    async def recover(self) -> None:
        """At start-up: interrupt turns of workers that died, restart queued turns that wait for nothing."""
        if self._recovered:
            return
        self._recovered = True
        await db(services.turns_mark_stale)()
        for conv_id in await db(services.conversations_with_queued_turns)():
            await self.kick(conv_id)


dispatcher = Dispatcher()


class _Recorder:
    """Collects what the turn record stores besides text (artifacts, suggestions)."""

    def __init__(self) -> None:
        self.artifacts: list[dict[str, Any]] = []
        self.suggestions: list[str] = []

    def observe(self, type: str, data: dict[str, Any]) -> None:
        if type == "artifact":
            self.artifacts.append(data)
        elif type == "suggestions":
            self.suggestions = list(data.get("items", []))


async def execute_turn(turn: Turn) -> None:
    conversation, user = turn.conversation, turn.conversation.owner  # loaded with the claim
    conv_id, turn_id = conversation.pk, str(turn.pk)
    started = time.monotonic()

    async def emit(type: str, data: dict[str, Any]) -> None:
        recorder.observe(type, data)
        await publish(conv_id, type, data, turn_id)

    recorder, outcome = _Recorder(), TurnOutcome()
    try:
        resolution = await db(services.conversation_resolve)(
            conversation=conversation, user=user, request_overrides=turn.request_overrides or None
        )
        runtime = runtime_for(conversation.mount, resolution)
    except (ProfileError, LookupError, ValueError) as exc:
        message = getattr(exc, "message", str(exc))
        await _finish(
            conv_id, turn_id, started, outcome, recorder, "failed", {"code": "resolution_failed", "message": message}
        )
        return

    previous = conversation.current_fingerprint
    if previous and previous != runtime.fingerprint:
        await emit(
            "runtime.switched",
            {
                "from": {
                    "runtime_key": conversation.current_runtime_key,
                    "fingerprint": previous,
                    "profile_version": conversation.current_profile_version,
                },
                "to": runtime.marker(),
                "reason": _switch_reason(conversation, runtime),
            },
        )
    await db(services.turn_record_runtime)(turn=turn, record=runtime.record())
    await emit("turn.started", {"turn_id": turn_id, **runtime.marker()})

    history = await db(services.conversation_history)(conversation=conversation, before_seq=turn.seq)
    messages: list[Message] = []
    for prompt, reply in history:
        messages += [Message("user", prompt), Message("assistant", reply)]
    messages.append(Message("user", turn.prompt))
    ctx = TurnContext(
        conv_id=str(conv_id),
        turn_id=turn_id,
        prompt=turn.prompt,
        messages=messages,
        system_prompt=runtime.system_prompt,
        emit=emit,
    )
    tool_ctx = ToolContext(
        user_id=user.pk, username=user.get_username(), mount=conversation.mount, has_perm=user.has_perm, emit=emit
    )
    task = asyncio.ensure_future(
        run_turn(
            runtime,
            ctx,
            outcome,
            tool_ctx=tool_ctx,
            run_sync=run_sync,
            tool_timeout=settings.CHAT_TOOL_TIMEOUT_SECONDS,
            coalesce_seconds=settings.CHAT_DELTA_COALESCE_SECONDS,
        )
    )
    status, error = "completed", None
    async with dispatcher.running(conv_id, turn_id, task):
        try:
            await task
        except asyncio.CancelledError:
            # A user's cancel went through the control channel; anything else is the server stopping.
            status = "cancelled" if turn_id in dispatcher.cancelled else "interrupted"
        except EngineError as exc:
            status, error = "failed", {"code": exc.code, "message": exc.message}
        except Exception:
            log.exception("turn %s failed", turn_id)
            status = "failed"
            error = {"code": "internal_error", "message": "the turn failed on the server; see the server log"}
    if status == "interrupted":
        error = {"code": "interrupted", "message": "the server stopped during this turn"}
        await _finish(conv_id, turn_id, started, outcome, recorder, status, error)
        raise asyncio.CancelledError
    await _finish(conv_id, turn_id, started, outcome, recorder, status, error)


def _switch_reason(conversation: Any, runtime: Runtime) -> str:
    if conversation.current_runtime_key != runtime.runtime_key:
        return "profile_changed"
    if conversation.current_profile_version != runtime.profile_version:
        return "profile_updated"
    return "runtime_changed"


async def _finish(conv_id, turn_id, started, outcome: TurnOutcome, recorder: _Recorder, status: str, error) -> None:
    await db(services.turn_finish)(
        turn_id=turn_id,
        status=status,
        text=outcome.text,
        usage=outcome.usage,
        error=error,
        tool_calls=outcome.tool_calls,
        artifacts=recorder.artifacts,
        suggestions=recorder.suggestions,
    )
    data: dict[str, Any] = {"turn_id": turn_id, "duration_ms": int((time.monotonic() - started) * 1000)}
    if status == "failed":
        data.update(error=error, text=outcome.text)
    elif status == "interrupted":
        return  # the socket may already be gone; the stored turn says what happened
    else:
        data.update(usage=outcome.usage, text=outcome.text, stop_reason=outcome.stop_reason)
    await publish(conv_id, f"turn.{status}", data, turn_id)


async def request_cancel(conv_id: Any) -> bool:
    """Ask whichever worker runs this conversation's turn to cancel it."""
    turn_id = await db(
        lambda: (
            Turn.objects.filter(conversation_id=conv_id, status=Turn.Status.RUNNING)
            .values_list("pk", flat=True)
            .first()
        )
    )()
    if turn_id is None:
        return False
    await get_channel_layer().group_send(control_group_name(conv_id), {"type": "turn.cancel", "turn_id": str(turn_id)})
    return True


def bind_server_loop(app):
    """Wrap the ASGI app so the dispatcher knows the server loop (REST-submitted turns run there)."""

    async def asgi(scope, receive, send):
        if scope["type"] in ("http", "websocket"):
            dispatcher.bind(asyncio.get_running_loop())
        return await app(scope, receive, send)

    return asgi
