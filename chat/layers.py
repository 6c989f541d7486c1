"""The channel layers: the embedded in-memory one, whose hot path does not walk every idle socket, and
channels-redis' pub/sub layer with its publishes pipelined."""

from __future__ import annotations

import asyncio
import contextlib
import copy
import time
from copy import deepcopy
from time import monotonic
from typing import Any

from channels.exceptions import ChannelFull
from channels.layers import InMemoryChannelLayer as _ChannelsInMemoryChannelLayer
from channels_redis import pubsub
from channels_redis.utils import decode_hosts

_IMMUTABLE = frozenset({str, int, float, bool, type(None), bytes})


def copied(value: Any) -> Any:
    """A deep copy of a message: its dicts and lists copied, its strings, numbers and None shared (they
    cannot change), anything else deep-copied. Messages are JSON-like (a serialising layer takes nothing
    else); `copy.deepcopy` paid its memo and dispatch for each value, about 4x the time of this."""
    kind = type(value)
    if kind is dict:
        return {key: item if type(item) in _IMMUTABLE else copied(item) for key, item in value.items()}
    if kind is list:
        return [item if type(item) in _IMMUTABLE else copied(item) for item in value]
    if kind in _IMMUTABLE:
        return value
    return deepcopy(value)


class InMemoryChannelLayer(_ChannelsInMemoryChannelLayer):
    """channels' InMemoryChannelLayer, with the full expiry sweep run at most once per `sweep_interval`.

    Why: channels runs `_clean_expired()` on every receive and group_send, and it walks every channel
    and every group. Each open websocket keeps a (mostly empty) queue and a group membership, so with
    5,000 idle sockets that sweep took 75% of the CPU and one active socket's turn rate fell from
    14.8 to 3.5 turns/s. Here the sweep is throttled (monotonic clock), and the operations check only
    what they touch, so nothing expired is ever delivered:

    - receive drops expired messages at the head of its own channel (and, like the sweep, removes
      that channel from all groups) instead of returning them;
    - send on a full channel first drops that channel's expired messages, as a sweep would have;
    - group_send first ends the group's memberships older than `group_expiry`.

    Idle channels' expired messages and memberships are still reclaimed by the sweep, at most
    `sweep_interval` seconds later than channels would. Capacity, ChannelFull, flush and close are
    unchanged, except that `channel_capacity` globs work (channels' own class fails on them). CONFIG accepts `sweep_interval` (seconds, default 1.0) besides channels' options.
    """

    def __init__(self, *args: Any, sweep_interval: float = 1.0, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # channels stores the raw {glob: capacity} dict, which get_capacity cannot read: compile it.
        self.channel_capacity: Any = self.compile_capacities(self.channel_capacity)
        self.sweep_interval = sweep_interval
        self._next_sweep = float("-inf")

    def _clean_expired(self) -> None:
        now = monotonic()
        if now < self._next_sweep:
            return
        self._next_sweep = now + self.sweep_interval
        super()._clean_expired()

    def _drop_expired(self, channel: str, queue: asyncio.Queue) -> bool:
        """Drop the expired messages at the head of one channel's queue; True if any was."""
        now = time.time()
        dropped = False
        while not queue.empty() and queue._queue[0][0] < now:  # type: ignore[attr-defined]
            queue.get_nowait()
            dropped = True
        if dropped:
            self._remove_from_groups(channel)
        return dropped

    def _queue(self, channel: str) -> asyncio.Queue:
        """The channel's queue, made (and its capacity looked up) only when it has none: channels builds a
        queue, and matches the capacity globs, on every send and receive."""
        queue = self.channels.get(channel)
        if queue is None:
            queue = self.channels[channel] = asyncio.Queue(maxsize=self.get_capacity(channel))
        return queue

    async def send(self, channel: str, message: dict) -> None:
        """channels' send (each receiver gets its own deep copy, as a serialising layer would give it), with
        the queue looked up once; a full channel first drops its expired messages."""
        assert isinstance(message, dict), "message is not a dict"
        self.require_valid_channel_name(channel)
        queue = self._queue(channel)
        try:
            queue.put_nowait((time.time() + self.expiry, copied(message)))
        except asyncio.QueueFull:
            if not self._drop_expired(channel, queue):
                raise ChannelFull(channel) from None
            try:
                queue.put_nowait((time.time() + self.expiry, copied(message)))
            except asyncio.QueueFull:
                raise ChannelFull(channel) from None

    async def receive(self, channel: str) -> dict:
        self.require_valid_channel_name(channel)
        self._clean_expired()
        queue = self._queue(channel)
        removed_from_groups = False
        try:
            while True:
                expires, message = await queue.get()
                if expires >= time.time():
                    return message
                if not removed_from_groups:  # an expired message: the sweep would drop it and ungroup
                    self._remove_from_groups(channel)
                    removed_from_groups = True
        finally:
            if queue.empty():
                self.channels.pop(channel, None)

    async def group_send(self, group: str, message: dict) -> None:
        """Each member gets its own copy, put on its queue in turn: channels starts a task per member
        and waits for them with `as_completed` (a put never waits), which cost more than the frame."""
        self.require_valid_group_name(group)
        self._clean_expired()
        members = self.groups.get(group)
        if not members:
            return
        timeout = int(time.time()) - self.group_expiry
        for name, joined in list(members.items()):
            if joined and joined < timeout:
                members.pop(name, None)
        for channel in list(members):
            with contextlib.suppress(ChannelFull):  # as channels: a full member misses the frame
                await self.send(channel, message)


class _PipelinedShard(pubsub.RedisSingleShardConnection):
    """channels-redis publishes one message per round trip to Redis, one at a time (under the shard's
    lock, so in order). Here the messages published while a round trip is under way go together in the
    next one: one pipeline of PUBLISHes, still in the order they were published (a conversation's frames
    reach its sockets in order), each caller getting the pipeline's error when Redis is away. Many
    streams fan out frames at once; one by one, each paid a round trip and the client's per-command
    work."""

    def __init__(self, host: Any, channel_layer: Any) -> None:
        super().__init__(host, channel_layer)
        self._outbox: list[tuple[str, bytes, asyncio.Future]] = []
        self._sender: asyncio.Task | None = None

    async def publish(self, channel: str, message: bytes) -> None:
        loop = asyncio.get_running_loop()
        future = loop.create_future()
        self._outbox.append((channel, message, future))
        if self._sender is None or self._sender.done():
            self._sender = loop.create_task(self._send_outbox())
        await future

    async def _send_outbox(self) -> None:
        batch: list[tuple[str, bytes, asyncio.Future]] = []
        try:
            while self._outbox:
                batch, self._outbox = self._outbox, []
                try:
                    async with self._lock:
                        self._ensure_redis()
                        pipe = self._redis.pipeline(transaction=False)
                        for channel, message, _ in batch:
                            pipe.publish(channel, message)
                        await pipe.execute()
                except asyncio.CancelledError:
                    raise
                except Exception as exc:  # Redis away: every message of the round trip is lost, as alone
                    for _, _, future in batch:
                        if not future.done():
                            future.set_exception(copy.copy(exc))
                else:
                    for _, _, future in batch:
                        if not future.done():
                            future.set_result(None)
                batch = []
        finally:  # cancelled (the loop is closing): so are the publishes still waiting
            for _, _, future in batch + self._outbox:
                future.cancel()
            self._outbox = []


class _PipelinedLoopLayer(pubsub.RedisPubSubLoopLayer):
    def __init__(self, hosts: Any = None, *args: Any, **kwargs: Any) -> None:
        super().__init__(hosts, *args, **kwargs)
        self._shards = [_PipelinedShard(host, self) for host in decode_hosts(hosts)]


class RedisPubSubChannelLayer(pubsub.RedisPubSubChannelLayer):
    """channels-redis' pub/sub layer (`CHANNEL_LAYERS` with `REDIS_URL`) whose publishes are pipelined
    (`_PipelinedShard`); everything else is channels-redis' own."""

    def _get_layer(self) -> Any:
        loop = asyncio.get_running_loop()
        layer = self._layers.get(loop)
        if layer is None:
            layer = self._layers[loop] = _PipelinedLoopLayer(*self._args, **self._kwargs, channel_layer=self)
            pubsub._wrap_close(self, loop)
        return layer
