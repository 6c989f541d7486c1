"""Group commit: the writes of all the turns a worker starts and ends at about the same time share one
transaction.

A turn's submission, its claim (with its runtime record and first frames) and its finish are each a
small write. Under load, hundreds of them a second each paid a transaction of their own (a commit, and
on SQLite the single writer lock). Here they queue for the process's writer, which commits what is
waiting together: while one batch commits, the writes that arrive meanwhile form the next one (at most
CHAT_WRITE_BATCH_SIZE); a writer whose last batch (in the last BUSY_SECONDS) held several writes also
waits CHAT_WRITE_BATCH_MS for more. One turn at a time commits each write at once (no added latency);
a write waits for at most one batch.

A write is a service that opens its own atomic block: alone, that block is the transaction. In a batch,
the writes first run without savepoints (their blocks join the batch's transaction: no SAVEPOINT round
trip per write, the dearest part of a write on PostgreSQL under load), and their new turns and frames
are inserted together at the end (`profiles.prepared.inserts_held`: a statement per table, not per
write; a read that must see them inserts them first). If one of them fails or rolls back
(a claim that lost the race), the whole batch rolls back, the model instances the writes were given are
put back as they were, and the batch runs again with a savepoint per write, so that the failing write
takes only its own rows with it and keeps its rule (the conditional UPDATEs of claims, leases and
finishes work the same in a batch). There a write that succeeds keeps its savepoint until the batch
commits (no RELEASE); a later write that fails rolls back to its own savepoint, which leaves the earlier
ones' rows alone. A write therefore changes nothing outside the database and its own arguments before
its batch commits: it may run twice.

Every write names the conversation whose rows it locks (`key`), and a batch runs its writes in key
order: two workers' batches then take row locks in one order, and cannot deadlock each other.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import copy
import logging
import time
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

from django.conf import settings
from django.db import DEFAULT_DB_ALIAS, connections, transaction
from django.db.models import Model

from profiles.prepared import inserts_held

from .aio import run_db

log = logging.getLogger(__name__)
T = TypeVar("T")
BUSY_SECONDS = 0.02
Write = tuple[Callable[..., Any], dict[str, Any], asyncio.Future, str]


class _WriteFailed(Exception):
    """A write failed or rolled back in a batch without savepoints: the batch runs again with them."""


def _commit(batch: list[Write]) -> list[tuple[bool, Any]]:
    """One transaction for the batch, its writes in key order; each write's outcome, in batch order:
    (True, result) or (False, exception)."""
    if len(batch) == 1:  # its own atomic block is the transaction: no savepoint statements
        fn, kwargs, _, _ = batch[0]
        try:
            return [(True, fn(**kwargs))]
        except Exception as exc:
            return [(False, exc)]
    order = sorted(range(len(batch)), key=lambda i: batch[i][3])
    connection = connections[DEFAULT_DB_ALIAS]
    saved = [
        _instance_saved(value) for _, kwargs, _, _ in batch for value in kwargs.values() if isinstance(value, Model)
    ]
    try:
        return _commit_without_savepoints(batch, order, connection)
    except _WriteFailed:  # rolled back whole: what the first try changed in the writes' instances goes too
        for instance, attributes, state in saved:
            instance.__dict__.clear()
            instance.__dict__.update(attributes)
            instance._state = state
    outcomes: list[tuple[bool, Any]] = [(False, None)] * len(batch)
    with transaction.atomic(), _savepoints_kept(connection):
        for index in order:
            fn, kwargs, _, _ = batch[index]
            try:  # its atomic block is a savepoint: a failed write rolls back its own rows only
                outcomes[index] = (True, fn(**kwargs))
            except Exception as exc:
                outcomes[index] = (False, exc)
    return outcomes


def _commit_without_savepoints(batch: list[Write], order: list[int], connection: Any) -> list[tuple[bool, Any]]:
    """Every write's atomic block joins the batch's transaction, and the rows of its turns and frames wait
    to be inserted with everyone's (a read that must see them, a budget's sum or an idempotency key's
    lookup, inserts them first: `profiles.prepared.flush_held`); `_WriteFailed` (the transaction rolled
    back) as soon as one fails or marks it for rollback, or those rows do not insert."""
    outcomes: list[tuple[bool, Any]] = [(False, None)] * len(batch)
    with transaction.atomic(), _savepoints_skipped(connection), inserts_held() as held:
        for index in order:
            fn, kwargs, _, _ = batch[index]
            try:
                outcomes[index] = (True, fn(**kwargs))
            except Exception as exc:
                raise _WriteFailed from exc
            if connection.needs_rollback:  # it rolled back (`set_rollback`): so would the batch
                raise _WriteFailed
        try:
            held.flush()
        except Exception as exc:
            raise _WriteFailed from exc
    return outcomes


@contextlib.contextmanager
def _savepoints_skipped(connection: Any) -> Iterator[None]:
    """Atomic blocks make no savepoint, as where savepoints are not allowed: a block that fails marks the
    whole transaction for rollback."""
    connection.savepoint = _nothing
    try:
        yield
    finally:
        del connection.savepoint


@contextlib.contextmanager
def _savepoints_kept(connection: Any) -> Iterator[None]:
    """Savepoints are not released when their atomic block succeeds (the transaction's end releases
    them); rolling back to one still works, and still drops only what came after it."""
    connection.savepoint_commit = _nothing
    try:
        yield
    finally:
        del connection.savepoint_commit


def _nothing(*args: Any) -> None:
    return None


def _instance_saved(instance: Model) -> tuple[Model, dict[str, Any], Any]:
    """What puts `instance` back as it is now: its attributes and its state (saved or not)."""
    return instance, dict(instance.__dict__), copy.copy(instance._state)


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
