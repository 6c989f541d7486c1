"""Shared, framework-free helpers for the chat runtime tests: a recording `emit` and a TurnContext factory."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest
from channels.layers import channel_layers

from chat.runtime.base import Message, TurnContext
from tests.helpers import RecordingEmit, import_seed


@pytest.fixture
def recording_emit() -> RecordingEmit:
    return RecordingEmit()


@pytest.fixture
def turn_context(recording_emit: RecordingEmit) -> Callable[..., TurnContext]:
    """Build a TurnContext whose messages are `history` + the user's `prompt`, emitting to `recording_emit`."""

    def make(
        prompt: str = "Hello",
        *,
        history: list[Message] | None = None,
        system_prompt: str = "You are a concise assistant.",
        state: dict[str, Any] | None = None,
    ) -> TurnContext:
        return TurnContext(
            conv_id="conv-1",
            turn_id="turn-1",
            prompt=prompt,
            messages=[*(history or []), Message(role="user", content=prompt)],
            system_prompt=system_prompt,
            emit=recording_emit,
            state=dict(state or {}),
        )

    return make


# --------------------------------------------------------------------------- conversations: seed, users, sockets

TERMINAL_FRAMES = ("turn.completed", "turn.failed", "turn.cancelled")


@pytest.fixture
def seeded_registries(db, settings) -> None:
    """The seed registries: `default` (default, analyst, agent) and `inventory` (inventory, analyst, default)."""

    import_seed()


@pytest.fixture
def seeded_inventory(seeded_registries) -> None:
    import io

    from django.core.management import call_command

    call_command("inventory_seed", stdout=io.StringIO())


@pytest.fixture
def fast_turns(settings) -> None:
    """Short pauses between offline chunks, and a coalescing window shorter than them (several deltas)."""
    settings.CHAT_OFFLINE_DELAY_SECONDS = 0.005
    settings.CHAT_DELTA_COALESCE_SECONDS = 0.001


@pytest.fixture
def chat_user(db):
    from .factories import UserFactory

    return UserFactory(username="alice")


@pytest.fixture
def other_user(db):
    from .factories import UserFactory

    return UserFactory(username="mallory")


@pytest.fixture
def chat_token(chat_user) -> str:
    from rest_framework.authtoken.models import Token

    return Token.objects.create(user=chat_user).key


@pytest.fixture
def chat_api(chat_user):
    """DRF APIClient authenticated as `chat_user` (turns run inline, no server loop)."""
    from rest_framework.test import APIClient

    client = APIClient()
    client.force_authenticate(chat_user)
    return client


@pytest.fixture
async def open_ws(chat_token):
    """`await open_ws(path="/ws/chat/", token=..., headers=[...], conv_id=..., profile=...)` -> a connected
    WebsocketCommunicator on `config.asgi.application` (token = `chat_token` unless given; `token=None`
    connects anonymously). Every socket opened is disconnected at teardown; a fresh in-memory channel
    layer per test keeps queues on this test's event loop."""
    import asyncio
    from contextlib import suppress
    from urllib.parse import urlencode

    from channels.layers import channel_layers
    from channels.testing import WebsocketCommunicator

    from config.asgi import application

    channel_layers.backends.clear()
    opened: list[WebsocketCommunicator] = []
    default_token = object()

    async def connect(path: str = "/ws/chat/", *, token: object = default_token, headers=(), **query):
        params = {k: str(v) for k, v in query.items() if v is not None}
        key = chat_token if token is default_token else token
        if key:
            params["token"] = key
        url = path + (f"?{urlencode(params)}" if params else "")
        communicator = WebsocketCommunicator(application, url, headers=list(headers))
        communicator.accepted, communicator.close_code = await communicator.connect(timeout=5)
        opened.append(communicator)
        return communicator

    yield connect
    for communicator in opened:
        # A receive that timed out has cancelled the socket's application: teardown survives that.
        with suppress(Exception, asyncio.CancelledError):
            await communicator.disconnect(timeout=2)
    channel_layers.backends.clear()


@pytest.fixture
def connected(open_ws):
    """`await connected(path="/ws/chat/", **query)` -> (communicator, its ws.hello frame)."""

    async def connect(path: str = "/ws/chat/", **query):
        communicator = await open_ws(path, **query)
        assert communicator.accepted
        hello = await communicator.receive_json_from(timeout=5)
        assert hello["type"] == "ws.hello", hello
        return communicator, hello

    return connect


async def _frames_until(communicator, *types: str, timeout: float = 5) -> list[dict]:
    """Read JSON frames until one of `types` (default: a turn's terminal frame) arrives; returns all read."""
    stop = types or TERMINAL_FRAMES
    frames: list[dict] = []
    while True:
        frame = await communicator.receive_json_from(timeout=timeout)
        frames.append(frame)
        if frame["type"] in stop:
            return frames


async def _close_code(communicator, timeout: float = 5) -> tuple[list[dict], int | None]:
    """Read until the server closes the socket: (JSON frames read before, close code)."""
    import json

    frames: list[dict] = []
    while True:
        output = await communicator.receive_output(timeout=timeout)
        if output["type"] == "websocket.close":
            return frames, output.get("code")
        frames.append(json.loads(output["text"]))


async def _wait_turn(turn_id, *, statuses=("completed", "failed", "cancelled", "interrupted"), timeout: float = 5):
    """Poll the Turn row (async) until it reaches one of `statuses`; keeps the event loop running."""
    import asyncio
    import time

    from channels.db import database_sync_to_async

    from chat.models import Turn

    deadline = time.monotonic() + timeout
    while True:
        turn = await database_sync_to_async(Turn.objects.get)(pk=turn_id)
        if turn.status in statuses or time.monotonic() > deadline:
            return turn
        await asyncio.sleep(0.02)


@pytest.fixture
def frames_until():
    return _frames_until


@pytest.fixture
def close_code():
    return _close_code


@pytest.fixture
def wait_turn():
    return _wait_turn


@dataclass(frozen=True)
class Mounted:
    """One app's mount, as its clients address it."""

    name: str
    prefix: str  # "" or "/inventory"
    registry: str
    default_profile: str

    @property
    def ws(self) -> str:
        return f"{self.prefix}/ws/chat/"

    def api(self, path: str) -> str:
        return f"{self.prefix}/api/chat{path}"


MOUNTS = [Mounted("chat", "", "default", "default"), Mounted("inventory", "/inventory", "inventory", "inventory")]


@pytest.fixture(params=MOUNTS, ids=lambda m: m.name)
def mount(request) -> Mounted:
    """Each test that takes it runs through both mounts."""
    return request.param


# --------------------------------------------------------------------------- MCP servers


@pytest.fixture
def acme():
    """A real MCP server (`tests.chat.mcp_servers.McpTestServer`) serving add, fail, hang and whoami."""
    from .mcp_servers import McpTestServer

    with McpTestServer() as server:
        yield server


@pytest.fixture
def mcp_admin(db):
    from .factories import UserFactory

    return UserFactory(username="mcp-admin", is_staff=True, is_superuser=True)


@pytest.fixture
def acme_registered(acme, mcp_admin, settings):
    """`acme` stored as the MCP server `acme`, its tools fetched (through the service, as the API does)."""
    from chat.mcp.services import mcp_server_create

    settings.CHAT_TOOL_TIMEOUT_SECONDS = 5.0
    return mcp_server_create(actor=mcp_admin, slug="acme", url=acme.url, timeout_seconds=2)


@pytest.fixture
def redis_server():
    """A redis-server of the test's own (stopped and started by the test as it needs)."""
    from tests.e2e.own_servers import OwnRedis

    with OwnRedis() as server:
        yield server


@pytest.fixture
def pipelines(monkeypatch) -> list[int]:
    """The size of every pipeline sent to Redis."""
    from redis.asyncio.client import Pipeline

    sizes: list[int] = []
    original = Pipeline.execute

    async def execute(self, *args, **kwargs):
        sizes.append(len(self.command_stack))
        return await original(self, *args, **kwargs)

    monkeypatch.setattr(Pipeline, "execute", execute)
    return sizes


@pytest.fixture
def fresh_layer():
    """An in-memory channel layer of this test's loop (the turn runs as a task on it)."""
    channel_layers.backends.clear()
    yield
    channel_layers.backends.clear()
