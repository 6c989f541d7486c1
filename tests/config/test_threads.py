"""Synchronous HTTP views run on HTTP_SYNC_THREADS shared threads (config.threads), through the project's
real ASGI application: a burst of requests queues for those threads instead of starting one each."""

from __future__ import annotations

import asyncio
import threading

import pytest
from asgiref.testing import ApplicationCommunicator
from django.core.signals import request_started
from rest_framework.authtoken.models import Token

from chat.aio import run_db
from tests.chat.factories import UserFactory
from tests.helpers import import_seed

pytestmark = pytest.mark.django_db(transaction=True)


async def get(application, path: str, token: str) -> int:
    scope = {
        "type": "http",
        "http_version": "1.1",
        "method": "GET",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "headers": [(b"host", b"testserver"), (b"authorization", f"Token {token}".encode())],
        "client": ("127.0.0.1", 50000),
        "server": ("testserver", 80),
        "scheme": "http",
    }
    app = ApplicationCommunicator(application, scope)
    await app.send_input({"type": "http.request", "body": b"", "more_body": False})
    start = await app.receive_output(timeout=30)
    while (await app.receive_output(timeout=30)).get("more_body"):
        pass
    return start["status"]


async def test_a_burst_of_synchronous_requests_shares_the_bounded_threads(settings):
    from config.asgi import application

    await run_db(import_seed)
    user = await run_db(UserFactory)
    token = (await run_db(Token.objects.create, user=user)).key
    ran_on: list[str] = []

    def probe(**kwargs) -> None:  # Django sends it on the request's sync thread
        ran_on.append(threading.current_thread().name)

    request_started.connect(probe)
    try:
        statuses = await asyncio.gather(*(get(application, "/api/chat/profiles", token) for _ in range(24)))
    finally:
        request_started.disconnect(probe)

    assert statuses == [200] * 24
    assert len(ran_on) == 24
    assert all(name.startswith("http-") for name in ran_on), ran_on  # no thread of its own per request
    assert len({name.split("_")[0] for name in ran_on}) <= settings.HTTP_SYNC_THREADS
