"""Shared helpers of the end-to-end suites: users and seed data in the test database, real websocket
and HTTP clients against a `LiveServer`, and bounded reads (every receive has a timeout)."""

from __future__ import annotations

import asyncio
import contextlib
import io
import itertools
import json
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

import httpx2 as httpx  # the maintained `httpx` line the openai SDK depends on (pinned in requirements.txt)
from django.contrib.auth import get_user_model
from django.contrib.auth.hashers import PBKDF2PasswordHasher
from django.contrib.auth.models import Permission
from django.core.management import call_command
from rest_framework.authtoken.models import Token
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from tests.helpers import import_seed

from .server import LiveServer

RECV_TIMEOUT = 10.0
TURN_TIMEOUT = 30.0
FINISHED_FRAMES = ("turn.completed", "turn.failed", "turn.cancelled")
FINISHED_STATUSES = ("completed", "failed", "cancelled", "interrupted")
LOW_STOCK_SKUS = ["A-1021", "C-3010", "A-1055", "A-1002", "B-2015"]

Frame = dict[str, Any]


# --------------------------------------------------------------------------- database (sync: call from fixtures)


def seed() -> None:
    """The canonical registries and the reference inventory, as `make run` seeds them."""

    import_seed()
    call_command("inventory_seed", stdout=io.StringIO())


@dataclass(frozen=True)
class ApiUser:
    username: str
    token: str
    pk: int
    password: str = "pw-e2e-123"


def make_user(username: str, *, perms: Iterable[str] = (), staff: bool = False, superuser: bool = False) -> ApiUser:
    """A committed user with the given Django permissions (`app_label.codename`) and a DRF token."""
    password = ApiUser.__dataclass_fields__["password"].default
    user = get_user_model().objects.create_user(
        username=username, email=f"{username}@example.com", password=password, is_staff=staff or superuser
    )
    if superuser:
        user.is_superuser = True
        user.save(update_fields=["is_superuser"])
    # The test process hashes with MD5 (tests/conftest.py) but the server only knows its own hashers:
    # store a (cheap) PBKDF2 hash the server can verify, so session logins work against it.
    user.password = PBKDF2PasswordHasher().encode(password, PBKDF2PasswordHasher().salt(), iterations=1_000)
    user.save(update_fields=["password"])
    for perm in perms:
        app_label, codename = perm.split(".")
        user.user_permissions.add(Permission.objects.get(content_type__app_label=app_label, codename=codename))
    token = Token.objects.create(user=user)
    return ApiUser(username=username, token=token.key, pk=user.pk, password=password)


# --------------------------------------------------------------------------- HTTP


def http(server: LiveServer, user: ApiUser | None = None, **kwargs: Any) -> httpx.AsyncClient:
    """An async HTTP client against the server, authenticated with the user's token."""
    headers = {"Authorization": f"Token {user.token}"} if user else {}
    return httpx.AsyncClient(
        base_url=server.url, headers=headers, timeout=kwargs.pop("timeout", 60.0), trust_env=False, **kwargs
    )


async def poll(
    fetch: Callable[[], Awaitable[Any]],
    until: Callable[[Any], bool],
    *,
    timeout: float = TURN_TIMEOUT,
    interval: float = 0.1,
) -> Any:
    """Call `fetch` until `until(result)`; fail with the last result after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        result = await fetch()
        if until(result):
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout}s; last value: {result!r}")
        await asyncio.sleep(interval)


async def get_conversation(client: httpx.AsyncClient, conv_id: Any, prefix: str = "") -> dict[str, Any]:
    response = await client.get(f"{prefix}/api/chat/conversations/{conv_id}")
    assert response.status_code == 200, response.text
    return response.json()


async def wait_turns_finished(
    client: httpx.AsyncClient, conv_id: Any, count: int, *, prefix: str = "", timeout: float = TURN_TIMEOUT
) -> dict[str, Any]:
    """Poll the conversation until it has `count` turns and all of them are finished."""

    def done(conv: dict[str, Any]) -> bool:
        turns = conv["turns"]
        return len(turns) >= count and all(t["status"] in FINISHED_STATUSES for t in turns)

    return await poll(lambda: get_conversation(client, conv_id, prefix), done, timeout=timeout)


@contextlib.asynccontextmanager
async def explained(server: LiveServer, user: ApiUser, conv_id: Any, prefix: str = "") -> AsyncIterator[None]:
    """On a failed read, add what the server STORED (turn statuses, event seqs) to the failure,
    so a lost frame can be told from a turn that never ran."""
    try:
        yield
    except (AssertionError, ConnectionClosed) as exc:
        try:
            async with http(server, user) as client:
                turns = (await get_conversation(client, conv_id, prefix))["turns"]
                events = (await client.get(f"{prefix}/api/chat/conversations/{conv_id}/events")).json()["frames"]
            stored = f"stored turns (seq, status): {[(t['seq'], t['status']) for t in turns]}; "
            stored += f"stored events (seq, type): {_brief(events)}"
        except Exception as lookup_error:  # the diagnosis must not hide the failure
            stored = f"(could not read the stored conversation: {lookup_error!r})"
        raise AssertionError(f"{exc}\n{stored}") from exc


# --------------------------------------------------------------------------- websockets


def ws_url(server: LiveServer, *, prefix: str = "", **query: Any) -> str:
    params = {k: v for k, v in query.items() if v is not None}
    return f"{server.ws_url}/{prefix}ws/chat/" + (f"?{urlencode(params)}" if params else "")


@contextlib.asynccontextmanager
async def ws_connect(
    server: LiveServer,
    user: ApiUser | None = None,
    *,
    conv_id: Any = None,
    prefix: str = "",
    headers: dict[str, str] | None = None,
    **query: Any,
) -> AsyncIterator[ClientConnection]:
    """A real websocket client on `/<prefix>ws/chat/?conv_id=...&token=...`."""
    query = {"conv_id": str(conv_id) if conv_id else None, "token": user.token if user else None, **query}
    url = ws_url(server, prefix=prefix, **query)
    ws = await asyncio.wait_for(connect(url, additional_headers=headers, open_timeout=RECV_TIMEOUT), RECV_TIMEOUT)
    try:
        yield ws
    finally:
        with contextlib.suppress(Exception):
            await asyncio.wait_for(ws.close(), 5)


async def recv(ws: ClientConnection, timeout: float = RECV_TIMEOUT) -> Frame:
    raw = await asyncio.wait_for(ws.recv(), timeout)
    frame = json.loads(raw)
    assert set(frame) == {"type", "id", "seq", "conv_id", "ts_ms", "data"}, frame
    return frame


async def send(ws: ClientConnection, frame: dict[str, Any] | str) -> None:
    await ws.send(frame if isinstance(frame, str) else json.dumps(frame))


async def read_until(
    ws: ClientConnection, match: str | Iterable[str] | Callable[[Frame], bool], *, timeout: float = TURN_TIMEOUT
) -> list[Frame]:
    """Frames up to and including the first one that matches (a type, several types or a predicate)."""
    if isinstance(match, str):
        types = {match}
        predicate: Callable[[Frame], bool] = lambda f: f["type"] in types  # noqa: E731
    elif callable(match):
        predicate = match
    else:
        types = set(match)
        predicate = lambda f: f["type"] in types  # noqa: E731
    frames: list[Frame] = []
    deadline = time.monotonic() + timeout
    while True:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise AssertionError(f"no matching frame within {timeout}s; got (seq, type): {_brief(frames)}")
        try:
            frame = await recv(ws, min(RECV_TIMEOUT, remaining))
        except TimeoutError:
            raise AssertionError(f"no matching frame within {timeout}s; got (seq, type): {_brief(frames)}") from None
        frames.append(frame)
        if predicate(frame):
            return frames


def _brief(frames: list[Frame]) -> list[tuple[int, str]]:
    return [(f["seq"], f["type"]) for f in frames]


async def hello(ws: ClientConnection) -> Frame:
    frame = await recv(ws)
    assert frame["type"] == "ws.hello", frame
    return frame


async def send_turn(ws: ClientConnection, prompt: str, **extra: Any) -> None:
    await send(ws, {"type": "chat.send", "prompt": prompt, **extra})


async def run_turn(ws: ClientConnection, prompt: str, *, timeout: float = TURN_TIMEOUT, **extra: Any) -> list[Frame]:
    """Send a prompt and read every frame up to the end of ITS turn."""
    await send_turn(ws, prompt, **extra)
    return await read_turn(ws, timeout=timeout)


async def read_turn(ws: ClientConnection, turn_id: str | None = None, *, timeout: float = TURN_TIMEOUT) -> list[Frame]:
    """Frames up to the turn.completed/failed/cancelled of `turn_id` (default: the first turn announced)."""
    state: dict[str, str | None] = {"turn": turn_id}

    def finished(frame: Frame) -> bool:
        if state["turn"] is None and frame["type"] == "chat.message":
            state["turn"] = frame["data"]["turn_id"]
        return frame["type"] in FINISHED_FRAMES and frame["data"].get("turn_id") == state["turn"]

    return await read_until(ws, finished, timeout=timeout)


async def expect_closed(ws: ClientConnection, timeout: float = RECV_TIMEOUT) -> tuple[list[Frame], int | None]:
    """Read until the server closes; returns the frames sent before and the close code."""
    frames: list[Frame] = []
    try:
        while True:
            frames.append(json.loads(await asyncio.wait_for(ws.recv(), timeout)))
    except ConnectionClosed as exc:
        return frames, exc.rcvd.code if exc.rcvd else None


def types_of(frames: Iterable[Frame]) -> list[str]:
    return [f["type"] for f in frames]


def of_type(frames: Iterable[Frame], type_: str) -> list[Frame]:
    return [f for f in frames if f["type"] == type_]


def assert_strictly_increasing(frames: list[Frame]) -> None:
    seqs = [f["seq"] for f in frames]
    assert all(b > a for a, b in itertools.pairwise(seqs)), seqs


def turn_shape(frames: list[Frame]) -> list[str]:
    """The frame types with consecutive llm.delta frames collapsed into one, for order checks."""
    shape: list[str] = []
    for kind in types_of(frames):
        if kind == "llm.delta" and shape and shape[-1] == "llm.delta":
            continue
        shape.append(kind)
    return shape


def new_conv_id() -> uuid.UUID:
    return uuid.uuid4()
