"""Pin or follow: a conversation on `slug@label` switches on the next turn after the label moves
(`runtime.switched` reason `label_moved`); one on `slug@N` never switches. Through the real consumer
and worker; every answer's record names the ref and the version that produced it."""

from __future__ import annotations

import uuid

import pytest
from asgiref.sync import sync_to_async
from channels.db import database_sync_to_async

from chat.models import Turn
from profiles import services

from .factories import UserFactory

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("seeded_registries", "fast_turns")]

db = database_sync_to_async


def _promote(version: int) -> None:
    promoter = UserFactory(username=f"promoter-{uuid.uuid4().hex[:6]}", perms=["profiles.promote_profile"])
    services.label_set(registry_slug="default", slug="agent", name="production", version=version, actor=promoter)


def _new_agent_version() -> int:
    profile = services.profile_update(
        registry_slug="default", slug="agent", changes={"description": "the agent, version two"}
    )
    return profile.version


async def connect(open_ws, profile: str):
    communicator = await open_ws("/ws/chat/", conv_id=uuid.uuid4(), profile=profile)
    assert communicator.accepted
    hello = await communicator.receive_json_from(timeout=5)
    assert hello["type"] == "ws.hello", hello
    return communicator, hello


async def turn(communicator, frames_until) -> list[dict]:
    await communicator.send_json_to({"type": "chat.send", "prompt": "hello"})
    frames = await frames_until(communicator)
    assert frames[-1]["type"] == "turn.completed", frames[-1]
    return frames


def switched(frames: list[dict]) -> list[dict]:
    return [f["data"] for f in frames if f["type"] == "runtime.switched"]


async def test_a_label_follower_switches_when_the_label_moves_and_a_pinned_one_never(open_ws, frames_until, chat_api):
    await db(_promote)(1)
    v2 = await db(_new_agent_version)()
    assert v2 == 2

    follower, hello_f = await connect(open_ws, "agent@production")
    pinned, hello_p = await connect(open_ws, "agent@1")
    assert hello_f["data"]["profile"] == {
        "registry": "default",
        "slug": "agent",
        "version": 1,
        "ref": "agent@production",
        "label": "production",
    }
    assert (hello_p["data"]["profile"]["version"], hello_p["data"]["profile"]["ref"]) == (1, "agent@1")

    assert switched(await turn(follower, frames_until)) == []
    assert switched(await turn(pinned, frames_until)) == []

    await db(_promote)(2)  # promote version 2

    moved = switched(await turn(follower, frames_until))
    assert len(moved) == 1
    assert moved[0]["reason"] == "label_moved"
    assert (moved[0]["from"]["profile_version"], moved[0]["to"]["profile_version"]) == (1, 2)
    assert switched(await turn(pinned, frames_until)) == []  # pinned to version 1: never switches

    records = await db(
        lambda: list(Turn.objects.order_by("created_at_ms", "seq").values_list("profile_ref", "profile_version"))
    )()
    assert sorted(records) == sorted([("agent@production", 1), ("agent@1", 1), ("agent@production", 2), ("agent@1", 1)])

    conv_id = hello_f["data"]["conv_id"]
    hydrated = await sync_to_async(chat_api.get)(f"/api/chat/conversations/{conv_id}")
    body = hydrated.json()
    assert body["profile_selection"]["ref"] == "agent@production"
    assert body["profile_selection"]["mode"] == "label"
    assert [t["profile_ref"] for t in body["turns"]] == ["agent@production", "agent@production"]
    assert [t["profile_version"] for t in body["turns"]] == [1, 2]


async def test_profile_select_takes_a_ref_and_pins_the_conversation(open_ws, frames_until):
    await db(_new_agent_version)()
    communicator, _ = await connect(open_ws, "agent")
    await communicator.send_json_to({"type": "profile.select", "slug": "agent@1"})
    hello = await communicator.receive_json_from(timeout=5)
    assert hello["type"] == "ws.hello", hello
    assert (hello["data"]["profile"]["ref"], hello["data"]["profile"]["version"]) == ("agent@1", 1)
    frames = await turn(communicator, frames_until)
    started = next(f["data"] for f in frames if f["type"] == "turn.started")
    assert started["profile_version"] == 1


async def test_a_conversation_created_over_rest_keeps_its_ref(chat_api):
    await db(_new_agent_version)()
    response = await sync_to_async(chat_api.post)("/api/chat/conversations", {"profile": "agent@1"}, format="json")
    assert response.status_code == 201, response.content
    assert response.json()["profile_selection"] == {
        "registry": "default",
        "slug": "agent",
        "ref": "agent@1",
        "mode": "pinned",
    }
    missing = await sync_to_async(chat_api.post)("/api/chat/conversations", {"profile": "agent@nope"}, format="json")
    assert missing.status_code == 404
