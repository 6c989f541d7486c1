"""Rejoining mid-turn through a real server: a socket reconnecting with `?since_seq=N`, and a REST client
polling `events?since_seq=N`, get the turn's text so far (`llm.snapshot`) and then the live frames, with no
duplicate and no gap, wherever the cut falls (before the first delta, early, late, across a checkpoint)."""

from __future__ import annotations

import asyncio
import itertools

import pytest

from .helpers import hello, http, new_conv_id, read_turn, read_until, send_turn, ws_connect
from .server import LiveServer

pytestmark = pytest.mark.e2e
PROMPT = "Please take your time and tell me, slowly and in order, everything about the lighthouse keepers of old"


@pytest.fixture(scope="module")
def pacing_server(django_db_setup, django_db_blocker):
    """Chunks 50 ms apart and a checkpoint every 0.2 s: a cut falls before, between and after checkpoints."""
    server = LiveServer(env={"CHAT_OFFLINE_DELAY_SECONDS": "0.05", "CHAT_CHECKPOINT_SECONDS": "0.2"}).start()
    yield server
    server.stop()


def deltas_at_least(count: int):
    seen = {"n": 0}

    def enough(frame: dict) -> bool:
        seen["n"] += frame["type"] == "llm.delta"
        return (frame["type"] == "llm.start" and count == 0) or seen["n"] >= count

    return enough


def text_of(frames: list[dict], start: str = "") -> str:
    """The message text a client shows: deltas add, a snapshot or final replaces."""
    text = start
    for frame in frames:
        if frame["type"] == "llm.delta":
            text += frame["data"]["delta"]
        elif frame["type"] in ("llm.snapshot", "llm.final"):
            text = frame["data"]["text"]
    return text


async def cut_after(server: LiveServer, user, conv_id, deltas: int) -> list[dict]:
    async with ws_connect(server, user, conv_id=conv_id) as ws:
        await hello(ws)
        await send_turn(ws, PROMPT)
        return await read_until(ws, deltas_at_least(deltas))


@pytest.mark.parametrize("deltas", [0, 1, 5, 9])
async def test_a_socket_rejoining_mid_turn_misses_nothing_and_gets_nothing_twice(pacing_server, server, alice, deltas):
    conv_id = new_conv_id()
    seen = await cut_after(pacing_server, alice, conv_id, deltas)
    last = seen[-1]["seq"]
    await asyncio.sleep(0.15)  # a few deltas go out while no socket listens
    async with ws_connect(pacing_server, alice, conv_id=conv_id, since_seq=last) as ws:
        await hello(ws)
        rest = await read_turn(ws, seen[0]["data"]["turn_id"])

    final = next(f["data"]["text"] for f in rest if f["type"] == "llm.final")
    before = text_of(seen)
    # After every frame the client shows a prefix of the final text: a frame twice or a hole would not be.
    for end in range(len(rest) + 1):
        assert final.startswith(text_of(rest[:end], before)), [f["type"] for f in rest[:end]]
    assert text_of(rest, before) == final
    numbered = [f["seq"] for f in rest if f["type"] != "llm.snapshot"]
    assert all(seq > last for seq in numbered)
    assert numbered == sorted(set(numbered))  # strictly increasing: nothing twice
    snapshots = [f for f in rest if f["type"] == "llm.snapshot"]
    assert len(snapshots) == (1 if deltas < 5 else len(snapshots))  # early cuts rejoin mid-message
    for snapshot in snapshots:
        assert snapshot["data"]["text"].startswith(before)
    assert rest[-1]["type"] == "turn.completed"


@pytest.mark.parametrize("deltas", [1, 8])
async def test_a_rest_client_polling_mid_turn_gets_a_snapshot_then_the_rest(pacing_server, server, alice, deltas):
    conv_id = new_conv_id()
    seen = await cut_after(pacing_server, alice, conv_id, deltas)
    since, pages = 0, []
    async with http(pacing_server, alice) as client:
        for _ in range(200):
            response = await client.get(f"/api/chat/conversations/{conv_id}/events", params={"since_seq": since})
            assert response.status_code == 200, response.text
            page = response.json()
            pages.append(page)
            since = page["next_since_seq"]
            if any(f["type"] == "turn.completed" for f in page["frames"]):
                break
            await asyncio.sleep(0.05)

    frames = [f for page in pages for f in page["frames"]]
    numbered = [f["seq"] for f in frames if f["type"] != "llm.snapshot"]
    assert numbered == sorted(set(numbered))  # no frame twice across pages
    assert [f["type"] for f in frames if f["type"] != "llm.snapshot"] == [
        "chat.message",
        "turn.started",
        "llm.start",
        "llm.final",
        "turn.completed",
    ]
    snapshots = [f["data"]["text"] for f in frames if f["type"] == "llm.snapshot"]
    final = next(f["data"]["text"] for f in frames if f["type"] == "llm.final")
    assert snapshots and snapshots[0].startswith(text_of(seen))  # the text so far, at once
    assert all(final.startswith(s) for s in snapshots)
    assert all(len(a) <= len(b) for a, b in itertools.pairwise(snapshots))
