"""Profile switching: the profile is resolved again before each turn; a different fingerprint rebuilds the
runtime and announces it with `runtime.switched`; an unchanged one reuses the cached runtime.

The REST part (selecting, editing, deleting profiles) goes through DRF's APIClient wrapped in
`sync_to_async`; the conversation runs over the websocket on the test's event loop.
"""

from __future__ import annotations

import uuid

import pytest
from asgiref.sync import sync_to_async
from channels.db import database_sync_to_async
from rest_framework.test import APIClient

from chat import composition
from chat.models import Conversation, Turn

from .factories import UserFactory

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("seeded_registries", "fast_turns")]

db = database_sync_to_async
EDITOR_PERMS = ["profiles.add_profile", "profiles.change_profile", "profiles.delete_profile"]


@pytest.fixture
def editor_api(db) -> APIClient:
    client = APIClient()
    client.force_authenticate(UserFactory(username="editor", perms=EDITOR_PERMS))
    return client


async def select(client: APIClient, slug: str, registry: str | None = None) -> dict:
    body = {"slug": slug, **({"registry": registry} if registry else {})}
    response = await sync_to_async(client.post)("/api/chat/profile", body, format="json")
    assert response.status_code == 200, response.content
    return response.json()


async def connect(open_ws, **query):
    communicator = await open_ws("/ws/chat/", **query)
    assert communicator.accepted
    hello = await communicator.receive_json_from(timeout=5)
    assert hello["type"] == "ws.hello", hello
    return communicator, hello


async def turn(communicator, frames_until, prompt: str = "hello") -> list[dict]:
    await communicator.send_json_to({"type": "chat.send", "prompt": prompt})
    frames = await frames_until(communicator)
    assert frames[-1]["type"] == "turn.completed", frames[-1]
    return frames


def of_type(frames: list[dict], frame_type: str) -> list[dict]:
    return [frame["data"] for frame in frames if frame["type"] == frame_type]


def types(frames: list[dict]) -> list[str]:
    return [frame["type"] for frame in frames]


async def stored_turns(conv_id) -> list[Turn]:
    return await db(lambda: list(Turn.objects.filter(conversation_id=conv_id).order_by("seq")))()


async def test_selecting_a_then_b_switches_the_next_conversation_and_the_next_turn(open_ws, frames_until, chat_api):
    await select(chat_api, "analyst")
    communicator, hello_a = await connect(open_ws)
    assert hello_a["data"]["runtime_key"] == "analyst"
    first = await turn(communicator, frames_until)
    assert "runtime.switched" not in types(first)

    await select(chat_api, "agent")
    _, hello_new = await connect(open_ws)
    second = await turn(communicator, frames_until)

    assert hello_new["data"]["runtime_key"] == "agent"
    kinds = types(second)
    assert kinds.index("runtime.switched") < kinds.index("turn.started")
    [switched] = of_type(second, "runtime.switched")
    assert switched["from"] == {
        "runtime_key": "analyst",
        "fingerprint": hello_a["data"]["fingerprint"],
        "profile_version": 1,
    }
    assert switched["to"] == {
        "runtime_key": "agent",
        "fingerprint": hello_new["data"]["fingerprint"],
        "profile_version": 1,
    }
    assert switched["reason"]
    assert of_type(second, "turn.started")[0]["runtime_key"] == "agent"

    turn_a, turn_b = await stored_turns(hello_a["conv_id"])
    assert (turn_a.runtime_key, turn_a.profile_version, turn_a.fingerprint) == (
        "analyst",
        1,
        hello_a["data"]["fingerprint"],
    )
    assert (turn_b.runtime_key, turn_b.profile_version, turn_b.fingerprint) == (
        "agent",
        1,
        hello_new["data"]["fingerprint"],
    )
    assert turn_a.text.startswith("(offline · analyst assistant)")
    assert turn_b.text.startswith("(offline · careful agent)")
    conversation = await db(Conversation.objects.get)(pk=hello_a["conv_id"])
    assert (conversation.current_runtime_key, conversation.current_fingerprint) == ("agent", turn_b.fingerprint)
    assert conversation.selected_profile == ""  # it follows the user's selection


async def test_editing_the_selected_profile_switches_with_reason_profile_updated(open_ws, frames_until, editor_api):
    communicator, hello = await connect(open_ws, conv_id=uuid.uuid4(), profile="agent")
    await turn(communicator, frames_until)
    builds = composition.runtime_cache.builds

    document = (await sync_to_async(editor_api.get)("/api/chat/profiles/agent")).json()
    runtime = {**document["runtime"], "system_prompt": "You are a meticulous agent. Use tools when they help."}
    response = await sync_to_async(editor_api.patch)("/api/chat/profiles/agent", {"runtime": runtime}, format="json")
    assert response.status_code == 200, response.content
    frames = await turn(communicator, frames_until)

    [switched] = of_type(frames, "runtime.switched")
    assert switched["reason"] == "profile_updated"
    assert switched["from"]["profile_version"] == 1
    assert switched["to"]["profile_version"] == 2
    assert switched["from"]["runtime_key"] == switched["to"]["runtime_key"] == "agent"
    assert switched["from"]["fingerprint"] == hello["data"]["fingerprint"] != switched["to"]["fingerprint"]
    assert composition.runtime_cache.builds > builds
    first, second = await stored_turns(hello["conv_id"])
    assert (first.profile_version, second.profile_version) == (1, 2)
    assert second.fingerprint == switched["to"]["fingerprint"]
    assert second.text.startswith("(offline · meticulous agent)")  # the new prompt answered


async def test_unchanged_profile_reuses_the_runtime_without_a_switch(open_ws, frames_until):
    communicator, hello = await connect(open_ws, conv_id=uuid.uuid4(), profile="agent")
    await turn(communicator, frames_until)
    builds, hits = composition.runtime_cache.builds, composition.runtime_cache.hits

    frames = await turn(communicator, frames_until, "hello again")

    assert "runtime.switched" not in types(frames)
    assert composition.runtime_cache.builds == builds
    assert composition.runtime_cache.hits > hits
    first, second = await stored_turns(hello["conv_id"])
    assert first.fingerprint == second.fingerprint == hello["data"]["fingerprint"]


async def test_a_running_turn_finishes_on_the_runtime_it_started_with(open_ws, frames_until, chat_api, settings):
    settings.CHAT_OFFLINE_DELAY_SECONDS = 0.04
    await select(chat_api, "analyst")
    communicator, hello = await connect(open_ws)

    await communicator.send_json_to({"type": "chat.send", "prompt": "investigate this"})
    frames = await frames_until(communicator, "llm.delta")
    await select(chat_api, "agent")  # while the turn streams
    frames += await frames_until(communicator)
    next_turn = await turn(communicator, frames_until)

    assert frames[-1]["type"] == "turn.completed"
    assert "runtime.switched" not in types(frames)
    assert of_type(frames, "turn.started")[0]["runtime_key"] == "analyst"
    assert of_type(frames, "llm.final")[0]["text"].startswith("(offline · analyst assistant) Findings:")
    assert of_type(next_turn, "runtime.switched")[0]["to"]["runtime_key"] == "agent"
    first, second = await stored_turns(hello["conv_id"])
    assert (first.runtime_key, second.runtime_key) == ("analyst", "agent")
    assert first.status == "completed"
    assert first.fingerprint == hello["data"]["fingerprint"]


@pytest.mark.parametrize("own_selection", [None, "analyst"])
async def test_a_second_socket_with_another_profile_does_not_change_the_conversation(
    open_ws, frames_until, own_selection
):
    conv_id = uuid.uuid4()
    first_socket, hello_1 = await connect(open_ws, conv_id=conv_id, profile=own_selection)
    expected = own_selection or "default"
    await turn(first_socket, frames_until)

    second_socket, hello_2 = await connect(open_ws, conv_id=conv_id, profile="agent")
    frames = await turn(second_socket, frames_until)

    assert hello_2["data"]["runtime_key"] == expected
    assert hello_2["data"]["fingerprint"] == hello_1["data"]["fingerprint"]
    assert "runtime.switched" not in types(frames)
    assert of_type(frames, "turn.started")[0]["runtime_key"] == expected
    conversation = await db(Conversation.objects.get)(pk=conv_id)
    assert conversation.selected_profile == (own_selection or "")
    assert [t.runtime_key for t in await stored_turns(conv_id)] == [expected, expected]


async def test_user_selection_of_a_deleted_profile_falls_back_to_the_registry_default(
    open_ws, frames_until, chat_api, editor_api
):
    await select(chat_api, "agent")
    response = await sync_to_async(editor_api.delete)("/api/chat/profiles/agent")
    assert response.status_code == 204

    current = (await sync_to_async(chat_api.get)("/api/chat/profile")).json()
    communicator, hello = await connect(open_ws)
    frames = await turn(communicator, frames_until)

    assert (current["slug"], current["source"]) == ("default", "default")
    assert hello["data"]["runtime_key"] == "default"
    assert "error" not in types(frames)
    assert of_type(frames, "turn.started")[0]["runtime_key"] == "default"


async def test_conversation_following_a_deleted_selection_switches_to_the_default(
    open_ws, frames_until, chat_api, editor_api
):
    await select(chat_api, "agent")
    communicator, hello = await connect(open_ws)
    assert hello["data"]["runtime_key"] == "agent"
    await turn(communicator, frames_until)

    response = await sync_to_async(editor_api.delete)("/api/chat/profiles/agent")
    assert response.status_code == 204
    frames = await turn(communicator, frames_until)

    [switched] = of_type(frames, "runtime.switched")
    assert (switched["from"]["runtime_key"], switched["to"]["runtime_key"]) == ("agent", "default")
    assert [t.status for t in await stored_turns(hello["conv_id"])] == ["completed", "completed"]


async def test_conversation_whose_own_selection_was_deleted_falls_back_to_the_registry_default(
    open_ws, frames_until, editor_api
):
    conv_id = uuid.uuid4()
    communicator, _ = await connect(open_ws, conv_id=conv_id, profile="analyst")
    await turn(communicator, frames_until)
    await communicator.disconnect()

    response = await sync_to_async(editor_api.delete)("/api/chat/profiles/analyst")
    assert response.status_code == 204
    reconnected = await open_ws("/ws/chat/", conv_id=conv_id)
    first = await reconnected.receive_json_from(timeout=5)
    assert first["type"] == "ws.hello", first
    assert first["data"]["runtime_key"] == "default"
    await reconnected.send_json_to({"type": "chat.send", "prompt": "still there?"})
    frames = await frames_until(reconnected)

    assert frames[-1]["type"] == "turn.completed", frames[-1]
    assert of_type(frames, "turn.started")[0]["runtime_key"] == "default"
