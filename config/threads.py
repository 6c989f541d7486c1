"""Synchronous HTTP views on a bounded set of threads.

Django's ASGI handler gives each request a thread of its own for its synchronous parts (asgiref's
ThreadSensitiveContext): a burst of 500 requests starts 500 threads, each with a database connection.
Here every HTTP request runs its synchronous parts on one of HTTP_SYNC_THREADS single-thread executors
(the least busy one), always the same one for the whole request, as Django requires. Async views (the
OpenAI-compatible API, `POST …/messages`) hold no thread while they wait.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from typing import Any

from asgiref.sync import ThreadSensitiveContext


class BoundedSyncThreads:
    """ASGI middleware: HTTP requests share `size` threads for their synchronous code."""

    def __init__(self, app: Any, *, size: int) -> None:
        self.app = app
        self.executors = [ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"http-{n}") for n in range(size)]
        self.busy = [0] * size  # requests in progress per thread

    async def __call__(self, scope: Any, receive: Any, send: Any) -> Any:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        index = min(range(len(self.busy)), key=self.busy.__getitem__)
        self.busy[index] += 1
        try:
            # Django's own (inner) ThreadSensitiveContext keeps this one: the request's sync code runs here.
            async with ThreadSensitiveContext(executor=self.executors[index]):
                return await self.app(scope, receive, send)
        finally:
            self.busy[index] -= 1
