"""A turn from submission to its end: `turn_enqueue` (the one way in, for the websocket, REST and the
gateway), `execute_turn` (run by the dispatcher on the server's loop), and `await_turn` (the one way
to wait for a turn's end, on the event loop: REST `?wait=1` and the gateway).

A turn is stored in a few transactions: its submission, which also claims it with its runtime record
when nothing runs or waits in its conversation (else the dispatcher's claim does, when its turn comes);
a checkpoint every few seconds (see `chat.dispatcher`); its finish. Its frames are sent as they are
made and stored with the next of those: `llm.delta` frames are never stored (each message's `llm.final`
has its text).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from typing import Any, TypeVar

from channels.layers import get_channel_layer
from django.conf import settings

from profiles.errors import ProfileError, ProfileUnavailable, is_outage
from profiles.resolution import Resolution

from . import frames, limits, services, streams
from .aio import run_db, run_tool
from .billing import prices
from .dispatcher import Dispatcher
from .live import LeaseLost, LiveTurn
from .models import Turn
from .preparation import Prepared, prepare, start_at_submission
from .runtime.base import EngineError, Message, ToolContext, TurnContext
from .runtime.runner import TurnOutcome, run_turn
from .sequencer import get_sequencer, reservation_for
from .streams import Subscription
from .webhook_sender import sender as webhook_sender
from .writer import writer

log = logging.getLogger(__name__)
SILENCE_CHECK_SECONDS = 1.0  # a waiter that hears no frame for this long looks at the stored turn
FINISH_RETRY_FIRST_SECONDS = 0.25  # a turn's end stored during an outage: tried again after this, doubling
FINISH_RETRY_MAX_SECONDS = 5.0
T = TypeVar("T")


async def turn_enqueue(
    *,
    conversation: Any,
    user: Any,
    prompt: Any,
    request_overrides: Any = None,
    idempotency_key: Any = None,
    replaces: Any = None,
    resolution: Resolution | None = None,
    resolve: Callable[[], Resolution] | None = None,
    api_key_id: int | None = None,
    metadata: dict[str, str] | None = None,
) -> services.Submitted:
    """Queue a turn, announce it (`chat.message`, and `chat.queued` when it waits) and make sure it
    runs. `replaces`: the id of the conversation's last turn, regenerated (prompt None: the same
    prompt) or edited. `conversation` may be new and unsaved (stored with the turn); `resolution`: its
    profile as the caller just resolved it with these overrides, which a turn that runs at once runs on;
    `resolve`: that resolution made by the submission's write instead (`services.turn_submit`)."""
    message_seq = await get_sequencer().next(conversation.pk)
    if conversation._state.adding:  # numbered before its row exists: the row carries the reservation
        conversation.last_seq = reservation_for(message_seq)
    submitted = await writer.write(
        services.turn_submit,
        key=conversation.pk,
        conversation=conversation,
        user=user,
        prompt=prompt,
        request_overrides=request_overrides,
        idempotency_key=idempotency_key,
        message_seq=message_seq,
        replaces=replaces,
        resolution=resolution,
        resolve=resolve,
        api_key_id=api_key_id,
        metadata=metadata,
        start=start_at_submission,
    )
    if submitted.created:
        if submitted.frame is not None:
            await streams.fan_out(submitted.frame)
        if submitted.position:
            turn_id = str(submitted.turn.pk)
            queued = frames.chat_queued(turn_id=turn_id, position=submitted.position)
            await streams.publish(conversation.pk, "chat.queued", queued, turn_id)
        # First in line: the drain starts with it (loaded fresh with its conversation by the submission),
        # claimed already when its submission could prepare it.
        if submitted.position:
            await dispatcher.kick(conversation.pk)
        else:
            prepared = submitted.started or submitted.resolution
            claimed = submitted.started is not None
            await dispatcher.kick(conversation.pk, first=submitted.turn, prepared=prepared, claimed=claimed)
    return submitted


async def await_turn(
    *,
    conv_id: Any,
    turn_id: Any,
    timeout: float,
    read: Callable[..., T | None],
    ended: Callable[[frames.Frame], T | None] | None = None,
) -> T | None:
    """Wait on the event loop until the turn has finished (whichever worker runs it) and return
    `read(turn_id=...)`, which is None while the turn runs; None after `timeout` seconds. `ended`: the
    result from the turn's terminal frame alone when the caller knows the rest (else None): no read after it.

    It listens for the conversation's terminal frames only (`Subscription(ends_only=True)`: no wake-up
    per delta) and reads the stored turn before (unless this process runs it and has not sent that frame
    yet: it comes through the subscription), after that frame, and after each second without one unless
    the turn still runs here (a frame a layer lost cannot hang it: a turn that ran here no longer does).
    A read after a silence that finds the database away is not an error: the wait goes on."""
    deadline = time.monotonic() + timeout
    async with Subscription(conv_id, ends_only=True) as live:
        look, after_silence = not dispatcher.runs_here(turn_id), False
        while True:
            result = None
            if look:
                try:
                    result = await run_db(read, turn_id=turn_id)
                except Exception as exc:
                    # A look after a silence only checks for a lost end frame: with the database away
                    # the wait goes on (the end may still come), as the turn does.
                    if not (after_silence and is_outage(exc)):
                        raise
            look = True
            if result is not None:
                return result
            while True:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return None
                frame = await live.next(min(SILENCE_CHECK_SECONDS, remaining))
                if frame is None:
                    if dispatcher.runs_here(turn_id):
                        continue  # it runs on this loop: its end comes through the subscription
                    after_silence = True
                    break
                if frames.is_end_of(frame, turn_id):
                    result = ended(frame) if ended is not None else None
                    if result is not None:
                        return result
                    after_silence = False
                    break


class _Recorder:
    """Collects what the turn record stores besides text (artifacts, suggestions, middleware events)."""

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


async def execute_turn(turn: Turn, prepared: Resolution | Prepared | None = None) -> bool:
    """Run one queued turn to its end. True: turns may wait behind it (the drain looks again at once);
    False: none does, or it could not be claimed (another runs, or another worker took it).
    `prepared`: its profile as its submission resolved it a moment ago (else resolved now)."""
    conversation, user = turn.conversation, turn.conversation.owner  # loaded with the turn
    conv_id, turn_id = str(conversation.pk), str(turn.pk)
    started = time.monotonic()
    live = LiveTurn(turn_id, conv_id)
    live.renewed(started)

    if not isinstance(prepared, Prepared):  # it waited: prepared and claimed now
        try:
            prepared = await run_db(prepare, turn=turn, resolution=prepared)
        except Exception as exc:
            if is_outage(exc):  # the dispatcher tries again when the database answers
                raise
            if isinstance(exc, ProfileError | LookupError | ValueError):
                code = "profile_unavailable" if isinstance(exc, ProfileUnavailable) else "resolution_failed"
                message = getattr(exc, "message", str(exc))
            else:  # a bug must not leave the turn queued for ever: it fails, and says so
                log.exception("turn %s could not be prepared", turn_id)
                code, message = "internal_error", "the server could not prepare this turn (the error is logged)"
            if not await writer.write(services.turn_start, key=conv_id, turn=turn, record=None):
                return False
            failed = {"code": code, "message": message}
            return await _finish(live, started, TurnOutcome(), _Recorder(), "failed", failed)
        # The runtime record is stored with the claim, before the first delta.
        if not await writer.write(services.turn_start, key=conv_id, turn=turn, record=prepared.record):
            return False
    runtime, history, live.rate = prepared.runtime, prepared.history, prepared.rate

    live.rollout_id = (runtime.rollout or {}).get("id")
    live.api_key_id = turn.api_key_id
    recorder, outcome = _Recorder(), TurnOutcome()

    async def emit(type: str, data: dict[str, Any]) -> None:
        live.check_lease()
        recorder.observe(type, data)
        frame = await streams.number(conv_id, type, data, running_here=True)
        # Recorded for replays before it goes out: a socket that joins while it is on its way either
        # gets it live or finds it in the replay (then the live copy is dropped by seq), never neither.
        # A frame the channel layer could not take (Redis away) reaches clients through the replay.
        live.sent(frame)
        await streams.fan_out(frame)

    status = "completed"
    error: dict[str, Any] | None = None
    async with dispatcher.running(live):
        try:
            # Its first frames go out like any other: stored with its first checkpoint or its end.
            if prepared.switch is not None:
                previous, reason = prepared.switch
                switched = frames.runtime_switched(previous=previous, to=runtime.marker(), reason=reason)
                await emit("runtime.switched", switched)
            await emit("turn.started", frames.turn_started(turn_id=turn_id, marker=runtime.marker()))
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
            if live.storage_lost:  # the outage outlasted the grace: written when the database answers
                status, error = "failed", services.storage_unavailable_error()
            elif not live.cancelled:  # the server is stopping: keep the partial text, then stop
                outcome.text = outcome.text or live.partial_text()
                with contextlib.suppress(Exception):
                    await _finish(
                        live, started, outcome, recorder, "interrupted", services.INTERRUPTED_ERROR, retry=False
                    )
                raise
            else:
                status = "cancelled"
        except LeaseLost:
            log.warning("turn %s stopped: its lease could not be renewed in time", turn_id)
            return True
        except EngineError as exc:
            status, error = "failed", {"code": exc.code, "message": exc.message}
        except Exception as exc:
            status = "failed"
            if is_outage(exc):  # e.g. its history could not be read
                error = services.storage_unavailable_error()
            else:
                log.exception("turn %s failed", turn_id)
                error = {"code": "internal_error", "message": "the turn failed on the server; see the server log"}
        if not outcome.text:
            outcome.text = live.partial_text()
        return await _finish(live, started, outcome, recorder, status, error)


async def _finish(
    live: LiveTurn,
    started: float,
    outcome: TurnOutcome,
    recorder: _Recorder,
    status: str,
    error: Any,
    *,
    retry: bool = True,
) -> bool:
    """Store the turn's end with every frame not stored yet, then announce it. Writes nothing when
    the lease was lost meanwhile (the turn is `interrupted` already). True: turns wait behind it.

    While the database does not answer, the end is announced at once (clients see it) and stored
    when the database answers again, retried with a growing pause (`retry`: not when the server stops)."""
    if outcome.usage is not None:  # what it cost at the price in force when it started
        outcome.usage = {**outcome.usage, "cost_usd": prices.cost_usd(outcome.usage, live.rate)}
    type, data = frames.turn_end(
        turn_id=live.turn_id,
        status=status,
        text=outcome.text,
        duration_ms=int((time.monotonic() - started) * 1000),
        error=error,
        usage=outcome.usage,
        stop_reason=outcome.stop_reason,
    )
    last = await streams.number(live.conv_id, type, data, running_here=True)
    announced, pause = False, FINISH_RETRY_FIRST_SECONDS
    if retry and dispatcher.storage_down():  # known away: clients see the end now, it is stored later
        announced = True
        await _announce(last)
    while True:
        try:
            async with live.store_lock:
                result = await writer.write(
                    services.turn_finish,
                    key=live.conv_id,
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
                    has_chunks=live.stored_chars > 0,
                )
                if result.finished:
                    live.pending.clear()
            break
        except Exception as exc:
            if not (retry and is_outage(exc)):
                raise
            dispatcher.storage_failed()
            if not announced:
                log.warning("turn %s ended during an outage: stored when the database answers", live.turn_id)
                announced = True
                await _announce(last)
            await asyncio.sleep(pause)
            pause = min(pause * 2, FINISH_RETRY_MAX_SECONDS)
    dispatcher.storage_answered()
    if result.finished and not announced:
        await _announce(last)
    if result.finished and live.rollout_id is not None:
        await run_db(services.rollout_judge, rollout_id=live.rollout_id)
    tokens = sum(int((outcome.usage or {}).get(k) or 0) for k in ("prompt_tokens", "completion_tokens"))
    if result.finished and live.api_key_id is not None and tokens:
        await run_db(limits.record_tokens, key_id=live.api_key_id, tokens=tokens)
    return result.more_queued


async def _announce(last: frames.Frame) -> None:
    """Send a turn's terminal frame; if the channel layer cannot take it now, again at the next tick."""
    if not await streams.fan_out(last):
        dispatcher.resend(last)


async def turns_recover_stopped() -> int:
    """Single-node start-up: the turns a stopped server left running end `interrupted`, each with its
    terminal frame stored (and sent), so a client that catches up by seq sees that it ended."""
    ended = await run_db(services.turns_mark_interrupted)
    for conv_id, turn_id, text in ended:
        type, data = frames.turn_end(turn_id=turn_id, status="interrupted", text=text, error=services.INTERRUPTED_ERROR)
        await streams.publish(conv_id, type, data, turn_id)
    return len(ended)


async def conversation_delete(*, conversation: Any, user: Any) -> None:
    """Delete a conversation: its running turn is asked to stop first (whichever worker runs it), then
    `services.conversation_delete` cancels what is left and deletes it; the sockets still open on it are
    told (`chat.deleted`: they close)."""
    await dispatcher.request_cancel(conversation.pk)
    await run_db(services.conversation_delete, conversation=conversation, user=user)
    await get_channel_layer().group_send(frames.group_name(conversation.pk), {"type": "chat.deleted"})


dispatcher = Dispatcher(execute_turn)


def bind_server_loop(app: Any, *others: Callable[[asyncio.AbstractEventLoop], None]) -> Any:
    """Wrap the ASGI app so the dispatcher knows the server loop (REST-submitted turns run there), and
    the webhook sender and `others` (each `bind(loop)`) start on it."""
    binders = (dispatcher.bind, webhook_sender.bind, *others)

    async def asgi(scope: Any, receive: Any, send: Any) -> Any:
        if scope["type"] in ("http", "websocket"):
            loop = asyncio.get_running_loop()
            for bind in binders:
                bind(loop)
        return await app(scope, receive, send)

    return asgi
