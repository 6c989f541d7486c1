"""Django's middleware on the event loop.

Django's own middlewares are synchronous (`MiddlewareMixin`): under ASGI each of their hooks is run
through `sync_to_async` on the request's sync thread, so an async view's request made about thirteen
thread round trips before and after the view (a completion in-process: 17.3 → 12 ms of CPU without them),
and each waited for one of the few HTTP_SYNC_THREADS behind other requests' synchronous views. Their hooks only look at headers and cookies,
except where they read or write the session or parse a form: those cases still go to the thread, as
Django would run them; everything else runs inline on the loop. Under WSGI (and Django's sync test
client) nothing changes.
"""

from __future__ import annotations

from typing import Any

from asgiref.sync import sync_to_async
from django.conf import settings
from django.contrib.auth.middleware import AuthenticationMiddleware
from django.contrib.messages.middleware import MessageMiddleware
from django.contrib.sessions.middleware import SessionMiddleware
from django.middleware.clickjacking import XFrameOptionsMiddleware
from django.middleware.common import CommonMiddleware
from django.middleware.csrf import CsrfViewMiddleware
from django.middleware.security import SecurityMiddleware
from django.utils.deprecation import MiddlewareMixin

SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "TRACE"})


class OnTheLoop(MiddlewareMixin):
    """Runs a `MiddlewareMixin`'s hooks inline in async mode, except those `*_on_thread` names."""

    async_mode: bool
    get_response: Any

    def __init__(self, get_response: Any) -> None:
        super().__init__(get_response)
        view_hook = getattr(self, "process_view", None)
        if self.async_mode and view_hook is not None:
            # Django's handler runs a sync `process_view` through sync_to_async: give it a coroutine.

            async def process_view(request: Any, callback: Any, args: Any, kwargs: Any) -> Any:
                if self.view_on_thread(request, callback):
                    return await sync_to_async(view_hook, thread_sensitive=True)(request, callback, args, kwargs)
                return view_hook(request, callback, args, kwargs)

            setattr(self, "process_view", process_view)  # noqa: B010 (an instance's own hook)

    def __call__(self, request: Any) -> Any:
        if self.async_mode:
            return self._on_the_loop(request)
        return super().__call__(request)

    async def _on_the_loop(self, request: Any) -> Any:
        response = None
        if hasattr(self, "process_request"):
            if self.request_on_thread(request):
                response = await sync_to_async(self.process_request, thread_sensitive=True)(request)
            else:
                response = self.process_request(request)
        response = response or await self.get_response(request)
        if hasattr(self, "process_response"):
            if self.response_on_thread(request, response):
                return await sync_to_async(self.process_response, thread_sensitive=True)(request, response)
            response = self.process_response(request, response)
        return response

    # What may touch the database or parse a body (the default: nothing does).
    def request_on_thread(self, request: Any) -> bool:
        return False

    def view_on_thread(self, request: Any, callback: Any) -> bool:
        return False

    def response_on_thread(self, request: Any, response: Any) -> bool:
        return False


class Security(OnTheLoop, SecurityMiddleware):
    pass


class Sessions(OnTheLoop, SessionMiddleware):
    """A session is loaded lazily (by whoever reads it, on a thread); only saving it writes."""

    def response_on_thread(self, request: Any, response: Any) -> bool:
        session = getattr(request, "session", None)
        return session is not None and (session.modified or settings.SESSION_SAVE_EVERY_REQUEST)


class Common(OnTheLoop, CommonMiddleware):
    pass


class Csrf(OnTheLoop, CsrfViewMiddleware):
    """The token is in a cookie (unless CSRF_USE_SESSIONS); an unsafe request to a view that is not
    exempt may have its form parsed: that check runs on the thread."""

    def request_on_thread(self, request: Any) -> bool:
        return bool(settings.CSRF_USE_SESSIONS)

    def view_on_thread(self, request: Any, callback: Any) -> bool:
        exempt = getattr(callback, "csrf_exempt", False) or getattr(request, "csrf_processing_done", False)
        return bool(settings.CSRF_USE_SESSIONS) or not (exempt or request.method in SAFE_METHODS)

    def response_on_thread(self, request: Any, response: Any) -> bool:
        return bool(settings.CSRF_USE_SESSIONS)


class Authentication(OnTheLoop, AuthenticationMiddleware):
    pass  # `request.user` is lazy: whoever reads it loads it


class Messages(OnTheLoop, MessageMiddleware):
    """Messages added or read during the request are stored (maybe in the session) on the thread."""

    def response_on_thread(self, request: Any, response: Any) -> bool:
        storage = getattr(request, "_messages", None)
        return storage is not None and (storage.used or storage.added_new)


class XFrameOptions(OnTheLoop, XFrameOptionsMiddleware):
    pass
