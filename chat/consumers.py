"""The chat websocket: parse a client frame, call one service, send the result.

Turns do not run here: they run in `chat.dispatcher` so a dropped socket never stops one.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import parse_qs

from channels.consumer import get_handler_name
from channels.exceptions import StopConsumer
from channels.generic.websocket import AsyncWebsocketConsumer
from channels.layers import get_channel_layer
from django.conf import settings

from profiles.api.parsers import unique_keys
from profiles.errors import NotFound, ProfileError, ProfileUnavailable, is_outage, outage_error
from profiles.mounts import Mount

from . import frames, services, sessions
from .aio import db, run_db
from .composition import runtime_for, runtime_summary, unavailable_summary
from .errors import ConversationForbidden
from .frames import GapWatch, LiveFilter
from .models import Conversation
from .replay import catch_up
from .sequencer import get_sequencer
from .turns import dispatcher, turn_enqueue

CLOSE_UNAUTHENTICATED = 4401
CLOSE_FORBIDDEN = 4403
CLOSE_INVALID = 4400
CLOSE_NOT_FOUND = 4404
CLOSE_DELETED = 4410
CLOSE_TRY_AGAIN_LATER = 1013  # RFC 6455: the server cannot serve the socket now (an outage)


class RateLimiter:
    """A token bucket per socket: bursts are fine, a sustained flood gets `error` frames."""

    def __init__(self, per_minute: int, burst: int | None = None) -> None:
        self.rate = per_minute / 60.0
        self.capacity = float(burst or max(5, per_minute // 4))
        self.tokens = self.capacity
        self.stamp = time.monotonic()

    def allow(self) -> bool:
        now = time.monotonic()
        self.tokens = min(self.capacity, self.tokens + (now - self.stamp) * self.rate)
        self.stamp = now
        if self.tokens >= 1:
            self.tokens -= 1
            return True
        return False


async def dispatch_from(
    sources: list[Callable[[], Awaitable[Any]]], dispatch: Callable[[Any], Awaitable[None]]
) -> None:
    """channels' `await_many_dispatch` without a task and an `asyncio.wait` per message: one task per
    source takes its messages and dispatches them itself, one dispatch at a time (a lock), until one ends
    (`StopConsumer`, an error); the others are then cancelled, as channels cancels its receives.

    Why: a socket's turn is mostly frames from the channel layer, and channels made each one a new task
    awaited with `asyncio.wait` (a tenth of a worker's CPU per turn). A source whose next message is ready
    (frames that came together) is read on without yielding: they are written to the socket together."""
    lock = asyncio.Lock()

    async def pump(source: Callable[[], Awaitable[Any]]) -> None:
        while True:
            message = await source()
            async with lock:
                await dispatch(message)

    pumps = [asyncio.ensure_future(pump(source)) for source in sources]
    try:
        done, _ = await asyncio.wait(pumps, return_when=asyncio.FIRST_COMPLETED)
        for task in done:
            task.result()  # its exception (StopConsumer ends the consumer)
    finally:
        for task in pumps:
            task.cancel()
        await asyncio.gather(*pumps, return_exceptions=True)


class ChatConsumer(AsyncWebsocketConsumer):
    def __init__(self, *args: Any, mount: Mount, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.mount = mount  # per mount in the routing: `as_asgi(mount=...)`

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        """channels' `AsyncConsumer.__call__`, dispatching with `dispatch_from`."""
        self.scope = scope
        self.channel_layer = get_channel_layer(self.channel_layer_alias)
        sources = [receive]
        if self.channel_layer is not None:
            self.channel_name = await self.channel_layer.new_channel()
            self.channel_receive = functools.partial(self.channel_layer.receive, self.channel_name)
            sources.append(self.channel_receive)
        self.base_send = send
        with contextlib.suppress(StopConsumer):
            await dispatch_from(sources, self.dispatch)

    async def dispatch(self, message: dict[str, Any]) -> None:
        """Channels closes stale database connections before every handler, a hop to the process's one
        sync thread for each frame a socket receives or sends. This consumer never uses a connection on
        that thread: its database work runs on the chat pools, cleaned up around each call (`run_db`)."""
        handler = getattr(self, get_handler_name(message), None)
        if handler is None:
            raise ValueError(f"No handler for message type {message['type']}")
        await handler(message)

    async def websocket_disconnect(self, message: dict[str, Any]) -> None:
        """channels' own, without its clean-up of the sync thread's database connection (a hop to that
        thread per socket; this consumer uses none there: see `dispatch`)."""
        for group in self.groups:
            await self.channel_layer.group_discard(group, self.channel_name)
        await self.disconnect(message["code"])
        raise StopConsumer

    async def connect(self) -> None:
        await self.accept()
        dispatcher.bind(asyncio.get_running_loop())
        self.conversation: Conversation | None = None
        self.conv_id: uuid.UUID | None = None
        self.seen = LiveFilter()  # what the replay sent: the same frames arriving live are dropped
        self.gaps = GapWatch()  # the conversation frames this socket was sent
        self.repair: asyncio.Task | None = None
        self.limiter = RateLimiter(settings.CHAT_RATE_LIMIT_PER_MINUTE)
        self.frame_limiter = RateLimiter(settings.CHAT_RATE_LIMIT_PER_MINUTE * 10)
        user = self.scope.get("user")
        if user is None or not user.is_authenticated:
            await self.close(code=CLOSE_UNAUTHENTICATED)
            return
        self.user = user
        query = {k: v[-1] for k, v in parse_qs(self.scope.get("query_string", b"").decode()).items()}
        try:
            self.conv_id = uuid.UUID(query["conv_id"]) if query.get("conv_id") else uuid.uuid4()
        except ValueError:
            await self._refuse(CLOSE_INVALID, "invalid", "conv_id must be a UUID", conv_id=query.get("conv_id"))
            return
        since = query.get("since_seq")
        if since is not None and not (since.isascii() and since.isdigit()):
            await self._refuse(CLOSE_INVALID, "invalid", "since_seq must be a non-negative integer")
            return
        try:
            opened = await run_db(
                services.conversation_open,
                conv_id=self.conv_id,
                user=user,
                mount=self.mount,
                registry=query.get("registry"),
                profile=query.get("profile"),
            )
        except ConversationForbidden:
            await self.close(code=CLOSE_FORBIDDEN)
            return
        except ProfileError as exc:
            await self._refuse(CLOSE_NOT_FOUND if isinstance(exc, NotFound) else CLOSE_INVALID, exc.code, exc.message)
            return
        except Exception as exc:
            if not is_outage(exc):
                raise
            unavailable = outage_error(exc)  # nothing to serve the socket with: the client reconnects later
            await self._refuse(CLOSE_TRY_AGAIN_LATER, unavailable.code, unavailable.message)
            return
        self.conversation = opened.conversation
        if opened.created:
            # Nothing numbered yet, its first numbers reserved with its row: no need to ask the database.
            get_sequencer().prime(self.conv_id, mark=opened.conversation.last_seq)
        # A profile that cannot be used now (its stack does not resolve) keeps the socket open: the hello
        # names it without a runtime, an `error` frame says why, and its turns fail until it is fixed.
        runtime = runtime_for(self.mount.name, opened.resolution) if opened.resolution is not None else None
        await self.channel_layer.group_add(frames.group_name(self.conv_id), self.channel_name)
        self.joined = True
        # A socket signed in by its session closes when that session logs out (in any tab). API clients
        # (a token, no session cookie) skip this: no database trip.
        self.session_key = None
        if getattr(self.scope.get("session"), "session_key", None):
            self.session_key = await run_db(sessions.socket_session_key, self.scope, user)
        if self.session_key:
            await self.channel_layer.group_add(sessions.session_group(self.session_key), self.channel_name)
        await self._send_hello(runtime, unavailable=opened.unavailable)
        if opened.refused is not None:  # the `profile` of the query (it names the field)
            await self._error(opened.refused.code, opened.refused.message, field=opened.refused.field)
        if opened.unavailable is not None:  # the conversation's profile (nothing the client sent)
            await self._error(opened.unavailable.code, opened.unavailable.message)
        if since is not None:
            self.gaps.begin(int(since))  # the client has everything up to it
            await self._replay(int(since))

    async def _replay(self, since: int) -> None:
        """`?since_seq=N`: what this socket missed, before any live frame (which wait in its channel)."""
        async for frame in catch_up(self.conv_id, since, self.seen):
            await self._send_frame(frame)

    async def _send_frame(self, frame: frames.Frame) -> None:
        self.gaps.sent(frame)
        await self.send(text_data=json.dumps(frame))

    async def _repair_gap(self) -> None:
        """A hole in the frames sent that did not fill: what the channel layer dropped, from the replay."""
        try:
            await asyncio.sleep(frames.GAP_REPAIR_SECONDS)
            if self.gaps.has_hole():
                async for frame in catch_up(self.conv_id, self.gaps.upto, self.seen):
                    if not self.gaps.was_sent(frame):
                        await self._send_frame(frame)
                self.gaps.close()
        except Exception as exc:
            if not is_outage(exc):
                raise
        finally:
            self.repair = None

    async def disconnect(self, code: int) -> None:
        repair = getattr(self, "repair", None)
        if repair is not None:
            repair.cancel()
        if getattr(self, "joined", False):
            await self.channel_layer.group_discard(frames.group_name(self.conv_id), self.channel_name)
        session_key = getattr(self, "session_key", None)
        if session_key:
            await self.channel_layer.group_discard(sessions.session_group(session_key), self.channel_name)

    async def session_ended(self, event: dict[str, Any]) -> None:
        """The session logged out (in another tab, or anywhere): this socket ends too."""
        await self._refuse(CLOSE_UNAUTHENTICATED, "not_authenticated", "you have logged out")

    async def chat_deleted(self, event: dict[str, Any]) -> None:
        """The conversation was deleted (in another tab or by the API)."""
        await self._refuse(CLOSE_DELETED, "not_found", "this conversation was deleted")

    async def _signed_in(self) -> bool:
        """A session socket may only submit turns while its session is alive; else it closes (4401)."""
        if getattr(self, "session_key", None) and not await run_db(
            sessions.session_alive, self.session_key, self.user.pk
        ):
            await self._refuse(CLOSE_UNAUTHENTICATED, "not_authenticated", "your session has ended: sign in again")
            return False
        return True

    # ------------------------------------------------------------------ sending

    async def _send_local(self, frame: frames.Frame) -> None:
        """A frame for this socket only (hello, pong, error): not in the conversation's sequence
        (`seq` 0), never stored, and it writes nothing."""
        await self.send(text_data=json.dumps(frame))

    async def _error(self, code: str, message: str, **extra: Any) -> None:
        await self._send_local(frames.error(conv_id=self.conv_id, code=code, message=message, **extra))

    async def _refuse(self, close_code: int, code: str, message: str, conv_id: Any = None) -> None:
        await self._send_local(frames.error(conv_id=conv_id or self.conv_id, code=code, message=message))
        await self.close(code=close_code)

    async def _send_hello(self, runtime: Any, unavailable: ProfileUnavailable | None = None) -> None:
        last_seq = await get_sequencer().current(self.conv_id)
        if runtime is not None:
            summary = runtime_summary(runtime)
        else:
            assert unavailable is not None, "a socket without a runtime knows why"
            summary = unavailable_summary(unavailable)
        await self._send_local(frames.hello(conv_id=self.conv_id, summary=summary, last_seq=last_seq))

    async def chat_frame(self, event: dict[str, Any]) -> None:
        """A conversation frame from the group (any worker), unless the replay sent it already."""
        frame = event["frame"]
        if self.seen.is_new(frame) and not self.gaps.was_sent(frame):
            await self._send_frame(frame)
            if self.gaps.has_hole() and self.repair is None:
                self.repair = asyncio.ensure_future(self._repair_gap())

    # ------------------------------------------------------------------ receiving

    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None) -> None:
        if self.conversation is None:
            return
        raw = text_data if text_data is not None else (bytes_data or b"").decode("utf-8", "replace")
        if len(raw.encode("utf-8")) > settings.CHAT_MAX_FRAME_BYTES:
            await self._error("frame_too_large", f"frames are limited to {settings.CHAT_MAX_FRAME_BYTES} bytes")
            return
        if not self.frame_limiter.allow():
            await self._error("rate_limited", "too many frames: slow down")
            return
        try:
            # A key given twice is refused; NaN is refused later with the field it is in (ensure_storable).
            frame = json.loads(raw, object_pairs_hook=unique_keys)
        except (ValueError, RecursionError):
            await self._error("bad_frame", "frames must be JSON objects")
            return
        if not isinstance(frame, dict) or not isinstance(frame.get("type"), str):
            await self._error("bad_frame", "frames must be JSON objects with a string `type`")
            return
        handler = self.HANDLERS.get(frame["type"])
        if handler is None:
            await self._error(
                "unknown_type", f"unknown frame type {frame['type']!r}; known: {', '.join(self.HANDLERS)}"
            )
            return
        try:
            await handler(self, frame)
        except Exception as exc:
            if is_outage(exc):  # the socket stays open: the client may try again in a few seconds
                exc = outage_error(exc)
            if not isinstance(exc, ProfileError):
                raise
            extra: dict[str, Any] = {"field": exc.field} if exc.field else {}
            if exc.retry_after:
                extra["retry_after"] = exc.retry_after
            extra.update(exc.extra)  # e.g. a budget's scope and when it resets
            await self._error(exc.code, exc.message, **extra)

    async def on_send(self, frame: dict[str, Any]) -> None:
        if not await self._signed_in():
            return
        if not self.limiter.allow():
            await self._error("rate_limited", f"at most {settings.CHAT_RATE_LIMIT_PER_MINUTE} messages a minute")
            return
        submitted = await turn_enqueue(
            conversation=self.conversation,
            user=self.user,
            prompt=frame.get("prompt"),
            request_overrides=frame.get("request_overrides"),
            idempotency_key=frame.get("idempotency_key"),
        )
        if not submitted.created:
            await self._error(
                "duplicate",
                "a turn with this idempotency_key exists already",
                turn_id=str(submitted.turn.pk),
                status=submitted.turn.status,
            )

    async def on_select(self, frame: dict[str, Any]) -> None:
        if "slug" not in frame:
            await self._error("bad_frame", "profile.select needs `slug` (null: follow my profile again)")
            return
        resolution = await db(services.conversation_select_profile)(
            conversation=self.conversation, user=self.user, slug=frame["slug"], registry=frame.get("registry")
        )
        await self._send_hello(runtime_for(self.mount.name, resolution))

    async def on_regenerate(self, frame: dict[str, Any]) -> None:
        """`chat.regenerate`: a new turn replaces the conversation's last turn, with the same prompt
        (regenerate, retry) or `prompt` (edit and resend)."""
        if not await self._signed_in():
            return
        if not self.limiter.allow():
            await self._error("rate_limited", f"at most {settings.CHAT_RATE_LIMIT_PER_MINUTE} messages a minute")
            return
        if not isinstance(frame.get("turn_id"), str):
            await self._error("bad_frame", "chat.regenerate needs `turn_id` (the conversation's last turn)")
            return
        submitted = await turn_enqueue(
            conversation=self.conversation,
            user=self.user,
            prompt=frame.get("prompt"),
            idempotency_key=frame.get("idempotency_key"),
            replaces=frame["turn_id"],
        )
        if not submitted.created:
            await self._error(
                "duplicate",
                "a turn with this idempotency_key exists already",
                turn_id=str(submitted.turn.pk),
                status=submitted.turn.status,
            )

    async def on_cancel(self, frame: dict[str, Any]) -> None:
        if not await dispatcher.request_cancel(self.conv_id):
            await self._error("nothing_to_cancel", "no turn is running in this conversation")

    async def on_ping(self, frame: dict[str, Any]) -> None:
        await self._send_local(frames.pong(conv_id=self.conv_id))

    HANDLERS = {
        "chat.send": on_send,
        "chat.regenerate": on_regenerate,
        "profile.select": on_select,
        "chat.cancel": on_cancel,
        "ws.ping": on_ping,
    }
