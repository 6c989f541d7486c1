"""Conversation sequence numbers without a database transaction per frame.

Every conversation frame carries a `seq` that increases strictly within the conversation, across
workers. The counter lives where the channel layer lives: in the process for the in-memory layer
(one process), in Redis for the Redis layer (every worker). The database keeps a reservation mark
(`Conversation.last_seq`) at least as high as any number handed out: numbers are reserved in blocks
of `BLOCK`, so a conversation costs one database write per `BLOCK` frames, and a counter that is
lost (a process restart, a Redis flush) starts again above every number already sent. Numbers are
therefore strictly increasing but not contiguous.

While Redis does not answer, the process that runs a conversation's turn numbers its frames on from
the last number it had (`running_here`), reserving them in the database first; when Redis answers
again its counter is raised above them before it hands out another. Nobody else numbers that
conversation meanwhile: a submission needs Redis (it is refused as unavailable).
"""

from __future__ import annotations

import asyncio
import copy
import hashlib
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

from django.conf import settings
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import NoScriptError
from redis.exceptions import TimeoutError as RedisTimeoutError

from profiles.prepared import Param, Select, Update

from .aio import run_db

BLOCK = 10_000
LOCAL_CAPACITY = 100_000  # conversations whose counter a process keeps (least recently used go)
REDIS_TTL_SECONDS = 7 * 24 * 3600


def _floor(conv_id: Any) -> int:
    row = _FLOOR.row(conv_id=conv_id)
    return (row[0] if row else 0) or 0


def reservation_for(seq: int) -> int:
    """The mark reserved when `seq` is handed out past the last one. A conversation numbered before its
    row exists (stored with its first turn) gets it as its initial `last_seq`: the reservation's UPDATE
    found no row."""
    return seq + BLOCK


# A new conversation's row is stored with this mark (`Conversation.last_seq`): its first block of numbers
# is reserved with it, and the process that made it (`prime`) numbers them without a database write.
FIRST_MARK = reservation_for(0)


def _reserve(conv_id: Any, upto: int) -> None:
    _RESERVE(conv_id=conv_id, upto=upto)


# Compiled once (`profiles.prepared`): the reservation runs on every conversation's first frames.
_FLOOR = Select(lambda: _conversations().filter(pk=Param("conv_id")).order_by().values_list("last_seq")[:1])
_RESERVE = Update(
    lambda: _conversations().filter(pk=Param("conv_id"), last_seq__lt=Param("upto")), last_seq=Param("upto")
)


def _conversations() -> Any:
    from .models import Conversation

    return Conversation.objects.all()


class LocalSequencer:
    """One process (the in-memory channel layer): counters in a bounded dict."""

    def __init__(self) -> None:
        self.values: OrderedDict[str, int] = OrderedDict()
        self.marks: dict[str, int] = {}
        self.pending: dict[str, asyncio.Future] = {}

    async def _load(self, key: str, conv_id: Any) -> None:
        floor = await run_db(_floor, conv_id)
        if key not in self.values:  # another caller may have loaded it meanwhile
            self.values[key] = self.marks[key] = floor
            while len(self.values) > LOCAL_CAPACITY:
                old, _ = self.values.popitem(last=False)
                self.marks.pop(old, None)

    async def current(self, conv_id: Any) -> int:
        key = str(conv_id)
        if key not in self.values:
            await self._load(key, conv_id)
        return self.values[key]

    def prime(self, conv_id: Any, *, mark: int) -> None:
        """A conversation just created (its row stored, or to be stored, with `last_seq` = `mark`) has
        numbered nothing: its counter starts at 0, and numbers up to `mark` need no write."""
        key = str(conv_id)
        self.values.setdefault(key, 0)
        self.marks.setdefault(key, mark)

    async def next(self, conv_id: Any, *, running_here: bool = False) -> int:
        key = str(conv_id)
        if key not in self.values:
            await self._load(key, conv_id)
        self.values.move_to_end(key)
        value = self.values[key] = self.values[key] + 1
        if value > self.marks[key]:
            mark, self.marks[key] = self.marks[key], reservation_for(value)
            self.pending[key] = future = asyncio.ensure_future(run_db(_reserve, conv_id, reservation_for(value)))
            try:
                await future
            except BaseException:
                self.marks[key] = mark  # not reserved: the next number tries again
                raise
            finally:
                if self.pending.get(key) is future:
                    del self.pending[key]
        elif key in self.pending:  # the reservation covering this number is still being written
            await asyncio.shield(self.pending[key])
        return value


# KEYS: counter, mark. ARGV: ttl, block. Returns {value, must_reserve} or {-1, 0} when the counter
# is missing (the caller loads the floor from the database and calls INIT).
_NEXT = """
if redis.call('EXISTS', KEYS[1]) == 0 then return {-1, 0} end
local v = redis.call('INCR', KEYS[1])
local m = tonumber(redis.call('GET', KEYS[2]) or '0')
redis.call('EXPIRE', KEYS[1], ARGV[1])
redis.call('EXPIRE', KEYS[2], ARGV[1])
if v > m then
  redis.call('SET', KEYS[2], v + tonumber(ARGV[2]), 'EX', ARGV[1])
  return {v, 1}
end
return {v, 0}
"""
# KEYS: counter, mark. ARGV: floor, ttl[, mark]. Raises the counter to at least the floor and the mark
# to at least the mark (default: the floor).
_INIT = """
local floors = {tonumber(ARGV[1]), tonumber(ARGV[3] or ARGV[1])}
for i, k in ipairs(KEYS) do
  local cur = tonumber(redis.call('GET', k) or '-1')
  if cur < floors[i] then redis.call('SET', k, floors[i], 'EX', ARGV[2]) end
end
return redis.call('GET', KEYS[1])
"""


class RedisSequencer:
    """Several workers: one counter per conversation in Redis (atomic Lua scripts)."""

    def __init__(self, url: str) -> None:
        self.url = url
        self._clients: dict[int, Any] = {}
        self._last: OrderedDict[str, int] = OrderedDict()  # the last number handed out here, per conversation
        self._reserved: dict[str, int] = {}  # numbered alone: reserved in the database up to
        self._ahead: dict[str, int] = {}  # numbered alone up to: Redis' counter is raised first
        self._primed: OrderedDict[str, int] = OrderedDict()  # created here, numbered nothing: their mark
        self._numbers = _Pipelined(self._client, _NEXT, REDIS_TTL_SECONDS, BLOCK)

    def _client(self) -> Any:
        import redis.asyncio as redis

        loop = asyncio.get_running_loop()
        client = self._clients.get(id(loop))
        if client is None or client[0] is not loop:
            # Bounded: past the pool's size a caller waits for a connection instead of failing.
            pool = redis.BlockingConnectionPool.from_url(
                self.url,
                max_connections=64,
                timeout=10,
                socket_connect_timeout=settings.REDIS_CONNECT_TIMEOUT,
                retry=Retry(NoBackoff(), 1),  # a Redis that is away fails fast: the caller falls back
            )
            client = self._clients[id(loop)] = (loop, redis.Redis(connection_pool=pool))
        return client[1]

    @staticmethod
    def _keys(conv_id: Any) -> list[str]:
        return [f"chat:seq:{conv_id}", f"chat:seqmark:{conv_id}"]

    async def _init(self, conv_id: Any) -> int:
        floor = await run_db(_floor, conv_id)
        return int(await self._client().eval(_INIT, 2, *self._keys(conv_id), floor, REDIS_TTL_SECONDS))

    async def current(self, conv_id: Any) -> int:
        value = await self._client().get(self._keys(conv_id)[0])
        if value is not None:
            return int(value)
        return 0 if str(conv_id) in self._primed else await self._init(conv_id)

    def prime(self, conv_id: Any, *, mark: int) -> None:
        """A conversation just created (its row stored, or to be stored, with `last_seq` = `mark`): its
        first number starts the Redis counter at 0 and the mark there without reading the database."""
        self._primed[str(conv_id)] = mark
        while len(self._primed) > LOCAL_CAPACITY:
            self._primed.popitem(last=False)

    async def next(self, conv_id: Any, *, running_here: bool = False) -> int:
        key = str(conv_id)
        try:
            value = await self._next(conv_id, key)
        except (RedisConnectionError, RedisTimeoutError):
            if not running_here or key not in self._last:
                raise
            value = await self._next_alone(conv_id, key)
        self._last[key] = value
        self._last.move_to_end(key)
        while len(self._last) > LOCAL_CAPACITY:
            old, _ = self._last.popitem(last=False)
            self._reserved.pop(old, None)
        return value

    async def _next(self, conv_id: Any, key: str) -> int:
        keys = self._keys(conv_id)
        if key in self._ahead:  # numbered alone during an outage: Redis' counter goes above that first
            await self._client().eval(_INIT, 2, *keys, self._ahead[key], REDIS_TTL_SECONDS)
            del self._ahead[key]
            self._reserved.pop(key, None)
        for _ in range(3):
            value, reserve = await self._numbers.call(keys)
            value = int(value)
            if value >= 0:
                self._primed.pop(key, None)
                if int(reserve):
                    await run_db(_reserve, conv_id, reservation_for(value))
                return value
            mark = self._primed.pop(key, None)
            if mark is not None:  # created here: nothing numbered, its row holds the mark
                await self._client().eval(_INIT, 2, *keys, 0, REDIS_TTL_SECONDS, mark)
            else:
                await self._init(conv_id)
        raise RuntimeError(f"could not initialise the sequence counter of conversation {conv_id}")

    async def _next_alone(self, conv_id: Any, key: str) -> int:
        """Redis is away: the next number after the last one handed out here, reserved in the database
        (so a counter Redis lost starts above it) before it is used."""
        value = self._last[key] + 1
        if value > self._reserved.get(key, 0):
            await run_db(_reserve, conv_id, reservation_for(value))
            self._reserved[key] = reservation_for(value)
        self._ahead[key] = value
        return value


class _Pipelined:
    """Calls of one Lua script asked for in the same turn of the event loop go to Redis together: one
    connection taken from the pool, one write and one read for all of them (a pipeline, not a
    transaction: each call is its own atomic script). Many streams number their frames at once; one by
    one, each call paid the client's per-command work and a round trip of its own. A caller gets its own
    reply, or the error of the pipeline (Redis away) as it would have alone."""

    def __init__(self, client: Callable[[], Any], script: str, *args: Any) -> None:
        self.client, self.script, self.args = client, script, args
        self.sha = hashlib.sha1(script.encode()).hexdigest()  # noqa: S324 - Redis names a script by it
        self._waiting: list[tuple[list[str], asyncio.Future]] = []
        self._sending: set[asyncio.Task] = set()

    async def call(self, keys: list[str]) -> Any:
        loop = asyncio.get_running_loop()
        future = loop.create_future()
        self._waiting.append((keys, future))
        if len(self._waiting) == 1:  # the first of this turn of the loop: the others join it
            loop.call_soon(self._send_waiting)
        return await future

    def _send_waiting(self) -> None:
        calls, self._waiting = self._waiting, []
        task = asyncio.get_running_loop().create_task(self._send(calls))
        self._sending.add(task)
        task.add_done_callback(self._sending.discard)

    async def _send(self, calls: list[tuple[list[str], asyncio.Future]]) -> None:
        try:
            client = self.client()
            pipe = client.pipeline(transaction=False)
            for keys, _ in calls:
                pipe.evalsha(self.sha, len(keys), *keys, *self.args)
            replies = await pipe.execute(raise_on_error=False)
            if any(isinstance(reply, NoScriptError) for reply in replies):  # Redis restarted or was flushed
                await client.script_load(self.script)
                replies = [
                    await client.evalsha(self.sha, len(keys), *keys, *self.args)
                    if isinstance(reply, NoScriptError)
                    else reply
                    for (keys, _), reply in zip(calls, replies, strict=True)
                ]
        except asyncio.CancelledError:  # the loop is going away: so are its callers
            for _, future in calls:
                future.cancel()
            raise
        except Exception as exc:  # the pipeline failed whole (Redis away): every caller gets the error
            for _, future in calls:
                if not future.done():
                    future.set_exception(copy.copy(exc))
            return
        for (_, future), reply in zip(calls, replies, strict=True):
            if future.done():  # its caller went away
                continue
            if isinstance(reply, Exception):
                future.set_exception(reply)
            else:
                future.set_result(reply)


_sequencer: LocalSequencer | RedisSequencer | None = None


def get_sequencer() -> LocalSequencer | RedisSequencer:
    global _sequencer
    if _sequencer is None:
        _sequencer = RedisSequencer(settings.REDIS_URL) if settings.REDIS_URL else LocalSequencer()
    return _sequencer


def reset() -> None:
    """Forget counters (tests: each test database starts again from 0)."""
    global _sequencer
    _sequencer = None
