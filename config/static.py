"""WhiteNoise on the event loop.

WhiteNoise's middleware is synchronous only. Under ASGI, Django then runs it, and with it every request
below it, on the request's sync thread (one of HTTP_SYNC_THREADS), and that thread waits while the async
views below it run: a chat completion waiting for its turn held a thread for its whole duration, so at
most HTTP_SYNC_THREADS completions made progress at once. This subclass has both modes: a request that
is not for a static file passes straight through on the event loop; a static file is looked up (a dict,
or the disk when autorefresh is on) and served on a thread, as before.
"""

from __future__ import annotations

from typing import Any

from asgiref.sync import iscoroutinefunction, markcoroutinefunction, sync_to_async
from whitenoise.middleware import WhiteNoiseMiddleware


class AsyncWhiteNoiseMiddleware(WhiteNoiseMiddleware):
    sync_capable = True
    async_capable = True

    def __init__(self, get_response: Any = None, **kwargs: Any) -> None:
        super().__init__(get_response, **kwargs)
        self.async_mode = iscoroutinefunction(get_response)
        if self.async_mode:
            markcoroutinefunction(self)

    def __call__(self, request: Any) -> Any:
        if self.async_mode:
            return self.__acall__(request)
        return super().__call__(request)

    async def __acall__(self, request: Any) -> Any:
        if self.autorefresh:
            static_file = await sync_to_async(self.find_file)(request.path_info)
        else:
            static_file = self.files.get(request.path_info)
        if static_file is not None:
            return await sync_to_async(self.serve)(static_file, request)
        return await self.get_response(request)
