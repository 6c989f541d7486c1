"""Blocking work off the event loop, on bounded pools of threads (never one shared thread).

Channels' `database_sync_to_async` sends every call of a process through ONE thread, so one slow
query or tool stalls every conversation. Here database work runs on `CHAT_DB_THREADS` threads and
tool calls on their own `CHAT_TOOL_THREADS` threads: a tool that hangs can hold a tool thread, never
the database pool or the event loop. Each thread keeps its database connection (CONN_MAX_AGE).
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

from channels.db import DatabaseSyncToAsync
from django.conf import settings
from django.db import close_old_connections, connections

T = TypeVar("T")

_lock = threading.Lock()
_pools: dict[str, ThreadPoolExecutor] = {}


def _pool(name: str) -> ThreadPoolExecutor:
    pool = _pools.get(name)
    if pool is None:
        with _lock:
            pool = _pools.get(name)
            if pool is None:
                size = settings.CHAT_DB_THREADS if name == "db" else settings.CHAT_TOOL_THREADS
                pool = _pools[name] = ThreadPoolExecutor(max_workers=size, thread_name_prefix=f"chat-{name}")
    return pool


def _cleanly(fn: Callable[..., T], args: tuple[Any, ...], kwargs: dict[str, Any]) -> T:
    """On a pool thread: Django's connection clean-up around the call, as for a request."""
    close_old_connections()
    try:
        return fn(*args, **kwargs)
    finally:
        close_old_connections()


async def run_db(fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """Run ORM code on the database pool, in a copy of the caller's context, with Django's connection
    clean-up around it. A plain executor call: asgiref's SyncToAsync adds a per-call cost that a turn
    (several database calls) paid each time, and nothing here needs its thread-sensitive machinery."""
    context = contextvars.copy_context()
    loop = asyncio.get_running_loop()
    return await loop.run_in_executor(_pool("db"), context.run, _cleanly, fn, args, kwargs)


def db(fn: Callable[..., T]) -> Callable[..., Any]:
    """`await db(fn)(*args)`: the decorator form of `run_db` (the pool is looked up at call time)."""

    @functools.wraps(fn)
    async def call(*args: Any, **kwargs: Any) -> T:
        return await run_db(fn, *args, **kwargs)

    return call


async def run_tool(fn: Callable[..., T], *args: Any) -> T:
    """Run a tool's implementation on the tool pool (tools may use the database too)."""
    return await DatabaseSyncToAsync(fn, thread_sensitive=False, executor=_pool("tool"))(*args)


def _close_then_wait(barrier: threading.Barrier) -> None:
    connections.close_all()
    barrier.wait()


def shutdown() -> None:
    """Stop the pools and close their threads' connections (tests; PostgreSQL refuses to drop a
    database that still has connections)."""
    with _lock:
        pools = list(_pools.values())
        _pools.clear()
    for pool in pools:
        # Connections are per thread: the barrier makes every thread of the pool run one close.
        size = pool._max_workers  # the executor keeps no public size
        barrier = threading.Barrier(size, timeout=5)
        for _ in range(size):
            pool.submit(_close_then_wait, barrier)
        pool.shutdown(wait=True)
