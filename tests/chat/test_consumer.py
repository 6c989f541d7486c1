"""The chat websocket through `config.asgi.application` (origin check, token auth, routing, consumer, worker).

Turns run as tasks on the test's event loop (the consumer binds the dispatcher to it), so every test
reads frames until the turn's terminal frame (or polls the Turn row) before it ends.
"""

from __future__ import annotations

import itertools
import time
import uuid

import pytest
from channels.db import database_sync_to_async

from chat.models import Conversation, ConversationEvent, Turn
from profiles.models import ProfileSelection
from profiles.selectors import current_profile, profile_resolve

from .factories import ConversationFactory

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("seeded_registries", "fast_turns")]

db = database_sync_to_async


async def connect(open_ws, path: str = "/ws/chat/", **query):
    communicator = await open_ws(path, **query)
    assert communicator.accepted
    hello = await communicator.receive_json_from(timeout=5)
    assert hello["type"] == "ws.hello"
    return communicator, hello


def types(frames: list[dict]) -> list[str]:
    return [frame["type"] for frame in frames]


def of_type(frames: list[dict], frame_type: str) -> list[dict]:
    return [frame["data"] for frame in frames if frame["type"] == frame_type]


async def send(communicator, prompt: str, **extra) -> None:
    await communicator.send_json_to({"type": "chat.send", "prompt": prompt, **extra})


async def turns_of(conv_id) -> list[Turn]:
    return await db(lambda: list(Turn.objects.filter(conversation_id=conv_id).order_by("seq")))()


# --------------------------------------------------------------------------- hello


async def test_hello_is_the_first_frame_and_describes_the_runtime(open_ws):
    before = int(time.time() * 1000)
    _, hello = await connect(open_ws)

    data = hello["data"]
    assert set(hello) == {"type", "id", "seq", "conv_id", "ts_ms", "data"}
    assert uuid.UUID(data["conv_id"]) and data["conv_id"] == hello["conv_id"]
    assert data["runtime_key"] == "default"
    assert data["profile"] == {"registry": "default", "slug": "default", "version": 1, "ref": "default", "label": None}
    expected = await db(profile_resolve)(registry_slug="default", profile_slug="default")
    assert data["fingerprint"] == expected.fingerprint
    assert data["fingerprint"].startswith("sha256:") and len(data["fingerprint"]) == len("sha256:") + 64
    assert data["engine"] == {"provider": "offline", "model": "offline-v1"}
    assert data["tools"] == []
    assert data["middlewares"] == []
    assert before <= data["server_time_ms"] <= int(time.time() * 1000)
    assert data["last_seq"] == 0
    assert hello["seq"] == 0  # a frame for this socket only: not in the conversation's sequence


async def test_hello_of_a_profile_given_in_the_query_lists_its_tools_and_middlewares(open_ws):
    conv_id = uuid.uuid4()
    _, hello = await connect(open_ws, conv_id=conv_id, profile="agent")

    data = hello["data"]
    assert data["conv_id"] == str(conv_id)
    assert data["runtime_key"] == "agent"
    assert data["tools"] == ["calculator", "current_time"]
    assert data["middlewares"] == [{"name": "redact", "id": None}, {"name": "agent_mode", "id": None}]
    conversation = await db(Conversation.objects.get)(pk=conv_id)
    assert (conversation.selected_registry, conversation.selected_profile) == ("default", "agent")


async def test_authorization_header_token_authenticates(open_ws, chat_token):
    communicator = await open_ws(token=None, headers=[(b"authorization", f"Token {chat_token}".encode())])

    assert communicator.accepted
    assert (await communicator.receive_json_from(timeout=5))["type"] == "ws.hello"


async def test_a_socket_with_a_token_does_not_look_its_session_user_up_and_its_close_makes_no_sync_hop(
    open_ws, monkeypatch
):
    """A valid token decides alone: channels' session lookup (a hop to the process's one sync thread) is
    not made; nor is channels' clean-up of that thread's database connection when the socket closes (the
    consumer uses none there)."""
    import channels.auth
    import channels.generic.websocket

    hops: list[str] = []

    async def session_user(scope):
        hops.append("session user")

    async def clean_up():
        hops.append("close_old_connections")

    monkeypatch.setattr(channels.auth, "get_user", session_user)
    monkeypatch.setattr(channels.generic.websocket, "aclose_old_connections", clean_up)
    communicator, _ = await connect(open_ws)
    await communicator.disconnect()

    assert hops == []


# --------------------------------------------------------------------------- a turn


async def test_turn_streams_in_order_and_is_stored_with_its_runtime(open_ws, frames_until):
    communicator, hello = await connect(open_ws)

    await send(communicator, "hello there")
    frames = await frames_until(communicator)

    kinds = types(frames)
    deltas = kinds.count("llm.delta")
    assert deltas >= 2
    assert kinds == [
        "chat.message",
        "turn.started",
        "llm.start",
        *["llm.delta"] * deltas,
        "llm.final",
        "turn.completed",
    ]
    message, started, final, completed = (
        of_type(frames, t)[0] for t in ("chat.message", "turn.started", "llm.final", "turn.completed")
    )
    assert message["text"] == "hello there"
    assert message["turn_id"] == started["turn_id"] == completed["turn_id"]
    assert started["runtime_key"] == "default"
    assert started["fingerprint"] == hello["data"]["fingerprint"]
    assert started["profile_version"] == 1
    # each delta carries only its new text: together they are the message
    assert all(set(d) == {"message_id", "delta"} for d in of_type(frames, "llm.delta"))
    assert "".join(d["delta"] for d in of_type(frames, "llm.delta")) == final["text"]
    assert final["stop_reason"] == "stop"
    assert completed["text"] == final["text"]
    assert "hello there" in final["text"]

    [turn] = await turns_of(hello["conv_id"])
    assert str(turn.pk) == message["turn_id"]
    assert turn.status == "completed"
    assert turn.prompt == "hello there"
    assert turn.text == final["text"]
    assert (turn.registry, turn.profile_slug, turn.runtime_key, turn.profile_version) == (
        "default",
        "default",
        "default",
        1,
    )
    assert turn.fingerprint == hello["data"]["fingerprint"]
    assert turn.engine == {"provider": "offline", "model": "offline-v1", "history_turns": 20}
    assert turn.tools == [] and turn.middlewares == []
    assert turn.usage["total_tokens"] > 0
    assert turn.started_at_ms and turn.finished_at_ms >= turn.started_at_ms


async def test_seq_increases_strictly_across_all_frames_and_sockets_of_a_conversation(open_ws, frames_until):
    conv_id = uuid.uuid4()
    first, hello_1 = await connect(open_ws, conv_id=conv_id)
    second, hello_2 = await connect(open_ws, conv_id=conv_id)
    assert hello_1["seq"] == hello_2["seq"] == 0  # hello, pong and error are not numbered

    await send(first, "one")
    seen_1 = await frames_until(first)
    seen_2 = await frames_until(second)
    await second.send_json_to({"type": "ws.ping"})
    pong = await second.receive_json_from(timeout=5)
    await send(second, "two")
    seen_2 += await frames_until(second)
    seen_1 += await frames_until(first)

    # both sockets got both turns' frames, with the same numbers
    turn_frames_1 = [(f["seq"], f["type"]) for f in seen_1]
    turn_frames_2 = [(f["seq"], f["type"]) for f in seen_2]
    assert turn_frames_1 == turn_frames_2
    assert types(seen_1).count("turn.completed") == 2
    assert pong["type"] == "ws.pong" and pong["seq"] == 0
    seqs = [s for s, _ in turn_frames_1]
    assert all(a < b for a, b in itertools.pairwise(seqs)), seqs
    assert all(f["conv_id"] == str(conv_id) for f in seen_1 + seen_2)
    stored = await db(
        lambda: list(
            ConversationEvent.objects.filter(conversation_id=conv_id).order_by("seq").values_list("seq", flat=True)
        )
    )()
    # every frame but the deltas is stored, under the number it was sent with
    assert stored == [s for s, t in turn_frames_1 if t != "llm.delta"]
    _, hello_3 = await connect(open_ws, conv_id=conv_id)
    assert hello_3["data"]["last_seq"] == seqs[-1]


# --------------------------------------------------------------------------- refusals at connect


async def test_anonymous_socket_is_closed_4401(open_ws, close_code):
    communicator = await open_ws(token=None)

    frames, code = await close_code(communicator)

    assert code == 4401
    assert "ws.hello" not in types(frames)


async def test_unknown_token_is_anonymous(open_ws, close_code):
    communicator = await open_ws(token="not-a-token")

    _, code = await close_code(communicator)

    assert code == 4401


async def test_another_users_conversation_is_closed_4403(open_ws, close_code, other_user):
    foreign = await db(ConversationFactory)(owner=other_user)

    communicator = await open_ws(conv_id=foreign.pk)
    frames, code = await close_code(communicator)

    assert code == 4403
    assert "ws.hello" not in types(frames)


async def test_unknown_profile_on_a_new_conversation_sends_an_error_then_closes_4404(open_ws, close_code):
    communicator = await open_ws(conv_id=uuid.uuid4(), profile="nope")

    frames, code = await close_code(communicator)

    assert types(frames) == ["error"]
    assert frames[0]["data"]["code"] == "not_found"
    assert code == 4404


async def test_invalid_profile_slug_sends_an_error_then_closes_4400(open_ws, close_code):
    communicator = await open_ws(conv_id=uuid.uuid4(), profile="bad slug!")

    frames, code = await close_code(communicator)

    assert types(frames) == ["error"]
    assert frames[0]["data"]["code"] == "invalid"
    assert code == 4400


async def test_invalid_conv_id_sends_an_error_then_closes_4400(open_ws, close_code):
    communicator = await open_ws(conv_id="not-a-uuid")

    frames, code = await close_code(communicator)

    assert types(frames) == ["error"]
    assert code == 4400


async def test_rejected_origin_is_refused(open_ws):
    communicator = await open_ws(headers=[(b"origin", b"http://evil.example")])

    assert communicator.accepted is False


async def test_allowed_origin_connects(open_ws):
    communicator = await open_ws(headers=[(b"origin", b"http://127.0.0.1")])

    assert communicator.accepted is True
    assert (await communicator.receive_json_from(timeout=5))["type"] == "ws.hello"


# --------------------------------------------------------------------------- bad client frames


async def test_bad_json_gets_an_error_frame_and_the_socket_still_answers_pings(open_ws):
    communicator, _ = await connect(open_ws)

    await communicator.send_to(text_data="{not json")
    error = await communicator.receive_json_from(timeout=5)
    await communicator.send_to(text_data="[1, 2]")
    not_an_object = await communicator.receive_json_from(timeout=5)
    await communicator.send_json_to({"type": "ws.ping"})
    pong = await communicator.receive_json_from(timeout=5)

    assert error["type"] == "error" and error["data"]["code"] == "bad_frame"
    assert not_an_object["type"] == "error" and not_an_object["data"]["code"] == "bad_frame"
    assert pong["type"] == "ws.pong"
    assert isinstance(pong["data"]["server_time_ms"], int)


async def test_oversized_frame_gets_frame_too_large_and_the_socket_stays_open(open_ws, settings, frames_until):
    settings.CHAT_MAX_FRAME_BYTES = 2048
    communicator, hello = await connect(open_ws)

    await send(communicator, "x" * 3000)
    error = await communicator.receive_json_from(timeout=5)
    await send(communicator, "small enough")
    frames = await frames_until(communicator)

    assert error["type"] == "error"
    assert error["data"]["code"] == "frame_too_large"
    assert types(frames)[-1] == "turn.completed"
    assert [t.prompt for t in await turns_of(hello["conv_id"])] == ["small enough"]


async def test_unknown_frame_type_gets_an_error(open_ws):
    communicator, _ = await connect(open_ws)

    await communicator.send_json_to({"type": "chat.explode"})
    error = await communicator.receive_json_from(timeout=5)

    assert error["type"] == "error"
    assert error["data"]["code"] == "unknown_type"


async def test_a_burst_of_sends_is_rate_limited(open_ws, settings):
    settings.CHAT_RATE_LIMIT_PER_MINUTE = 2
    communicator, hello = await connect(open_ws)

    for n in range(8):
        await send(communicator, f"message {n}")
    frames: list[dict] = []
    while True:
        frames.append(await communicator.receive_json_from(timeout=5))
        limited = [d for d in of_type(frames, "error") if d["code"] == "rate_limited"]
        accepted = of_type(frames, "chat.message")
        if len(limited) + len(accepted) == 8 and types(frames).count("turn.completed") == len(accepted):
            break

    assert len(limited) >= 1
    assert len(accepted) < 8
    assert len(await turns_of(hello["conv_id"])) == len(accepted)


async def test_duplicate_idempotency_key_creates_exactly_one_turn(open_ws, frames_until):
    communicator, hello = await connect(open_ws)

    await send(communicator, "once", idempotency_key="key-1")
    await send(communicator, "once", idempotency_key="key-1")
    frames = await frames_until(communicator)
    while not of_type(frames, "error"):
        frames.append(await communicator.receive_json_from(timeout=5))
    await send(communicator, "once more", idempotency_key="key-1")
    again = await communicator.receive_json_from(timeout=5)

    [turn] = await turns_of(hello["conv_id"])
    [error] = of_type(frames, "error")
    assert error["code"] == "duplicate"
    assert error["turn_id"] == str(turn.pk)
    assert again["type"] == "error" and again["data"]["code"] == "duplicate"
    assert again["data"]["turn_id"] == str(turn.pk)
    assert len(of_type(frames, "chat.message")) == 1
    assert turn.status == "completed"


async def test_overrides_on_a_profile_that_forbids_them_are_a_policy_violation_and_store_nothing(open_ws):
    communicator, hello = await connect(open_ws)

    await send(communicator, "hi", request_overrides={"system_prompt": "You are a pirate."})
    error = await communicator.receive_json_from(timeout=5)
    await communicator.send_json_to({"type": "ws.ping"})
    pong = await communicator.receive_json_from(timeout=5)

    assert error["type"] == "error"
    assert error["data"]["code"] == "policy_violation"
    assert pong["type"] == "ws.pong"  # nothing else was sent in between: no chat.message
    assert await turns_of(hello["conv_id"]) == []


async def test_allowed_overrides_are_applied_and_recorded(open_ws, frames_until):
    communicator, hello = await connect(open_ws, conv_id=uuid.uuid4(), profile="analyst")

    await send(communicator, "hi", request_overrides={"system_prompt": "You are a pirate."})
    frames = await frames_until(communicator)

    final = of_type(frames, "llm.final")[0]
    assert final["text"].startswith("(offline · pirate)")
    [turn] = await turns_of(hello["conv_id"])
    assert turn.overrides_applied == {"system_prompt": "You are a pirate."}
    assert turn.fingerprint != hello["data"]["fingerprint"]


# --------------------------------------------------------------------------- middlewares and tools


async def test_profile_without_middlewares_emits_no_middleware_events(open_ws, frames_until):
    communicator, _ = await connect(open_ws)

    await send(communicator, "write to bob@example.com")
    frames = await frames_until(communicator)

    assert "middleware.event" not in types(frames)
    assert "bob@example.com" in of_type(frames, "llm.final")[0]["text"]


async def test_agent_profile_emits_its_middleware_events(open_ws, frames_until):
    communicator, hello = await connect(open_ws, conv_id=uuid.uuid4(), profile="agent")

    await send(communicator, "write to bob@example.com")
    frames = await frames_until(communicator)

    events = of_type(frames, "middleware.event")
    assert [(e["middleware"], e["event"]) for e in events] == [("redact", "redacted"), ("agent_mode", "mode")]
    assert events[0]["detail"] == {"counts": {"email": 1}}
    assert events[1]["detail"] == {"mode": "plan"}
    final = of_type(frames, "llm.final")[0]["text"]
    assert "bob@example.com" not in final
    assert "Mode: plan" in final
    [turn] = await turns_of(hello["conv_id"])
    assert turn.prompt == "write to bob@example.com"  # the record keeps what the user sent
    assert turn.middlewares == [{"name": "redact", "id": None}, {"name": "agent_mode", "id": None}]


async def test_calculator_round_trip_on_the_agent_profile(open_ws, frames_until):
    communicator, hello = await connect(open_ws, conv_id=uuid.uuid4(), profile="agent")

    await send(communicator, "what is 17.5% of 2,340?")
    frames = await frames_until(communicator)

    kinds = types(frames)
    assert (
        kinds.index("tool.start")
        < kinds.index("tool.result")
        < kinds.index("tool.done")
        < kinds.index("turn.completed")
    )
    start, result, done = (of_type(frames, t)[0] for t in ("tool.start", "tool.result", "tool.done"))
    assert start["name"] == result["name"] == done["name"] == "calculator"
    assert start["call_id"] == result["call_id"] == done["call_id"]
    assert result["result"]["result"] == 409.5
    completed = of_type(frames, "turn.completed")[0]
    assert "409.5" in completed["text"]
    [turn] = await turns_of(hello["conv_id"])
    assert turn.tools == ["calculator", "current_time"]
    assert [(c["name"], c["result"]["result"]) for c in turn.tool_calls] == [("calculator", 409.5)]


@pytest.mark.usefixtures("seeded_inventory")
async def test_inventory_mount_low_stock_calls_the_tool_and_emits_a_table_artifact(open_ws, frames_until):
    communicator, hello = await connect(open_ws, "/inventory/ws/chat/", conv_id=uuid.uuid4(), profile="inventory")
    assert hello["data"]["profile"]["registry"] == "inventory"
    assert "inventory_low_stock" in hello["data"]["tools"]

    await send(communicator, "which items are low on stock?")
    frames = await frames_until(communicator)

    assert [d["name"] for d in of_type(frames, "tool.start")] == ["inventory_low_stock"]
    result = of_type(frames, "tool.result")[0]
    assert "error" not in result
    [artifact] = of_type(frames, "artifact")
    assert artifact["kind"] == "table"
    assert artifact["title"].startswith("Low stock")
    assert artifact["data"]
    assert types(frames)[-1] == "turn.completed"
    [turn] = await turns_of(hello["conv_id"])
    assert turn.artifacts == [artifact]
    assert turn.registry == "inventory"
    low_skus = [item["sku"] for item in result["result"]["items"]]
    assert low_skus and all(sku in turn.text for sku in low_skus)  # answered from the tool result


async def test_default_profile_offers_no_tools_and_never_calls_one(open_ws, frames_until):
    communicator, hello = await connect(open_ws)
    assert hello["data"]["tools"] == []

    await send(communicator, "what is 2+2")
    frames = await frames_until(communicator)

    assert "tool.start" not in types(frames)
    assert "4" not in of_type(frames, "llm.final")[0]["text"].replace("2+2", "")
    [turn] = await turns_of(hello["conv_id"])
    assert turn.tool_calls == []


async def test_inventory_tool_is_not_offered_on_the_chat_mount(open_ws, frames_until):
    communicator, _ = await connect(open_ws, conv_id=uuid.uuid4(), profile="agent")

    await send(communicator, "which items are low on stock?")
    frames = await frames_until(communicator)

    assert "tool.start" not in types(frames)
    assert "No inventory_low_stock tool is available" in of_type(frames, "turn.completed")[0]["text"]


# --------------------------------------------------------------------------- lifecycle


async def test_disconnect_mid_turn_does_not_stop_the_turn(open_ws, frames_until, wait_turn, settings):
    settings.CHAT_OFFLINE_DELAY_SECONDS = 0.02
    communicator, _ = await connect(open_ws)

    await send(communicator, "keep going without me")
    started = (await frames_until(communicator, "turn.started"))[-1]["data"]
    await communicator.disconnect()
    turn = await wait_turn(started["turn_id"])

    assert turn.status == "completed"
    assert "keep going without me" in turn.text
    assert turn.text.startswith("(offline · concise assistant)")
    stored = await db(lambda: list(ConversationEvent.objects.filter(turn_id=turn.pk).values_list("type", flat=True)))()
    assert stored[-1] == "turn.completed"


async def test_cancel_during_a_slow_turn_keeps_the_partial_text(open_ws, frames_until, settings):
    settings.CHAT_OFFLINE_DELAY_SECONDS = 0.25
    communicator, hello = await connect(open_ws)

    await send(communicator, "tell me a long story")
    frames = await frames_until(communicator, "llm.delta")
    await communicator.send_json_to({"type": "chat.cancel"})
    frames += await frames_until(communicator)

    assert types(frames)[-1] == "turn.cancelled"
    assert "turn.completed" not in types(frames)
    cancelled = of_type(frames, "turn.cancelled")[0]
    [turn] = await turns_of(hello["conv_id"])
    assert turn.status == "cancelled"
    shown = "".join(d["delta"] for d in of_type(frames, "llm.delta"))
    assert turn.text and turn.text.startswith(shown)
    assert cancelled["text"] == turn.text
    assert "open questions" not in turn.text  # the end of the reply was never produced
    assert turn.finished_at_ms is not None


async def test_cancel_with_nothing_running_is_an_error(open_ws):
    communicator, _ = await connect(open_ws)

    await communicator.send_json_to({"type": "chat.cancel"})
    error = await communicator.receive_json_from(timeout=5)

    assert error["type"] == "error"
    assert error["data"]["code"] == "nothing_to_cancel"


async def test_turns_run_one_at_a_time_in_order(open_ws, frames_until, settings):
    settings.CHAT_OFFLINE_DELAY_SECONDS = 0.01
    communicator, hello = await connect(open_ws)

    await send(communicator, "first")
    await send(communicator, "second")
    frames = await frames_until(communicator)
    while types(frames).count("turn.completed") < 2:
        frames += await frames_until(communicator)

    first_id, second_id = (m["turn_id"] for m in of_type(frames, "chat.message"))
    assert of_type(frames, "chat.queued") == [{"turn_id": second_id, "position": 1}]
    assert [d["turn_id"] for d in of_type(frames, "turn.completed")] == [first_id, second_id]
    order = [(f["type"], f["data"].get("turn_id")) for f in frames if f["type"] in ("turn.started", "turn.completed")]
    assert order == [
        ("turn.started", first_id),
        ("turn.completed", first_id),
        ("turn.started", second_id),
        ("turn.completed", second_id),
    ]
    turns = await turns_of(hello["conv_id"])
    assert [(t.prompt, t.status) for t in turns] == [("first", "completed"), ("second", "completed")]
    assert turns[0].finished_at_ms <= turns[1].started_at_ms


async def test_profile_select_switches_this_conversation_only(open_ws, frames_until, chat_user):
    communicator, hello = await connect(open_ws)

    await communicator.send_json_to({"type": "profile.select", "slug": "agent"})
    new_hello = await communicator.receive_json_from(timeout=5)
    await send(communicator, "what is 2+2")
    frames = await frames_until(communicator)

    assert new_hello["type"] == "ws.hello"
    assert new_hello["data"]["runtime_key"] == "agent"
    assert new_hello["data"]["fingerprint"] != hello["data"]["fingerprint"]
    assert of_type(frames, "turn.started")[0]["runtime_key"] == "agent"
    assert [d["name"] for d in of_type(frames, "tool.start")] == ["calculator"]
    conversation = await db(Conversation.objects.get)(pk=hello["conv_id"])
    assert (conversation.selected_registry, conversation.selected_profile) == ("default", "agent")
    # the user's current profile for the mount is unchanged ...
    current = await db(current_profile)(user=chat_user, mount="chat", default_registry="default")
    assert (current.profile.slug, current.source) == ("default", "default")
    assert not await db(ProfileSelection.objects.filter(user=chat_user).exists)()
    # ... so a new conversation still starts on it
    _, other_hello = await connect(open_ws)
    assert other_hello["data"]["runtime_key"] == "default"


async def test_profile_select_of_an_unknown_profile_is_an_error(open_ws):
    communicator, hello = await connect(open_ws)

    await communicator.send_json_to({"type": "profile.select", "slug": "nope"})
    error = await communicator.receive_json_from(timeout=5)

    assert error["type"] == "error"
    assert error["data"]["code"] == "not_found"
    conversation = await db(Conversation.objects.get)(pk=hello["conv_id"])
    assert conversation.selected_profile == ""


async def test_profile_select_null_makes_the_conversation_follow_the_users_profile_again(open_ws, frames_until):
    communicator, hello = await connect(open_ws, profile="agent")
    assert hello["data"]["runtime_key"] == "agent"

    await communicator.send_json_to({"type": "profile.select", "slug": None})
    new_hello = await communicator.receive_json_from(timeout=5)
    await send(communicator, "hello")
    frames = await frames_until(communicator)

    assert new_hello["data"]["runtime_key"] == "default"  # the user's current profile (the registry default)
    assert of_type(frames, "turn.started")[0]["runtime_key"] == "default"
    conversation = await db(Conversation.objects.get)(pk=hello["conv_id"])
    assert (conversation.selected_registry, conversation.selected_profile) == ("", "")


async def test_profile_select_without_slug_is_a_bad_frame(open_ws):
    communicator, hello = await connect(open_ws, profile="agent")

    await communicator.send_json_to({"type": "profile.select"})
    error = await communicator.receive_json_from(timeout=5)

    assert (error["type"], error["data"]["code"]) == ("error", "bad_frame")
    conversation = await db(Conversation.objects.get)(pk=hello["conv_id"])
    assert conversation.selected_profile == "agent"


async def test_a_deeply_nested_frame_is_a_bad_frame_and_the_socket_stays_open(open_ws):
    communicator, _ = await connect(open_ws)

    await communicator.send_to(text_data="[" * 5000 + "]" * 5000)
    error = await communicator.receive_json_from(timeout=5)
    await communicator.send_json_to({"type": "ws.ping"})

    assert (error["type"], error["data"]["code"]) == ("error", "bad_frame")
    assert (await communicator.receive_json_from(timeout=5))["type"] == "ws.pong"


async def test_a_frame_naming_a_key_twice_is_a_bad_frame_and_nothing_is_sent(open_ws):
    communicator, _ = await connect(open_ws)

    await communicator.send_to(text_data='{"type": "chat.send", "prompt": "a", "prompt": "b"}')
    error = await communicator.receive_json_from(timeout=5)

    assert (error["type"], error["data"]["code"]) == ("error", "bad_frame")
    assert await communicator.receive_nothing(timeout=0.3)
