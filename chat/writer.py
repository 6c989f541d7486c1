"""Group commit: the writes of all the turns a worker starts and ends at about the same time share one
transaction.

A turn's submission, its claim (with its runtime record and first frames) and its finish are each a
small write. Under load, hundreds of them a second each paid a transaction of their own (a commit, and
on SQLite the single writer lock). Here they queue for the process's writer, which commits what is
waiting together: while one batch commits, the writes that arrive meanwhile form the next one (at most
CHAT_WRITE_BATCH_SIZE), so an idle worker commits a write at once and a busy one shares commits; a write
waits for at most one batch. CHAT_WRITE_BATCH_MS (0 by default) adds a wait before each batch. Each write keeps its own atomic block, a savepoint inside the batch: a
write that fails or rolls back (a claim that lost the race) takes only its own rows with it, and keeps
its rule (the conditional UPDATEs of claims, leases and finishes work the same in a batch).
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
from collections.abc import Callable
from typing import Any, TypeVar

from django.conf import settings
from django.db import transaction

from .aio import run_db

log = logging.getLogger(__name__)
T = TypeVar("T")
Write = tuple[Callable[..., Any], dict[str, Any], asyncio.Future]


def _commit(batch: list[Write]) -> list[tuple[bool, Any]]:
    """One transaction for the batch; each write's outcome (True, result) or (False, exception)."""
    outcomes: list[tuple[bool, Any]] = []
    with transaction.atomic():
        for fn, kwargs, _ in batch:
            try:
                with transaction.atomic():  # a savepoint: a failed write rolls back its own rows only
                    outcomes.append((True, fn(**kwargs)))
            except Exception as exc:
                outcomes.append((False, exc))
    return outcomes


class GroupWriter:
    """One per process and event loop: `await writer.write(service, **kwargs)` runs the write service in
    the next batch and returns its result (or raises its exception)."""

    def __init__(self) -> None:
        self.loop: asyncio.AbstractEventLoop | None = None
        self._queue: list[Write] = []
        self._wake: asyncio.Event | None = None
        self._task: asyncio.Task | None = None
        self.batches = 0  # committed batches, for the bench and tests

    def bind(self, loop: asyncio.AbstractEventLoop) -> None:
        """Serve writes on the server loop (started by the dispatcher)."""
        if self.loop is not loop:
            self.loop = loop
            self._queue = []
            self._wake = asyncio.Event()
            self._task = loop.create_task(self._serve(), context=contextvars.Context())

    async def write(self, fn: Callable[..., T], **kwargs: Any) -> T:
        loop = asyncio.get_running_loop()
        if loop is not self.loop or self._wake is None:  # no server loop (a command, a test client)
            return await run_db(fn, **kwargs)
        future: asyncio.Future = loop.create_future()
        self._queue.append((fn, kwargs, future))
        self._wake.set()
        return await future

    async def _serve(self) -> None:
        assert self._wake is not None
        while True:
            await self._wake.wait()
            self._wake.clear()
            if settings.CHAT_WRITE_BATCH_MS and len(self._queue) < settings.CHAT_WRITE_BATCH_SIZE:
                await asyncio.sleep(settings.CHAT_WRITE_BATCH_MS / 1000)  # let more concurrent turns join
            while self._queue:
                batch = self._queue[: settings.CHAT_WRITE_BATCH_SIZE]
                del self._queue[: len(batch)]
                await self._run(batch)

    async def _run(self, batch: list[Write]) -> None:
        try:
            outcomes = await run_db(_commit, batch)
        except asyncio.CancelledError:
            for _, _, future in batch:
                if not future.done():
                    future.cancel()
            raise
        except Exception as exc:  # the batch could not commit (an outage): every write gets the error
            outcomes = [(False, exc)] * len(batch)
        else:
            self.batches += 1
        for (_, _, future), (ok, value) in zip(batch, outcomes, strict=True):
            if future.done():  # its caller went away
                continue
            if ok:
                future.set_result(value)
            else:
                future.set_exception(value)


writer = GroupWriter()
