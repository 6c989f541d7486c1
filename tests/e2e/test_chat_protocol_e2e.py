"""The websocket protocol's promises, end to end: a real daphne process, a real websocket client.

Idempotent sends, policy refusals that store nothing, middleware events only where the profile enables
them, `runtime.switched` exactly when the conversation's profile changed, and sockets that never
rebuild a conversation's runtime because of their own query string.
"""

from __future__ import annotations

import json

import pytest

from .helpers import (
    expect_closed,
    get_conversation,
    hello,
    http,
    make_user,
    new_conv_id,
    of_type,
    read_until,
    recv,
    run_turn,
    send,
    send_turn,
    turn_shape,
    types_of,
    ws_connect,
)

pytestmark = pytest.mark.e2e

EDITOR_PERMS = ["profiles.add_profile", "profiles.change_profile", "profiles.delete_profile"]
PLAIN_TURN = ["chat.message", "turn.started", "llm.start", "llm.delta", "llm.final", "turn.completed"]
# The `agent` profile's agent_mode announces its mode before the engine runs, every turn.
AGENT_TURN = [
    "chat.message",
    "turn.started",
    "middleware.event",
    "llm.start",
    "llm.delta",
    "llm.final",
    "turn.completed",
]


@pytest.fixture
def editor(server):
    return make_user("editor", perms=EDITOR_PERMS)


def data_of(frames, type_: str) -> list[dict]:
    return [frame["data"] for frame in of_type(frames, type_)]


async def no_turn_frames_until_pong(ws) -> list[dict]:
    """Ping, then read up to the pong: whatever the server sent in between (bounded)."""
    await send(ws, {"type": "ws.ping"})
    return await read_until(ws, "ws.pong", timeout=10)


# --------------------------------------------------------------------------- idempotency


async def test_a_repeated_idempotency_key_never_creates_a_second_turn(server, alice):
    conv_id = new_conv_id()
    async with ws_connect(server, alice, conv_id=conv_id) as ws:
        await hello(ws)
        first = await run_turn(ws, "hello once", idempotency_key="key-1")
        assert turn_shape(first) == PLAIN_TURN, types_of(first)
        turn_id = data_of(first, "chat.message")[0]["turn_id"]

        await send_turn(ws, "hello twice", idempotency_key="key-1")
        [duplicate] = await read_until(ws, "error", timeout=10)
        after = await no_turn_frames_until_pong(ws)

    assert duplicate["data"]["code"] == "duplicate"
    assert duplicate["data"]["turn_id"] == turn_id
    assert duplicate["data"]["status"] == "completed"
    assert duplicate["data"]["message"]
    assert types_of(after) == ["ws.pong"]
    async with http(server, alice) as client:
        turns = (await get_conversation(client, conv_id))["turns"]
    assert [(t["turn_id"], t["prompt"], t["status"]) for t in turns] == [(turn_id, "hello once", "completed")]


async def test_the_same_idempotency_key_sent_twice_at_once_makes_one_turn(server, alice):
    conv_id = new_conv_id()
    seen: dict[str, dict] = {}

    def both_seen(frame: dict) -> bool:
        if frame["type"] in ("error", "turn.completed", "turn.failed"):
            seen[frame["type"]] = frame["data"]
        return "error" in seen and ("turn.completed" in seen or "turn.failed" in seen)

    async with ws_connect(server, alice, conv_id=conv_id) as ws:
        await hello(ws)
        await send_turn(ws, "only once", idempotency_key="same")
        await send_turn(ws, "only once", idempotency_key="same")
        frames = await read_until(ws, both_seen, timeout=30)
        after = await no_turn_frames_until_pong(ws)

    [message] = data_of(frames, "chat.message")
    assert data_of(frames, "chat.queued") == []
    assert seen["error"]["code"] == "duplicate"
    assert seen["error"]["turn_id"] == message["turn_id"]
    assert seen["turn.completed"]["turn_id"] == message["turn_id"]
    assert len(data_of(frames, "turn.started")) == 1
    assert types_of(after) == ["ws.pong"]
    async with http(server, alice) as client:
        turns = (await get_conversation(client, conv_id))["turns"]
    assert [(t["turn_id"], t["status"]) for t in turns] == [(message["turn_id"], "completed")]


# --------------------------------------------------------------------------- policy


async def test_an_override_the_policy_refuses_is_an_error_frame_and_stores_nothing(server, alice):
    conv_id = new_conv_id()
    async with ws_connect(server, alice, conv_id=conv_id) as ws:
        greeting = await hello(ws)
        assert greeting["data"]["runtime_key"] == "default"
        await send_turn(ws, "be someone else", request_overrides={"system_prompt": "You are a pirate."})
        [refused] = await read_until(ws, "error", timeout=10)
        after = await no_turn_frames_until_pong(ws)

    assert refused["data"]["code"] == "policy_violation"
    assert refused["data"]["field"] == "request_overrides.system_prompt"
    assert refused["data"]["message"] == "this profile does not allow request overrides"
    assert types_of(after) == ["ws.pong"]
    async with http(server, alice) as client:
        conversation = await get_conversation(client, conv_id)
        events = await client.get(f"/api/chat/conversations/{conv_id}/events")
    assert conversation["turns"] == []
    assert events.status_code == 200, events.text
    assert events.json()["frames"] == []  # not even a chat.message was stored


# --------------------------------------------------------------------------- middlewares


async def test_middleware_events_appear_only_for_the_profile_that_enables_them(server, alice):
    prompt = "mail me at a@b.com"
    async with ws_connect(server, alice, conv_id=new_conv_id()) as ws:
        assert (await hello(ws))["data"]["middlewares"] == []
        plain = await run_turn(ws, prompt)
    async with ws_connect(server, alice, conv_id=new_conv_id(), profile="agent") as ws:
        greeting = await hello(ws)
        agent = await run_turn(ws, prompt)

    assert types_of(plain)[-1] == "turn.completed", types_of(plain)
    assert "middleware.event" not in types_of(plain)
    assert "a@b.com" in data_of(plain, "llm.final")[0]["text"]  # nothing masked it

    assert [m["name"] for m in greeting["data"]["middlewares"]] == ["redact", "agent_mode"]
    assert types_of(agent)[-1] == "turn.completed", types_of(agent)
    events = data_of(agent, "middleware.event")
    assert [(e["middleware"], e["event"], e["detail"]) for e in events] == [
        ("redact", "redacted", {"counts": {"email": 1}}),
        ("agent_mode", "mode", {"mode": "plan"}),
    ]
    assert "a@b.com" not in data_of(agent, "llm.final")[0]["text"]


# --------------------------------------------------------------------------- switching


async def test_editing_the_selected_profile_switches_the_next_turn_and_only_then(server, alice, editor):
    conv_id = new_conv_id()
    async with ws_connect(server, alice, conv_id=conv_id, profile="agent") as ws:
        greeting = (await hello(ws))["data"]
        first = await run_turn(ws, "hello")
        second = await run_turn(ws, "hello again")

        async with http(server, editor) as client:
            document = (await client.get("/api/chat/profiles/agent")).json()
            runtime = {**document["runtime"], "system_prompt": "You are a meticulous agent. Use tools when they help."}
            response = await client.patch("/api/chat/profiles/agent", json={"runtime": runtime})
            assert response.status_code == 200, response.text
            assert response.json()["metadata"]["version"] == 2
            new_fingerprint = (await client.post("/api/chat/profiles/agent/resolve", json={})).json()["fingerprint"]
        third = await run_turn(ws, "and now?")
        fourth = await run_turn(ws, "and still?")

    old_fingerprint = greeting["fingerprint"]
    assert new_fingerprint != old_fingerprint
    for frames in (first, second, fourth):
        assert turn_shape(frames) == AGENT_TURN, types_of(frames)
    assert turn_shape(third) == ["chat.message", "runtime.switched", *AGENT_TURN[1:]], types_of(third)
    [switched] = data_of(third, "runtime.switched")
    assert switched == {
        "from": {"runtime_key": "agent", "fingerprint": old_fingerprint, "profile_version": 1},
        "to": {"runtime_key": "agent", "fingerprint": new_fingerprint, "profile_version": 2},
        "reason": "profile_updated",
    }
    started = [data_of(frames, "turn.started")[0] for frames in (first, second, third, fourth)]
    assert [(s["fingerprint"], s["profile_version"]) for s in started] == [
        (old_fingerprint, 1),
        (old_fingerprint, 1),
        (new_fingerprint, 2),
        (new_fingerprint, 2),
    ]
    assert "meticulous agent" in data_of(third, "llm.final")[0]["text"]  # the new prompt answered
    async with http(server, alice) as client:
        conversation = await get_conversation(client, conv_id)
    assert [(t["profile_version"], t["fingerprint"]) for t in conversation["turns"]] == [
        (1, old_fingerprint),
        (1, old_fingerprint),
        (2, new_fingerprint),
        (2, new_fingerprint),
    ]
    assert conversation["current_fingerprint"] == new_fingerprint


async def test_a_socket_with_another_profile_in_its_query_does_not_change_an_existing_conversation(server, alice):
    conv_id = new_conv_id()
    async with ws_connect(server, alice, conv_id=conv_id, profile="agent") as ws:
        created = (await hello(ws))["data"]
        first = await run_turn(ws, "hello")
    assert types_of(first)[-1] == "turn.completed", types_of(first)

    async with ws_connect(server, alice, conv_id=conv_id, profile="analyst") as ws:
        reopened = (await hello(ws))["data"]
        second = await run_turn(ws, "hello again")

    assert created["runtime_key"] == "agent"
    assert {k: reopened[k] for k in ("runtime_key", "profile", "fingerprint", "tools", "middlewares")} == {
        k: created[k] for k in ("runtime_key", "profile", "fingerprint", "tools", "middlewares")
    }
    assert reopened["profile"] == {"registry": "default", "slug": "agent", "version": 1, "ref": "agent", "label": None}
    assert turn_shape(second) == AGENT_TURN, types_of(second)
    started = data_of(second, "turn.started")[0]
    assert (started["runtime_key"], started["fingerprint"]) == ("agent", created["fingerprint"])
    async with http(server, alice) as client:
        conversation = await get_conversation(client, conv_id)
    assert conversation["profile_selection"] == {
        "registry": "default",
        "slug": "agent",
        "ref": "agent",
        "mode": "follow",
    }
    assert conversation["current_runtime_key"] == "agent"
    assert [t["runtime_key"] for t in conversation["turns"]] == ["agent", "agent"]


async def test_an_oversized_frame_gets_an_error_and_one_over_the_hard_limit_a_1009_close(server, alice):
    async with ws_connect(server, alice, conv_id=new_conv_id()) as ws:
        await hello(ws)
        await send(ws, json.dumps({"type": "chat.send", "prompt": "x" * 100_000}))
        error = await recv(ws)
        assert (error["type"], error["data"]["code"]) == ("error", "frame_too_large")
        await send(ws, {"type": "ws.ping"})
        assert (await recv(ws))["type"] == "ws.pong"  # still open

        await send(ws, "y" * (2 * 1024 * 1024))  # over daphne's 1 MiB message limit
        _, code = await expect_closed(ws)
    assert code == 1009  # message too big: a close frame, not a dropped connection
