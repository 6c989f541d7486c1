"""Stacked profiles in conversations: every turn records the lineage and the per-field provenance of
its runtime, and saving a base layer switches every conversation running a dependent on its next turn
(`runtime.switched` reason `profile_updated`, naming the layer that changed). Both mounts."""

from __future__ import annotations

import uuid

import pytest
from asgiref.sync import sync_to_async
from channels.db import database_sync_to_async
from rest_framework.test import APIClient

from chat.models import Turn
from profiles import services

from .factories import UserFactory

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("seeded_registries", "fast_turns")]

db = database_sync_to_async
EDITOR_PERMS = ["profiles.add_profile", "profiles.change_profile", "profiles.delete_profile"]
MOUNTS = [("chat", "", "default", "default"), ("inventory", "/inventory", "inventory", "inventory")]


@pytest.fixture(params=MOUNTS, ids=lambda m: m[0])
def mount(request):
    return request.param


@pytest.fixture
def built(mount):
    """`built` in the mount's registry: its own prompt on the mount's default profile."""
    _, _, registry, base = mount
    services.profile_create(
        registry_slug=registry,
        slug="built",
        stack=[{"slug": base}],
        runtime={"system_prompt": "You are a built assistant."},
    )


@pytest.fixture
def editor_api(db) -> APIClient:
    client = APIClient()
    client.force_authenticate(UserFactory(username="editor", perms=EDITOR_PERMS))
    return client


async def connect(open_ws, path: str, **query):
    communicator = await open_ws(path, **query)
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


async def test_saving_a_base_layer_switches_the_dependents_conversation_naming_the_layer(
    mount, built, open_ws, frames_until, editor_api
):
    _, prefix, registry, base = mount
    conv_id = uuid.uuid4()
    communicator, hello = await connect(open_ws, f"{prefix}/ws/chat/", conv_id=conv_id, profile="built")
    await turn(communicator, frames_until)

    response = await sync_to_async(editor_api.patch)(
        f"{prefix}/api/chat/profiles/{base}", {"description": "A new base version."}, format="json"
    )
    assert response.status_code == 200, response.content
    frames = await turn(communicator, frames_until, "again")

    [switched] = of_type(frames, "runtime.switched")
    assert switched["reason"] == "profile_updated"
    assert switched["layer"] == {"registry": registry, "slug": base, "from_version": 1, "to_version": 2}
    assert switched["layers"] == [switched["layer"]]
    assert switched["from"]["runtime_key"] == switched["to"]["runtime_key"] == "built"
    assert switched["from"]["profile_version"] == switched["to"]["profile_version"] == 1
    assert switched["from"]["fingerprint"] == hello["data"]["fingerprint"] != switched["to"]["fingerprint"]
    first, second = await db(lambda: list(Turn.objects.filter(conversation_id=conv_id).order_by("seq")))()
    assert [layer["version"] for layer in first.runtime_config["lineage"]] == [1, 1]
    assert [layer["version"] for layer in second.runtime_config["lineage"]] == [2, 1]


async def test_each_turn_records_its_lineage_and_provenance(mount, built, open_ws, frames_until, chat_api):
    _, prefix, registry, base = mount
    conv_id = uuid.uuid4()
    communicator, _ = await connect(open_ws, f"{prefix}/ws/chat/", conv_id=conv_id, profile="built")
    frames = await turn(communicator, frames_until)
    turn_id = of_type(frames, "turn.started")[0]["turn_id"]

    response = await sync_to_async(chat_api.get)(f"{prefix}/api/chat/conversations/{conv_id}/turns/{turn_id}")
    assert response.status_code == 200, response.content
    config = response.json()["runtime_config"]

    assert config["lineage"] == [
        {"registry": registry, "slug": base, "version": 1},
        {"registry": registry, "slug": "built", "version": 1},
    ]
    prompt = config["provenance"]["runtime.system_prompt"]
    assert prompt["layer"] == {"registry": registry, "slug": "built", "version": 1}
    assert prompt["replaced"][0]["layer"]["slug"] == base
    assert config["system_prompt"] == "You are a built assistant."


async def test_an_unchanged_stack_does_not_switch(mount, built, open_ws, frames_until):
    _, prefix, _, _ = mount
    communicator, _ = await connect(open_ws, f"{prefix}/ws/chat/", conv_id=uuid.uuid4(), profile="built")
    await turn(communicator, frames_until)
    frames = await turn(communicator, frames_until, "again")
    assert not of_type(frames, "runtime.switched")
