"""Scale-out: two daphne worker processes on one PostgreSQL database and one Redis channel layer.

Stage 2 of `make test` runs this module with DATABASE_URL (PostgreSQL) and REDIS_URL set. Without
them the assertions would prove nothing (an in-memory layer cannot cross processes), so the module
FAILS loudly instead of skipping.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest
from channels_redis.pubsub import RedisPubSubChannelLayer
from django.conf import settings
from django.db import connection
from django.utils.module_loading import import_string

from chat.dispatcher import RECOVER_SECONDS

from .helpers import (
    ApiUser,
    assert_strictly_increasing,
    explained,
    get_conversation,
    hello,
    http,
    make_user,
    new_conv_id,
    of_type,
    poll,
    read_turn,
    read_until,
    run_turn,
    seed,
    send,
    send_turn,
    turn_shape,
    types_of,
    wait_turns_finished,
    ws_connect,
)
from .server import LiveServer, worker_pair

pytestmark = [pytest.mark.scaleout, pytest.mark.e2e]

STREAM_SHAPE = ["chat.message", "turn.started", "llm.start", "llm.delta", "llm.final", "turn.completed"]
# Long enough that the offline engine's reply takes a few seconds at 0.2 s per chunk.
SLOW_PROMPT = (
    "Please take your time and repeat this whole sentence back to me slowly so that there is plenty "
    "of room to interrupt you"
)


@pytest.fixture(scope="module")
def scaleout_backends(django_db_setup) -> None:
    backend = settings.CHANNEL_LAYERS["default"]["BACKEND"]
    problems = []
    if not issubclass(import_string(backend), RedisPubSubChannelLayer):
        problems.append(f"the channel layer is {backend}, not a Redis one: set REDIS_URL")
    if connection.vendor != "postgresql":
        problems.append(f"the database is {connection.vendor}, not PostgreSQL: set DATABASE_URL=postgres://...")
    if problems:
        pytest.fail(
            "the scale-out suite needs PostgreSQL and Redis (stage 2 of `make test`): " + "; ".join(problems),
            pytrace=False,
        )


@pytest.fixture(scope="module")
def workers(scaleout_backends, django_db_blocker) -> Iterator[tuple[LiveServer, LiveServer]]:
    """Two worker processes; their offline engines wait 0.2 s between chunks so turns overlap."""
    with worker_pair({"REDIS_URL": settings.REDIS_URL, "CHAT_OFFLINE_DELAY_SECONDS": "0.2"}) as pair:
        yield pair


@pytest.fixture
def pair(workers, transactional_db) -> tuple[LiveServer, LiveServer]:
    seed()
    return workers


@pytest.fixture
def alice(pair) -> ApiUser:
    return make_user("alice")


@pytest.fixture
def editor(pair) -> ApiUser:
    return make_user("editor", perms=["profiles.change_profile"])


@pytest.fixture
def clerk(pair) -> ApiUser:
    return make_user("clerk", perms=["inventory.add_sale"])


def signature(frames: list[dict]) -> list[tuple[int, str, str]]:
    return [(f["seq"], f["type"], f["id"]) for f in frames]


async def test_both_workers_answer_with_the_same_runtime(pair, alice):
    w1, w2 = pair
    conv_id = new_conv_id()
    async with ws_connect(w1, alice, conv_id=conv_id) as a:
        hello_a = await hello(a)
        async with ws_connect(w2, alice, conv_id=conv_id) as b:
            hello_b = await hello(b)
            first = await run_turn(a, "numbered by worker one")
            await read_turn(b)
            second = await run_turn(b, "numbered by worker two")
    assert hello_a["data"]["fingerprint"] == hello_b["data"]["fingerprint"]
    assert hello_a["data"]["profile"] == hello_b["data"]["profile"]
    # one sequence per conversation, whichever worker numbers it (the counter is in Redis)
    assert_strictly_increasing(first + second)


async def test_every_socket_on_every_worker_gets_every_frame(pair, alice):
    w1, w2 = pair
    conv_id = new_conv_id()
    async with explained(w1, alice, conv_id), ws_connect(w1, alice, conv_id=conv_id) as a:
        await hello(a)
        async with ws_connect(w2, alice, conv_id=conv_id) as b:
            await hello(b)
            await send_turn(a, "Hello from worker one")
            frames_a, frames_b = await asyncio.gather(read_turn(a), read_turn(b))
    assert turn_shape(frames_a) == STREAM_SHAPE, types_of(frames_a)
    assert signature(frames_a) == signature(frames_b)
    assert frames_a == frames_b
    assert_strictly_increasing(frames_a)
    async with http(w2, alice) as client:
        stored = (await client.get(f"/api/chat/conversations/{conv_id}/events")).json()["frames"]
    assert stored == [f for f in frames_a if f["type"] != "llm.delta"]


async def test_a_rest_turn_on_one_worker_streams_to_a_socket_on_the_other(pair, alice):
    w1, w2 = pair
    conv_id = new_conv_id()
    async with explained(w1, alice, conv_id), ws_connect(w1, alice, conv_id=conv_id) as a:
        await hello(a)
        async with http(w2, alice) as client:
            response = await client.post(f"/api/chat/conversations/{conv_id}/messages", json={"prompt": "via REST"})
            assert response.status_code == 202, response.text
            frames = await read_turn(a, response.json()["turn_id"])
            assert turn_shape(frames) == STREAM_SHAPE, types_of(frames)
            (turn,) = (await wait_turns_finished(client, conv_id, 1))["turns"]
    assert turn["status"] == "completed"
    assert turn["text"] == frames[-1]["data"]["text"]


async def test_a_second_turn_is_queued_and_runs_after_the_first(pair, alice):
    w1, w2 = pair
    conv_id = new_conv_id()
    async with explained(w1, alice, conv_id), ws_connect(w1, alice, conv_id=conv_id) as a:
        await hello(a)
        async with ws_connect(w2, alice, conv_id=conv_id) as b:
            await hello(b)
            await send_turn(a, SLOW_PROMPT)
            frames_a = await read_until(a, "llm.delta")  # the first turn is running on worker 1
            first_id = frames_a[0]["data"]["turn_id"]
            await send_turn(b, "second question")
            frames_b = await read_until(b, lambda f: f["type"] == "chat.queued")
            second_id = frames_b[-1]["data"]["turn_id"]
            assert second_id != first_id
            assert frames_b[-1]["data"]["position"] == 1
            more_a, more_b = await asyncio.gather(read_turn(a, second_id), read_turn(b, second_id))
            frames_a += more_a
            frames_b += more_b
    assert_strictly_increasing(frames_a)
    assert_strictly_increasing(frames_b)
    assert signature(frames_a) == signature(frames_b), "the two workers' sockets saw different frames"
    events = [(f["type"], f["data"].get("turn_id")) for f in frames_a]
    assert ("turn.completed", first_id) in events, events
    assert ("turn.started", second_id) in events, events
    assert events.index(("turn.completed", first_id)) < events.index(("turn.started", second_id)), events
    assert events.index(("chat.queued", second_id)) < events.index(("turn.completed", first_id)), events
    async with http(w1, alice) as client:
        turns = (await wait_turns_finished(client, conv_id, 2))["turns"]
    assert [(t["turn_id"], t["status"]) for t in turns] == [(first_id, "completed"), (second_id, "completed")]
    assert turns[0]["finished_at_ms"] <= turns[1]["started_at_ms"], "two turns of one conversation overlapped"


async def test_cancel_from_worker_two_stops_a_turn_running_on_worker_one(pair, alice):
    w1, w2 = pair
    conv_id = new_conv_id()
    async with explained(w1, alice, conv_id), ws_connect(w1, alice, conv_id=conv_id) as a:
        await hello(a)
        async with ws_connect(w2, alice, conv_id=conv_id) as b:
            await hello(b)
            await send_turn(a, SLOW_PROMPT)
            frames_b = await read_until(b, "llm.delta")
            turn_id = frames_b[0]["data"]["turn_id"]
            await send(b, {"type": "chat.cancel"})
            frames_a, more_b = await asyncio.gather(read_turn(a, turn_id), read_turn(b, turn_id))
            frames_b += more_b
            assert types_of(frames_a)[-1] == "turn.cancelled", types_of(frames_a)
            assert types_of(frames_b)[-1] == "turn.cancelled", types_of(frames_b)
            assert frames_a[-1] == frames_b[-1]
            assert "llm.final" not in types_of(frames_a), "the turn was not stopped mid-reply"
            # The conversation is usable again, from either worker.
            await send_turn(b, "after the cancel")
            after = await read_turn(a)
    assert types_of(after)[-1] == "turn.completed", types_of(after)
    async with http(w2, alice) as client:
        turns = (await wait_turns_finished(client, conv_id, 2))["turns"]
    assert [t["status"] for t in turns] == ["cancelled", "completed"]
    assert turns[0]["turn_id"] == turn_id
    # The partial reply is kept with the cancelled turn.
    assert turns[0]["text"].startswith(of_type(frames_a, "llm.delta")[0]["data"]["delta"])


async def test_concurrent_patches_on_two_workers_one_wins(pair, editor):
    w1, w2 = pair
    async with http(w1, editor) as c1, http(w2, editor) as c2:
        version = (await c1.get("/api/chat/profiles/analyst")).json()["metadata"]["version"]
        for round_no in range(5):
            responses = await asyncio.gather(
                c1.patch(
                    "/api/chat/profiles/analyst", json={"expected_version": version, "description": f"w1 {round_no}"}
                ),
                c2.patch(
                    "/api/chat/profiles/analyst", json={"expected_version": version, "description": f"w2 {round_no}"}
                ),
            )
            statuses = sorted(r.status_code for r in responses)
            assert statuses == [200, 409], [(r.status_code, r.text) for r in responses]
            winner = next(r for r in responses if r.status_code == 200).json()
            loser = next(r for r in responses if r.status_code == 409).json()["error"]
            assert loser["code"] == "version_conflict"
            assert (loser["expected"], loser["actual"]) == (version, version + 1)
            assert winner["metadata"]["version"] == version + 1
            current = (await c2.get("/api/chat/profiles/analyst")).json()
            assert current["description"] == winner["description"]
            version += 1
        history = (await c1.get("/api/chat/profiles/analyst/versions")).json()
    assert [v["version"] for v in history] == list(range(version, 0, -1))


async def test_concurrent_sales_across_workers_never_oversell(pair, clerk):
    w1, w2 = pair
    sku = "A-1033"  # 5 in stock
    async with http(w1, clerk) as c1, http(w2, clerk) as c2:
        assert (await c1.get(f"/inventory/api/items/{sku}")).json()["qty"] == 5
        responses = await asyncio.gather(
            *((c1 if i % 2 else c2).post("/inventory/api/sales", json={"sku": sku, "qty": 1}) for i in range(10))
        )
        statuses = sorted(r.status_code for r in responses)
        assert statuses == [201] * 5 + [400] * 5, [(r.status_code, r.text) for r in responses]
        assert sorted(r.json()["item"]["qty"] for r in responses if r.status_code == 201) == [0, 1, 2, 3, 4]
        assert (await c2.get(f"/inventory/api/items/{sku}")).json()["qty"] == 0
        sales = (await c1.get("/inventory/api/sales", params={"page_size": 200})).json()["results"]
    assert len([s for s in sales if s["sku"] == sku]) == 5


async def test_stored_conversation_is_the_same_from_both_workers(pair, alice):
    w1, w2 = pair
    conv_id = new_conv_id()
    async with explained(w1, alice, conv_id), ws_connect(w1, alice, conv_id=conv_id) as a:
        await hello(a)
        await send_turn(a, "hi")
        await read_turn(a)
    async with http(w1, alice) as c1, http(w2, alice) as c2:
        one, two = await get_conversation(c1, conv_id), await get_conversation(c2, conv_id)
    assert one == two
    assert [t["status"] for t in one["turns"]] == ["completed"]


@pytest.fixture
def lease_workers(scaleout_backends, transactional_db):
    """Two workers with a 2 s lease and a checkpoint every 0.3 s; the test kills the second one."""
    seed()
    env = {
        "REDIS_URL": settings.REDIS_URL,
        "CHAT_OFFLINE_DELAY_SECONDS": "0.2",
        "CHAT_TURN_LEASE_SECONDS": "2",
        "CHAT_CHECKPOINT_SECONDS": "0.3",
    }
    survivor = LiveServer(env=env).start()
    try:
        doomed = LiveServer(env=env).start()
    except BaseException:
        survivor.stop()
        raise
    yield survivor, doomed, make_user("alice")
    doomed.stop()
    survivor.stop()


async def test_a_worker_killed_mid_turn_loses_its_lease_and_the_other_worker_goes_on(lease_workers):
    """SIGKILL one of two workers mid-turn: within the lease the survivor interrupts the turn (keeping its
    last checkpoint of text), keeps serving other conversations meanwhile, then runs the turn queued behind."""
    survivor, doomed, alice = lease_workers
    conv_id, other_conv = new_conv_id(), new_conv_id()
    async with (
        ws_connect(survivor, alice, conv_id=conv_id) as watcher,
        ws_connect(doomed, alice, conv_id=conv_id) as ws,
    ):
        await hello(watcher)
        await hello(ws)
        await send_turn(ws, SLOW_PROMPT)
        frames = await read_until(ws, lambda f: f["type"] == "llm.delta" and f["seq"] >= 8)
        await send_turn(ws, "the turn queued behind it")
        await read_until(ws, "chat.queued")
        streamed = "".join(f["data"]["delta"] for f in frames if f["type"] == "llm.delta")
        async with http(survivor, alice) as client:  # wait for a checkpoint to store some partial text
            await poll(lambda: get_conversation(client, conv_id), lambda c: bool(c["turns"][0]["text"]))
        doomed.kill()
        killed_at = asyncio.get_running_loop().time()

        async with ws_connect(survivor, alice, conv_id=other_conv) as other:
            await hello(other)
            served = await run_turn(other, "meanwhile, in another conversation")
        assert served[-1]["type"] == "turn.completed"

        seen = await read_until(watcher, lambda f: f["type"] == "turn.failed", timeout=15)
        interrupted_after = asyncio.get_running_loop().time() - killed_at
        failed = seen[-1]["data"]
        queued_id = next(f["data"]["turn_id"] for f in seen if f["type"] == "chat.queued")
        rest = await read_turn(watcher, queued_id)
    async with http(survivor, alice) as client:
        turns = (await get_conversation(client, conv_id))["turns"]

    assert failed["status"] == "interrupted" and failed["error"]["code"] == "interrupted"
    # Interrupted about when its 2 s lease ran out (the sweep runs every tick); the bound is the recovery
    # period, so a loaded machine's slow ticks do not make this flaky.
    assert interrupted_after < RECOVER_SECONDS
    assert failed["text"] and streamed.startswith(failed["text"][: len(streamed)])  # partial text kept
    assert rest[-1]["type"] == "turn.completed"
    assert [t["status"] for t in turns] == ["interrupted", "completed"]
    assert turns[0]["text"] == failed["text"]
