"""Synchronous HTTP views run on HTTP_SYNC_THREADS shared threads (config.threads), through the project's
real ASGI application: a burst of requests queues for those threads instead of starting one each."""

from __future__ import annotations

import asyncio
import threading

import pytest
from django.core.signals import request_started
from rest_framework.authtoken.models import Token

from chat.aio import run_db
from tests.chat.factories import UserFactory
from tests.helpers import import_seed

from .asgi import fetch

pytestmark = pytest.mark.django_db(transaction=True)


async def test_a_burst_of_synchronous_requests_shares_the_bounded_threads(settings):
    await run_db(import_seed)
    user = await run_db(UserFactory)
    token = (await run_db(Token.objects.create, user=user)).key
    ran_on: list[str] = []

    def probe(**kwargs) -> None:  # Django sends it on the request's sync thread
        ran_on.append(threading.current_thread().name)

    request_started.connect(probe)
    try:
        auth = [(b"authorization", f"Token {token}".encode())]
        answers = await asyncio.gather(*(fetch("/api/chat/profiles", headers=auth) for _ in range(24)))
    finally:
        request_started.disconnect(probe)

    assert [status for status, _, _ in answers] == [200] * 24
    assert len(ran_on) == 24
    assert all(name.startswith("http-") for name in ran_on), ran_on  # no thread of its own per request
    assert len({name.split("_")[0] for name in ran_on}) <= settings.HTTP_SYNC_THREADS
