"""A profile whose stored stack does not resolve (older data: a cycle or a layer that is gone, written to
the database directly since the services refuse them) in conversations, through both mounts.

It is refused when selected for a conversation (REST: 409 `profile_unavailable` on `profile`; websocket:
an `error` frame, the socket stays open, nothing changes), and it never closes a socket: a user whose
current profile (or whose conversation's own profile) it is still connects, the hello names the profile
without a runtime, an `error` frame says why, each turn fails with that message, and the socket stays
open; once an editor fixes the stack the next turn runs, without reconnecting.
"""

from __future__ import annotations

import uuid

import pytest
from asgiref.sync import sync_to_async
from channels.db import database_sync_to_async

from chat.models import Conversation, Turn
from profiles import services
from profiles.models import Profile

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("seeded_registries", "fast_turns")]

db = database_sync_to_async
CAUSE = "cannot be used: its stack does not resolve"


@pytest.fixture(params=["dangling", "cycle"])
def how(request) -> str:
    return request.param


@pytest.fixture
def stacked(mount):
    """`stacked` in the mount's registry, on the mount's default profile (it resolves, for now)."""
    services.profile_create(
        registry_slug=mount.registry,
        slug="stacked",
        stack=[{"slug": mount.default_profile}],
        runtime={"system_prompt": "You are a stacked assistant."},
    )


def break_stack(registry: str, how: str) -> None:
    """Write a stack the services refuse straight to the database."""
    rows = Profile.objects.filter(registry__slug=registry, slug="stacked")
    if how == "dangling":
        rows.update(stack=[{"registry": registry, "slug": "gone"}])
    else:
        services.profile_create(registry_slug=registry, slug="other-half", stack=[{"slug": "stacked"}])
        rows.update(stack=[{"registry": registry, "slug": "other-half"}])


@pytest.fixture
def broken(mount, stacked, how) -> None:
    break_stack(mount.registry, how)


async def connect(open_ws, path: str, **query):
    communicator = await open_ws(path, **query)
    assert communicator.accepted
    hello = await communicator.receive_json_from(timeout=5)
    assert hello["type"] == "ws.hello", hello
    return communicator, hello


async def still_open(communicator) -> None:
    await communicator.send_json_to({"type": "ws.ping"})
    assert (await communicator.receive_json_from(timeout=5))["type"] == "ws.pong"


async def send(communicator, frames_until, prompt: str = "hello") -> list[dict]:
    await communicator.send_json_to({"type": "chat.send", "prompt": prompt})
    return await frames_until(communicator)


def of_type(frames: list[dict], frame_type: str) -> list[dict]:
    return [frame["data"] for frame in frames if frame["type"] == frame_type]


# --------------------------------------------------------------------------- refused at selection


async def test_creating_a_conversation_with_it_over_rest_is_a_409_on_profile(mount, broken, chat_api, chat_user):
    response = await sync_to_async(chat_api.post)(mount.api("/conversations"), {"profile": "stacked"}, format="json")

    assert response.status_code == 409, response.content
    error = response.json()["error"]
    assert (error["code"], error["field"]) == ("profile_unavailable", "profile")
    assert f"profile {mount.registry}/stacked {CAUSE}" in error["message"]
    assert not await db(Conversation.objects.filter(owner=chat_user).exists)()


async def test_selecting_it_for_a_conversation_over_the_socket_is_an_error_frame(mount, broken, open_ws):
    conv_id = uuid.uuid4()
    communicator, _ = await connect(open_ws, mount.ws, conv_id=conv_id)

    await communicator.send_json_to({"type": "profile.select", "slug": "stacked"})
    error = await communicator.receive_json_from(timeout=5)

    assert error["type"] == "error", error
    assert (error["data"]["code"], error["data"]["field"]) == ("profile_unavailable", "slug")
    assert CAUSE in error["data"]["message"]
    await still_open(communicator)
    conversation = await db(Conversation.objects.get)(pk=conv_id)
    assert conversation.selected_profile == ""


async def test_a_socket_that_creates_a_conversation_with_it_opens_without_that_selection(
    mount, broken, open_ws, frames_until
):
    conv_id = uuid.uuid4()
    communicator, hello = await connect(open_ws, mount.ws, conv_id=conv_id, profile="stacked")

    assert hello["data"]["runtime_key"] == mount.default_profile  # the user's current profile runs
    error = await communicator.receive_json_from(timeout=5)
    assert (error["type"], error["data"]["code"], error["data"]["field"]) == ("error", "profile_unavailable", "profile")
    conversation = await db(Conversation.objects.get)(pk=conv_id)
    assert conversation.selected_profile == ""
    frames = await send(communicator, frames_until)
    assert frames[-1]["type"] == "turn.completed"


async def test_following_my_profile_again_is_refused_when_it_is_the_broken_one(
    mount, stacked, how, chat_api, open_ws, frames_until
):
    response = await sync_to_async(chat_api.post)(mount.api("/profile"), {"slug": "stacked"}, format="json")
    assert response.status_code == 200, response.content
    await db(break_stack)(mount.registry, how)
    conv_id = uuid.uuid4()
    communicator, _ = await connect(open_ws, mount.ws, conv_id=conv_id, profile=mount.default_profile)

    await communicator.send_json_to({"type": "profile.select", "slug": None})
    error = await communicator.receive_json_from(timeout=5)

    assert (error["type"], error["data"]["code"]) == ("error", "profile_unavailable")
    conversation = await db(Conversation.objects.get)(pk=conv_id)
    assert conversation.selected_profile == mount.default_profile
    frames = await send(communicator, frames_until)  # still runs on the conversation's own selection
    assert of_type(frames, "turn.started")[0]["runtime_key"] == mount.default_profile


# --------------------------------------------------------------------------- never closes a socket


async def test_a_user_whose_current_profile_is_broken_still_connects_and_gets_a_clear_error(
    mount, stacked, how, chat_api, open_ws, frames_until
):
    response = await sync_to_async(chat_api.post)(mount.api("/profile"), {"slug": "stacked"}, format="json")
    assert response.status_code == 200, response.content
    await db(break_stack)(mount.registry, how)

    conv_id = uuid.uuid4()
    communicator, hello = await connect(open_ws, mount.ws, conv_id=conv_id)

    data = hello["data"]
    assert (data["runtime_key"], data["profile"]["slug"], data["profile"]["registry"]) == (
        "stacked",
        "stacked",
        mount.registry,
    )
    assert (data["fingerprint"], data["engine"], data["tools"]) == (None, None, [])
    assert data["unavailable"]["code"] == "profile_unavailable"
    error = await communicator.receive_json_from(timeout=5)
    assert (error["type"], error["data"]["code"]) == ("error", "profile_unavailable")
    assert CAUSE in error["data"]["message"]

    frames = await send(communicator, frames_until)
    assert frames[-1]["type"] == "turn.failed"
    failure = frames[-1]["data"]["error"]
    assert failure["code"] == "profile_unavailable"
    assert f"profile {mount.registry}/stacked {CAUSE}" in failure["message"]
    await still_open(communicator)
    again = await send(communicator, frames_until, "again?")
    assert again[-1]["type"] == "turn.failed"
    await still_open(communicator)

    # An editor fixes the stack: the next turn runs, on the same socket.
    await db(services.profile_update)(registry_slug=mount.registry, slug="stacked", changes={"stack": []})
    fixed = await send(communicator, frames_until, "and now?")
    assert fixed[-1]["type"] == "turn.completed"
    assert of_type(fixed, "turn.started")[0]["runtime_key"] == "stacked"
    statuses = await db(lambda: list(Turn.objects.filter(conversation_id=conv_id).values_list("status", flat=True)))()
    assert sorted(statuses) == ["completed", "failed", "failed"]


async def test_a_conversation_whose_own_profile_breaks_keeps_its_sockets_and_reconnects(
    mount, stacked, how, open_ws, frames_until
):
    conv_id = uuid.uuid4()
    communicator, hello = await connect(open_ws, mount.ws, conv_id=conv_id, profile="stacked")
    assert hello["data"]["runtime_key"] == "stacked"
    assert (await send(communicator, frames_until))[-1]["type"] == "turn.completed"

    await db(break_stack)(mount.registry, how)
    frames = await send(communicator, frames_until, "after the break")
    assert frames[-1]["type"] == "turn.failed"
    assert CAUSE in frames[-1]["data"]["error"]["message"]
    await still_open(communicator)

    # A second socket (a reconnect) is accepted too, and says why nothing runs.
    other, other_hello = await connect(open_ws, mount.ws, conv_id=conv_id)
    assert other_hello["data"]["unavailable"]["code"] == "profile_unavailable"
    assert (await other.receive_json_from(timeout=5))["data"]["code"] == "profile_unavailable"
    await still_open(other)
    await still_open(communicator)
