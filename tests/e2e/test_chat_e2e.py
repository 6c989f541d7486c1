"""The chat app end to end: a real daphne process, real websocket and HTTP clients, the offline engine.

Users and seed data are written by the test process into the shared test database; the server
process runs the turns (the dispatcher on its own event loop), so these tests prove the runtime works
outside the test process: streaming, profile switching, tools, authorisation, replay, REST-only
chat, a disconnected socket and a worker killed mid-turn.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time

import pytest
from websockets.exceptions import InvalidStatus

from .helpers import (
    FINISHED_STATUSES,
    assert_strictly_increasing,
    expect_closed,
    get_conversation,
    hello,
    http,
    make_user,
    new_conv_id,
    of_type,
    poll,
    read_turn,
    read_until,
    recv,
    run_turn,
    send,
    send_turn,
    turn_shape,
    types_of,
    wait_turns_finished,
    ws_connect,
)
from .server import ROOT, LiveServer, database_copy
from .server import test_database_url as server_database_url

pytestmark = pytest.mark.e2e


STREAM_SHAPE = ["chat.message", "turn.started", "llm.start", "llm.delta", "llm.final", "turn.completed"]


@pytest.fixture
def bob(server):
    return make_user("bob")


@pytest.fixture(scope="module")
def slow_server(django_db_setup, django_db_blocker):
    """A second worker whose offline engine waits 0.2 s between chunks: turns take over a second."""
    server = LiveServer(env={"CHAT_OFFLINE_DELAY_SECONDS": "0.2"}).start()
    yield server
    server.stop()


async def resolve(client, slug: str, prefix: str = "", registry: str | None = None) -> dict:
    params = {"registry": registry} if registry else None
    response = await client.post(f"{prefix}/api/chat/profiles/{slug}/resolve", json={}, params=params)
    assert response.status_code == 200, response.text
    return response.json()


# --------------------------------------------------------------------------- hello and streaming


async def test_hello_describes_the_conversation_runtime(server, alice):
    conv_id = new_conv_id()
    before = int(time.time() * 1000)
    async with ws_connect(server, alice, conv_id=conv_id) as ws:
        frame = await hello(ws)
    assert frame["conv_id"] == str(conv_id)
    assert isinstance(frame["id"], str) and frame["id"]
    assert frame["seq"] == 0  # for this socket only: not in the conversation's sequence
    data = frame["data"]
    assert data["conv_id"] == str(conv_id)
    assert data["runtime_key"] == "default"
    assert data["profile"] == {"registry": "default", "slug": "default", "version": 1, "ref": "default", "label": None}
    assert data["engine"]["provider"] == "offline"
    assert data["engine"]["model"]
    assert data["tools"] == []
    assert data["middlewares"] == []
    assert data["last_seq"] == 0
    assert before - 5_000 <= data["server_time_ms"] <= int(time.time() * 1000) + 5_000
    async with http(server, alice) as client:
        resolution = await resolve(client, "default")
        conversation = await get_conversation(client, conv_id)
    assert data["fingerprint"] == resolution["fingerprint"]
    assert data["fingerprint"].startswith("sha256:")
    assert conversation["mount"] == "chat"
    assert conversation["turns"] == []


async def test_hello_of_a_conversation_created_with_a_profile(server, alice):
    async with ws_connect(server, alice, conv_id=new_conv_id(), profile="agent") as ws:
        data = (await hello(ws))["data"]
    assert data["runtime_key"] == "agent"
    assert data["profile"]["slug"] == "agent"
    assert data["tools"] == ["calculator", "current_time"]
    assert [m["name"] for m in data["middlewares"]] == ["redact", "agent_mode"]


async def test_streaming_order_and_strictly_increasing_seq(server, alice):
    conv_id = new_conv_id()
    async with ws_connect(server, alice, conv_id=conv_id) as ws:
        greeting = await hello(ws)
        frames = await run_turn(ws, "Hello there, how are you?")
    assert turn_shape(frames) == STREAM_SHAPE, types_of(frames)
    assert len(of_type(frames, "llm.delta")) >= 2, "the reply must stream in several deltas"
    assert_strictly_increasing(frames)
    assert {f["conv_id"] for f in frames} == {str(conv_id)}
    turn_id = frames[0]["data"]["turn_id"]
    assert frames[0]["data"]["text"] == "Hello there, how are you?"
    started = of_type(frames, "turn.started")[0]["data"]
    assert started["turn_id"] == turn_id
    assert started["runtime_key"] == "default"
    assert started["fingerprint"] == greeting["data"]["fingerprint"]
    assert started["profile_version"] == 1
    deltas = of_type(frames, "llm.delta")
    assert all(set(d["data"]) == {"message_id", "delta"} for d in deltas)  # the new text only
    final = of_type(frames, "llm.final")[0]["data"]
    assert final["text"] == "".join(d["data"]["delta"] for d in deltas)
    assert final["stop_reason"] == "stop"
    assert final["text"].startswith("(offline")
    completed = frames[-1]["data"]
    assert completed["turn_id"] == turn_id
    assert completed["text"] == final["text"]
    assert isinstance(completed["duration_ms"], int)
    async with http(server, alice) as client:
        stored = (await get_conversation(client, conv_id))["turns"]
    assert len(stored) == 1
    assert stored[0]["turn_id"] == turn_id
    assert stored[0]["status"] == "completed"
    assert stored[0]["text"] == final["text"]
    assert stored[0]["fingerprint"] == started["fingerprint"]


# --------------------------------------------------------------------------- profile selection


async def test_selected_profile_drives_new_and_existing_conversations(server, alice):
    async with http(server, alice) as client:
        response = await client.post("/api/chat/profile", json={"slug": "analyst"})
        assert response.status_code == 200, response.text
        assert response.json()["source"] == "selection"
        assert response.json()["slug"] == "analyst"
        fp_a = (await resolve(client, "analyst"))["fingerprint"]
        fp_b = (await resolve(client, "default"))["fingerprint"]
        assert fp_a != fp_b

        conv_1 = new_conv_id()
        async with ws_connect(server, alice, conv_id=conv_1) as ws_1:
            hello_1 = (await hello(ws_1))["data"]
            assert hello_1["runtime_key"] == "analyst"
            assert hello_1["fingerprint"] == fp_a
            first = await run_turn(ws_1, "Compare two options and recommend one")
            assert types_of(first)[-1] == "turn.completed", types_of(first)
            assert "runtime.switched" not in types_of(first)
            assert of_type(first, "turn.started")[0]["data"]["runtime_key"] == "analyst"

            response = await client.post("/api/chat/profile", json={"slug": "default"})
            assert response.status_code == 200, response.text
            assert response.json()["slug"] == "default"

            # A NEW conversation starts on B.
            async with ws_connect(server, alice, conv_id=new_conv_id()) as ws_2:
                hello_2 = (await hello(ws_2))["data"]
            assert hello_2["runtime_key"] == "default"
            assert hello_2["profile"] == {
                "registry": "default",
                "slug": "default",
                "version": 1,
                "ref": "default",
                "label": None,
            }
            assert hello_2["fingerprint"] == fp_b

            # The EXISTING conversation switches on its next turn.
            second = await run_turn(ws_1, "And now?")
        shape = turn_shape(second)
        assert shape[:3] == ["chat.message", "runtime.switched", "turn.started"], shape
        assert shape[-1] == "turn.completed"
        switched = of_type(second, "runtime.switched")[0]["data"]
        assert switched["from"] == {"runtime_key": "analyst", "fingerprint": fp_a, "profile_version": 1}
        assert switched["to"] == {"runtime_key": "default", "fingerprint": fp_b, "profile_version": 1}
        assert switched["reason"] == "profile_changed"
        assert of_type(second, "turn.started")[0]["data"]["fingerprint"] == fp_b

        conversation = await get_conversation(client, conv_1)
    turns = conversation["turns"]
    assert [t["status"] for t in turns] == ["completed", "completed"]
    assert [(t["runtime_key"], t["registry"], t["profile_version"], t["fingerprint"]) for t in turns] == [
        ("analyst", "default", 1, fp_a),
        ("default", "default", 1, fp_b),
    ]
    assert turns[0]["middlewares"] == [{"name": "suggestions", "id": "followups"}]
    assert turns[0]["tools"] == ["calculator"]
    assert turns[1]["middlewares"] == [] and turns[1]["tools"] == []
    assert conversation["current_runtime_key"] == "default"
    assert conversation["current_fingerprint"] == fp_b


async def test_tool_round_trip_with_the_agent_profile(server, alice):
    conv_id = new_conv_id()
    async with ws_connect(server, alice, conv_id=conv_id, profile="agent") as ws:
        await hello(ws)
        frames = await run_turn(ws, "What is 17.5% of 2,340?")
    kinds = types_of(frames)
    assert kinds[-1] == "turn.completed", kinds
    start, result, done = of_type(frames, "tool.start"), of_type(frames, "tool.result"), of_type(frames, "tool.done")
    assert len(start) == len(result) == len(done) == 1, kinds
    assert kinds.index("tool.start") < kinds.index("tool.result") < kinds.index("tool.done")
    call_id = start[0]["data"]["call_id"]
    assert start[0]["data"]["name"] == "calculator"
    assert "2,340" in start[0]["data"]["input"]["expression"] or "2340" in start[0]["data"]["input"]["expression"]
    assert result[0]["data"]["call_id"] == done[0]["data"]["call_id"] == call_id
    assert "error" not in result[0]["data"], result[0]
    assert str(result[0]["data"]["result"]["result"]) == "409.5"
    # Two engine rounds: the tool call, then the answer from the tool result.
    finals = of_type(frames, "llm.final")
    assert [f["data"]["stop_reason"] for f in finals] == ["tool_calls", "stop"]
    assert kinds.index("tool.done") < kinds.index("llm.final", kinds.index("tool.done"))
    assert "409.5" in finals[-1]["data"]["text"]
    assert_strictly_increasing(frames)
    async with http(server, alice) as client:
        (turn,) = (await get_conversation(client, conv_id))["turns"]
    assert turn["status"] == "completed"
    assert [(c["name"], str(c["result"]["result"])) for c in turn["tool_calls"]] == [("calculator", "409.5")]
    assert "409.5" in turn["text"]


# --------------------------------------------------------------------------- refusals


async def test_another_users_conversation_is_closed_4403(server, alice, bob):
    conv_id = new_conv_id()
    async with ws_connect(server, alice, conv_id=conv_id) as ws:
        await hello(ws)
    async with ws_connect(server, bob, conv_id=conv_id) as ws:
        frames, code = await expect_closed(ws)
    assert code == 4403
    assert "ws.hello" not in types_of(frames)
    async with http(server, bob) as client:
        response = await client.get(f"/api/chat/conversations/{conv_id}")
        assert response.status_code in (403, 404), response.text
        response = await client.post(f"/api/chat/conversations/{conv_id}/messages", json={"prompt": "hi"})
        assert response.status_code in (403, 404), response.text
    async with http(server, alice) as client:
        assert (await get_conversation(client, conv_id))["turns"] == []


async def test_anonymous_socket_is_closed_4401(server):
    async with ws_connect(server, None, conv_id=new_conv_id()) as ws:
        frames, code = await expect_closed(ws)
    assert code == 4401
    assert "ws.hello" not in types_of(frames)


async def test_bad_token_is_closed_4401(server):
    async with ws_connect(server, None, conv_id=new_conv_id(), token="not-a-token") as ws:
        _, code = await expect_closed(ws)
    assert code == 4401


async def test_foreign_origin_is_rejected_at_the_handshake(server, alice):
    with pytest.raises(InvalidStatus) as excinfo:
        async with ws_connect(server, alice, conv_id=new_conv_id(), headers={"Origin": "http://evil.example"}):
            pass
    assert excinfo.value.response.status_code == 403
    # The server's own origin is fine.
    async with ws_connect(server, alice, conv_id=new_conv_id(), headers={"Origin": server.url}) as ws:
        assert (await hello(ws))["type"] == "ws.hello"


async def test_bad_frames_get_an_error_and_the_socket_stays_usable(server, alice):
    async with ws_connect(server, alice, conv_id=new_conv_id()) as ws:
        await hello(ws)
        await send(ws, "{not json")
        error = await recv(ws)
        assert error["type"] == "error", error
        assert error["data"]["code"] == "bad_frame"
        assert error["data"]["message"]
        await send(ws, "[1, 2, 3]")
        assert (await recv(ws))["data"]["code"] == "bad_frame"
        await send(ws, {"type": "no.such.type"})
        assert (await recv(ws))["data"]["code"] == "unknown_type"
        await send(ws, {"type": "chat.send", "prompt": "   "})
        invalid = await recv(ws)
        assert invalid["type"] == "error" and invalid["data"]["code"] == "invalid", invalid
        await send(ws, {"type": "ws.ping"})
        pong = await recv(ws)
        assert pong["type"] == "ws.pong", pong
        assert isinstance(pong["data"]["server_time_ms"], int)
        frames = await run_turn(ws, "still there?")
        assert types_of(frames)[-1] == "turn.completed"


# --------------------------------------------------------------------------- durability and replay


async def test_disconnect_mid_turn_the_turn_still_completes(slow_server, server, alice):
    conv_id = new_conv_id()
    async with ws_connect(slow_server, alice, conv_id=conv_id) as ws:
        await hello(ws)
        await send_turn(ws, "Please keep going after I leave")
        seen = await read_until(ws, "llm.delta")
    # The socket is gone after the first delta: the rest of the reply is still being produced.
    last_seen = seen[-1]["seq"]
    turn_id = seen[0]["data"]["turn_id"]
    async with http(slow_server, alice) as client:
        conversation = await get_conversation(client, conv_id)
        assert conversation["turns"][0]["status"] == "running", "the turn finished before the socket closed"
        conversation = await wait_turns_finished(client, conv_id, 1)
        (turn,) = conversation["turns"]
        assert turn["turn_id"] == turn_id
        assert turn["status"] == "completed"
        assert turn["text"].startswith("(offline")
        page = (await client.get(f"/api/chat/conversations/{conv_id}/events", params={"since_seq": last_seen})).json()
    missed = page["frames"]
    assert missed, "the frames produced after the disconnect were not stored"
    assert "llm.delta" not in types_of(missed)  # deltas fan out; each message's llm.final holds its text
    assert all(f["seq"] > last_seen for f in missed)
    assert_strictly_increasing(missed)
    assert missed[-1]["type"] == "turn.completed"
    assert missed[-1]["data"]["text"] == turn["text"]
    assert "llm.final" in types_of(missed)


async def test_reconnect_and_replay_missed_frames(server, alice):
    conv_id = new_conv_id()
    async with ws_connect(server, alice, conv_id=conv_id) as ws:
        await hello(ws)
        live = await run_turn(ws, "first message")
    async with http(server, alice) as client:
        everything = (await client.get(f"/api/chat/conversations/{conv_id}/events", params={"since_seq": 0})).json()
        # Stored frames are exactly the broadcast ones but the deltas (same ids, seq and data).
        stored = [f for f in live if f["type"] != "llm.delta"]
        assert everything == {"frames": stored, "next_since_seq": live[-1]["seq"], "more": False}
        cut = live[2]["seq"]
        replay = await client.get(f"/api/chat/conversations/{conv_id}/events", params={"since_seq": cut})
        assert replay.status_code == 200, replay.text
        assert replay.json()["frames"] == [f for f in stored if f["seq"] > cut]
        assert (
            await client.get(f"/api/chat/conversations/{conv_id}/events", params={"since_seq": -1})
        ).status_code == 400

        # A second turn while no socket is open; a reconnecting client catches up with since_seq.
        posted = await client.post(f"/api/chat/conversations/{conv_id}/messages", json={"prompt": "while away"})
        assert posted.status_code == 202, posted.text
        await wait_turns_finished(client, conv_id, 2)
        async with ws_connect(server, alice, conv_id=conv_id) as ws:
            greeting = await hello(ws)
            missed = (
                await client.get(f"/api/chat/conversations/{conv_id}/events", params={"since_seq": live[-1]["seq"]})
            ).json()["frames"]
            assert types_of(missed) == ["chat.message", "turn.started", "llm.start", "llm.final", "turn.completed"]
            assert missed[0]["data"]["turn_id"] == posted.json()["turn_id"]
            assert greeting["data"]["last_seq"] == missed[-1]["seq"]
            assert greeting["seq"] == 0  # hello is for this socket only: not numbered
            assert greeting["data"]["fingerprint"] == of_type(missed, "turn.started")[0]["data"]["fingerprint"]
            # The reconnected socket is live again.
            third = await run_turn(ws, "back again")
        assert turn_shape(third) == STREAM_SHAPE
        assert third[0]["seq"] > missed[-1]["seq"]


# --------------------------------------------------------------------------- REST-only chat


async def test_plain_user_creates_a_conversation_over_rest(server, alice):
    """Any authenticated user may chat; creating a conversation is not a profile write."""
    async with http(server, alice) as client:
        response = await client.post("/api/chat/conversations", json={"profile": "analyst"})
        assert response.status_code == 201, response.text
        body = response.json()
        assert body["mount"] == "chat"
        assert body["profile_selection"] == {
            "registry": "default",
            "slug": "analyst",
            "ref": "analyst",
            "mode": "follow",
        }
        listed = (await client.get("/api/chat/conversations")).json()
    assert [c["conv_id"] for c in listed["results"]] == [body["conv_id"]]


async def test_plain_user_renames_own_conversation_over_rest(server, alice):
    conv_id = new_conv_id()
    async with ws_connect(server, alice, conv_id=conv_id) as ws:
        await hello(ws)
    async with http(server, alice) as client:
        response = await client.patch(f"/api/chat/conversations/{conv_id}", json={"title": "My chat"})
        assert response.status_code == 200, response.text
        assert response.json()["title"] == "My chat"


async def test_rest_message_with_wait_returns_the_finished_turn(server, alice):
    async with http(server, alice) as client:
        created = await client.post("/api/chat/conversations", json={})
        assert created.status_code == 201, created.text
        conv_id = created.json()["conv_id"]
        response = await client.post(
            f"/api/chat/conversations/{conv_id}/messages", params={"wait": 1}, json={"prompt": "Hello over REST"}
        )
        assert response.status_code == 200, response.text
        turn = response.json()
        assert turn["status"] == "completed"
        assert turn["prompt"] == "Hello over REST"
        assert turn["text"].startswith("(offline")
        assert turn["runtime_key"] == "default"
        assert turn["registry"] == "default"
        assert turn["profile_version"] == 1
        assert turn["fingerprint"] == (await resolve(client, "default"))["fingerprint"]
        assert turn["started_at_ms"] <= turn["finished_at_ms"]
        events = (await client.get(f"/api/chat/conversations/{conv_id}/events")).json()["frames"]
        assert types_of(events) == ["chat.message", "turn.started", "llm.start", "llm.final", "turn.completed"]
        assert events[-1]["data"]["text"] == turn["text"]


async def test_rest_message_without_wait_is_accepted_then_completes(server, alice):
    async with http(server, alice) as client:
        conv_id = (await client.post("/api/chat/conversations", json={})).json()["conv_id"]
        async with ws_connect(server, alice, conv_id=conv_id) as ws:
            await hello(ws)
            response = await client.post(f"/api/chat/conversations/{conv_id}/messages", json={"prompt": "async please"})
            assert response.status_code == 202, response.text
            body = response.json()
            assert body["status"] in ("queued", "running", "completed")
            # The turn runs on the server's loop: the conversation's socket sees it stream.
            frames = await read_turn(ws, body["turn_id"])
        assert turn_shape(frames) == STREAM_SHAPE, types_of(frames)
        assert frames[0]["data"]["turn_id"] == body["turn_id"]
        conversation = await poll(
            lambda: get_conversation(client, conv_id), lambda c: c["turns"][0]["status"] in FINISHED_STATUSES
        )
    (turn,) = conversation["turns"]
    assert turn["turn_id"] == body["turn_id"]
    assert turn["status"] == "completed"
    assert turn["text"] == frames[-1]["data"]["text"]


# --------------------------------------------------------------------------- a worker dies mid-turn


def _manage(database_url: str, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "DATABASE_URL": database_url, "DJANGO_SETTINGS_MODULE": "config.settings"}
    return subprocess.run(
        [sys.executable, "manage.py", *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60
    )


async def _start_turn_and_kill_worker(doomed: LiveServer, user, conv_id) -> str:
    async with ws_connect(doomed, user, conv_id=conv_id) as ws:
        await hello(ws)
        await send_turn(ws, "This turn will not survive its worker")
        frames = await read_until(ws, "turn.started")
        doomed.kill()
    return frames[0]["data"]["turn_id"]


async def test_worker_killed_mid_turn_is_marked_interrupted_by_chat_recover(server, alice):
    doomed = LiveServer(env={"CHAT_OFFLINE_DELAY_SECONDS": "0.5"}).start()
    try:
        conv_id = new_conv_id()
        turn_id = await _start_turn_and_kill_worker(doomed, alice, conv_id)
    finally:
        doomed.stop()
    async with http(server, alice) as client:
        (turn,) = (await get_conversation(client, conv_id))["turns"]
        assert turn["turn_id"] == turn_id
        assert turn["status"] == "running"  # nobody has noticed yet

        result = await asyncio.to_thread(_manage, server_database_url(), "chat_recover")
        assert result.returncode == 0, result.stderr
        assert "interrupted turns marked: 1" in result.stdout

        (turn,) = (await get_conversation(client, conv_id))["turns"]
        assert turn["status"] == "interrupted"
        assert turn["error"]["code"] == "interrupted"
        assert turn["finished_at_ms"] is not None

        # The conversation is usable again: a new turn completes (on another worker).
        response = await client.post(
            f"/api/chat/conversations/{conv_id}/messages", params={"wait": 1}, json={"prompt": "are you back?"}
        )
        assert response.status_code == 200, response.text
        assert response.json()["status"] == "completed"
        turns = (await get_conversation(client, conv_id))["turns"]
    assert [t["status"] for t in turns] == ["interrupted", "completed"]
    assert [t["prompt"] for t in turns] == ["This turn will not survive its worker", "are you back?"]


async def test_worker_killed_mid_turn_is_interrupted_when_its_lease_expires(server, alice, tmp_path):
    # These two must be the only workers on their database: the shared server sweeps expired leases
    # too, and a turn it took over would stream into its own in-memory layer, not to this socket.
    database = {"DATABASE_URL": database_copy(tmp_path)}
    doomed = LiveServer(env={**database, "CHAT_OFFLINE_DELAY_SECONDS": "0.5", "CHAT_TURN_LEASE_SECONDS": "1"}).start()
    try:
        conv_id = new_conv_id()
        turn_id = await _start_turn_and_kill_worker(doomed, alice, conv_id)
    finally:
        doomed.stop()
    # No wait for the lease: the restarted worker interrupts the turn at start if its lease has run
    # out, else on the first sweep after it does; the next turn is queued behind it until then.
    restarted = LiveServer(env=database).start()
    try:
        async with ws_connect(restarted, alice, conv_id=conv_id) as ws:
            await hello(ws)
            frames = await run_turn(ws, "next question")
        assert types_of(frames)[-1] == "turn.completed", types_of(frames)
        async with http(restarted, alice) as client:
            turns = (await get_conversation(client, conv_id))["turns"]
    finally:
        restarted.stop()
    assert turns[0]["turn_id"] == turn_id
    assert [t["status"] for t in turns] == ["interrupted", "completed"]
    assert turns[0]["error"]["code"] == "interrupted"
