"""Group commit: the writes of all the turns a worker starts and ends at about the same time share one
transaction.

A turn's submission, its claim (with its runtime record and first frames) and its finish are each a
small write. Under load, hundreds of them a second each paid a transaction of their own (a commit, and
on SQLite the single writer lock). Here they queue for the process's writer, which commits what is
waiting together: while one batch commits, the writes that arrive meanwhile form the next one (at most
CHAT_WRITE_BATCH_SIZE); a writer whose last batch (in the last BUSY_SECONDS) held several writes also
waits CHAT_WRITE_BATCH_MS for more. One turn at a time commits each write at once (no added latency);
a write waits for at most one batch.

A write is a service that opens its own atomic block: alone, that block is the transaction (no
savepoint); in a batch, it is a savepoint inside the batch's transaction, so a write that fails or rolls
back (a claim that lost the race) takes only its own rows with it and keeps its rule (the conditional
UPDATEs of claims, leases and finishes work the same in a batch). A write that succeeds keeps its
savepoint until the batch commits (no RELEASE: a round trip fewer per write, the dearest part of a write on
PostgreSQL under load); a later write that fails rolls back to its own savepoint, which leaves the
earlier ones' rows alone.

Every write names the conversation whose rows it locks (`key`), and a batch runs its writes in key
order: two workers' batches then take row locks in one order, and cannot deadlock each other.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import logging
import time
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

from django.conf import settings
from django.db import DEFAULT_DB_ALIAS, connections, transaction

from .aio import run_db

log = logging.getLogger(__name__)
T = TypeVar("T")
BUSY_SECONDS = 0.02
Write = tuple[Callable[..., Any], dict[str, Any], asyncio.Future, str]


def _commit(batch: list[Write]) -> list[tuple[bool, Any]]:
    """One transaction for the batch, its writes in key order; each write's outcome, in batch order:
    (True, result) or (False, exception)."""
    outcomes: list[tuple[bool, Any]] = [(False, None)] * len(batch)
    if len(batch) == 1:  # its own atomic block is the transaction: no savepoint statements
        fn, kwargs, _, _ = batch[0]
        try:
            return [(True, fn(**kwargs))]
        except Exception as exc:
            return [(False, exc)]
    with transaction.atomic(), _savepoints_kept(connections[DEFAULT_DB_ALIAS]):
        for index in sorted(range(len(batch)), key=lambda i: batch[i][3]):
            fn, kwargs, _, _ = batch[index]
            try:  # its atomic block is a savepoint: a failed write rolls back its own rows only
                outcomes[index] = (True, fn(**kwargs))
            except Exception as exc:
                outcomes[index] = (False, exc)
    return outcomes


@contextlib.contextmanager
def _savepoints_kept(connection: Any) -> Iterator[None]:
    """Savepoints are not released when their atomic block succeeds (the transaction's end releases
    them); rolling back to one still works, and still drops only what came after it."""
    connection.savepoint_commit = _kept
    try:
        yield
    finally:
        del connection.savepoint_commit


def _kept(sid: str) -> None:
    return None


class GroupWriter:
    """One per process and event loop: `await writer.write(service, **kwargs)` runs the write service in
    the next batch and returns its result (or raises its exception)."""

    def __init__(self) -> None:
        self.loop: asyncio.AbstractEventLoop | None = None
        self._queue: list[Write] = []
        self._wake: asyncio.Event | None = None
        self._task: asyncio.Task | None = None
        self.batches = 0  # committed batches, for the bench and tests
        self._committed_at = float("-inf")  # monotonic
        self._last_size = 0  # writes in the last batch: more than one means concurrent turns

    def bind(self, loop: asyncio.AbstractEventLoop) -> None:
        """Serve writes on the server loop (started by the dispatcher)."""
        if self.loop is not loop:
            self.loop = loop
            self._queue = []
            self._wake = asyncio.Event()
            self._task = loop.create_task(self._serve(), context=contextvars.Context())

    async def write(self, fn: Callable[..., T], *, key: Any, **kwargs: Any) -> T:
        """`key`: the conversation whose rows the write locks (the order of writes in a batch)."""
        loop = asyncio.get_running_loop()
        if loop is not self.loop or self._wake is None:  # no server loop (a command, a test client)
            return await run_db(fn, **kwargs)
        future: asyncio.Future = loop.create_future()
        self._queue.append((fn, kwargs, future, str(key)))
        self._wake.set()
        return await future

    async def _serve(self) -> None:
        assert self._wake is not None
        while True:
            await self._wake.wait()
            self._wake.clear()
            busy = self._last_size > 1 and time.monotonic() - self._committed_at < BUSY_SECONDS
            if busy and settings.CHAT_WRITE_BATCH_MS and len(self._queue) < settings.CHAT_WRITE_BATCH_SIZE:
                await asyncio.sleep(settings.CHAT_WRITE_BATCH_MS / 1000)  # let more concurrent turns join
            while self._queue:
                batch = self._queue[: settings.CHAT_WRITE_BATCH_SIZE]
                del self._queue[: len(batch)]
                await self._run(batch)

    async def _run(self, batch: list[Write]) -> None:
        try:
            outcomes = await run_db(_commit, batch)
        except asyncio.CancelledError:
            for _, _, future, _ in batch:
                if not future.done():
                    future.cancel()
            raise
        except Exception as exc:  # the batch could not commit (an outage): every write gets the error
            outcomes = [(False, exc)] * len(batch)
        else:
            self.batches += 1
        self._committed_at, self._last_size = time.monotonic(), len(batch)
        for (_, _, future, _), (ok, value) in zip(batch, outcomes, strict=True):
            if future.done():  # its caller went away
                continue
            if ok:
                future.set_result(value)
            else:
                future.set_exception(value)


writer = GroupWriter()
