"""Committed inventory writes from any path reach the open inventory pages' sockets."""

import asyncio
from contextlib import suppress

import pytest
from channels.db import database_sync_to_async
from channels.layers import channel_layers
from channels.testing import WebsocketCommunicator
from django.core.management import call_command
from rest_framework.authtoken.models import Token

from config.asgi import application
from inventory import services

from .factories import UserFactory

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def token(db):
    call_command("inventory_seed", verbosity=0)
    return Token.objects.create(user=UserFactory(username="watcher")).key


@pytest.fixture
async def changes(token):
    channel_layers.backends.clear()  # a fresh in-memory layer on this test's loop
    communicator = WebsocketCommunicator(application, f"/inventory/ws/items/?token={token}")
    connected, _ = await communicator.connect(timeout=5)
    assert connected
    yield communicator
    with suppress(Exception, asyncio.CancelledError):  # a failed test's socket must not fail the next ones
        await communicator.disconnect()


async def test_a_sale_recorded_anywhere_is_announced_after_commit(changes):
    await database_sync_to_async(services.sale_record)(sku="a-1002", qty=1, source="api")

    frame = await changes.receive_json_from(timeout=5)

    assert frame["type"] == "inventory.changed"
    assert frame["data"] == {"skus": ["A-1002"], "source": "api"}


async def test_a_refused_sale_announces_nothing(changes):
    with pytest.raises(services.InsufficientStock):
        await database_sync_to_async(services.sale_record)(sku="A-1021", qty=1)

    assert await changes.receive_nothing(timeout=0.3)


async def test_the_socket_ignores_garbage_and_answers_pings(changes):
    await changes.send_to(text_data="not json")
    await changes.send_json_to({"type": "ws.ping"})

    assert (await changes.receive_json_from(timeout=5))["type"] == "ws.pong"


@pytest.mark.parametrize("frame", [{"bytes": b"\x00\x01"}, {"text": ""}], ids=["binary", "empty"])
async def test_binary_and_empty_frames_are_ignored_and_the_socket_stays_open(changes, frame):
    await changes.send_input({"type": "websocket.receive", **frame})
    await changes.send_json_to({"type": "ws.ping"})

    assert (await changes.receive_json_from(timeout=5))["type"] == "ws.pong"


async def test_anonymous_sockets_are_closed_4401(token):
    communicator = WebsocketCommunicator(application, "/inventory/ws/items/")
    connected, _ = await communicator.connect(timeout=5)
    assert connected
    assert (await communicator.receive_output(timeout=5)) == {"type": "websocket.close", "code": 4401}
