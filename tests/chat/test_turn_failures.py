"""Provider failures and tool calls through the whole stack: websocket -> consumer -> worker -> runner ->
OpenAI engine (official SDK) -> a real local HTTP server speaking the OpenAI streaming protocol.

The profile points `openai-chat.openai-base-url` at the fake server, which is not the server's own
OPENAI_BASE_URL: the server's OPENAI_API_KEY must never reach it (the SDK sends `Bearer not-needed`).
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from channels.db import database_sync_to_async

from chat.models import Turn

from .fake_openai import FakeOpenAIServer, remote_profile

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("seeded_registries", "fast_turns")]

db = database_sync_to_async
SERVER_KEY = "sk-should-not-leak"
FAKE_USAGE = {"prompt_tokens": 11, "completion_tokens": 7, "total_tokens": 18}
TIMEOUT = 10


@pytest.fixture(autouse=True)
def server_key(settings) -> None:
    """The server has a key of its own, for its own provider (OPENAI_BASE_URL unset: OpenAI)."""
    settings.OPENAI_API_KEY = SERVER_KEY
    settings.OPENAI_BASE_URL = ""


@pytest.fixture
def fake() -> Iterator[FakeOpenAIServer]:
    with FakeOpenAIServer() as server:
        yield server


# --------------------------------------------------------------------------- helpers (as in test_consumer)


async def connect(open_ws, **query) -> tuple[Any, dict]:
    communicator = await open_ws("/ws/chat/", **query)
    assert communicator.accepted
    hello = await communicator.receive_json_from(timeout=5)
    assert hello["type"] == "ws.hello", hello
    return communicator, hello


async def open_remote(open_ws, slug: str = "remote") -> tuple[Any, dict]:
    communicator, hello = await connect(open_ws, conv_id=uuid.uuid4(), profile=slug)
    assert hello["data"]["runtime_key"] == slug
    assert hello["data"]["engine"] == {"provider": "openai", "model": "fake-model"}
    return communicator, hello


async def send(communicator, prompt: str, **extra) -> None:
    await communicator.send_json_to({"type": "chat.send", "prompt": prompt, **extra})


def types(frames: list[dict]) -> list[str]:
    return [frame["type"] for frame in frames]


def shape(frames: list[dict]) -> list[str]:
    """Frame types with runs of llm.delta collapsed into one."""
    out: list[str] = []
    for kind in types(frames):
        if not (kind == "llm.delta" and out and out[-1] == "llm.delta"):
            out.append(kind)
    return out


def of_type(frames: list[dict], frame_type: str) -> list[dict]:
    return [frame["data"] for frame in frames if frame["type"] == frame_type]


async def stored_turns(conv_id) -> list[Turn]:
    return await db(lambda: list(Turn.objects.filter(conversation_id=conv_id).order_by("seq")))()


def assert_key_never_sent(fake: FakeOpenAIServer, count: int) -> None:
    assert len(fake.requests) == count
    for request in fake.requests:
        assert request.headers["authorization"] == "Bearer not-needed"
        assert all(SERVER_KEY not in value for value in request.headers.values())
        assert SERVER_KEY not in json.dumps(request.body)


# --------------------------------------------------------------------------- failures


async def test_mid_stream_disconnect_fails_the_turn_keeps_the_partial_text_and_the_conversation_goes_on(
    open_ws, frames_until, fake
):
    await db(remote_profile)(fake)
    communicator, hello = await open_remote(open_ws)
    fake.disconnect(["Hello ", "from the ", "provider"])

    await send(communicator, "first question")
    frames = await frames_until(communicator, timeout=TIMEOUT)

    assert shape(frames) == ["chat.message", "turn.started", "llm.start", "llm.delta", "turn.failed"], types(frames)
    deltas = of_type(frames, "llm.delta")
    assert "".join(d["delta"] for d in deltas) == "Hello from the provider"
    failed = of_type(frames, "turn.failed")[0]
    turn_id = of_type(frames, "chat.message")[0]["turn_id"]
    assert failed["turn_id"] == turn_id
    assert failed["text"] == "Hello from the provider"
    error = failed["error"]
    assert set(error) == {"code", "message"}
    if error["code"] == "connection_error":
        assert error["message"].startswith(f"the connection to the provider at 127.0.0.1:{fake.port} broke")
    else:
        assert error == {
            "code": "malformed_stream",
            "message": "the provider's stream ended before the reply was finished",
        }
    assert SERVER_KEY not in json.dumps(frames)

    [turn] = await stored_turns(hello["conv_id"])
    assert str(turn.pk) == turn_id
    assert turn.status == "failed"
    assert turn.text == "Hello from the provider"
    assert turn.error == error
    assert turn.engine == {"provider": "openai", "model": "fake-model", "history_turns": 20}
    assert (turn.runtime_key, turn.fingerprint) == ("remote", hello["data"]["fingerprint"])
    assert turn.finished_at_ms is not None

    # The conversation stays usable: the next turn runs on the same runtime and completes.
    fake.stream_text(["All ", "good ", "now."])
    await send(communicator, "second question")
    frames = await frames_until(communicator, timeout=TIMEOUT)

    assert shape(frames) == [
        "chat.message",
        "turn.started",
        "llm.start",
        "llm.delta",
        "llm.final",
        "turn.completed",
    ], types(frames)
    completed = of_type(frames, "turn.completed")[0]
    assert completed["text"] == "All good now."
    assert completed["usage"] == {**FAKE_USAGE, "cost_usd": None}  # the fake model has no price
    first, second = await stored_turns(hello["conv_id"])
    assert first.status == "failed"
    assert (second.status, second.text, second.error) == ("completed", "All good now.", None)
    assert second.engine == {"provider": "openai", "model": "fake-model", "history_turns": 20}
    # Only completed turns are history: the failed one is not replayed to the provider.
    assert fake.requests[1].body["messages"] == [
        {"role": "system", "content": "You are a remote assistant."},
        {"role": "user", "content": "second question"},
    ]
    assert fake.requests[1].body["model"] == "fake-model"
    assert_key_never_sent(fake, 2)


async def test_http_500_from_the_provider_is_a_provider_error(open_ws, frames_until, fake):
    await db(remote_profile)(fake)
    communicator, hello = await open_remote(open_ws)
    fake.error(500, "the model is on fire")

    await send(communicator, "hello")
    frames = await frames_until(communicator, timeout=TIMEOUT)

    assert types(frames) == ["chat.message", "turn.started", "llm.start", "turn.failed"]
    failed = of_type(frames, "turn.failed")[0]
    assert failed["error"] == {
        "code": "provider_error",
        "message": f"the provider at 127.0.0.1:{fake.port} answered HTTP 500: the model is on fire",
    }
    assert failed["text"] == ""
    [turn] = await stored_turns(hello["conv_id"])
    assert (turn.status, turn.text, turn.error) == ("failed", "", failed["error"])
    assert turn.engine == {"provider": "openai", "model": "fake-model", "history_turns": 20}
    assert_key_never_sent(fake, 1)  # no retries


async def test_a_provider_slower_than_the_profile_timeout_is_a_timeout(open_ws, frames_until, fake):
    await db(remote_profile)(fake, **{"ai-timeout-seconds": 1})
    communicator, hello = await open_remote(open_ws)
    fake.sleep(6.0)

    await send(communicator, "hello")
    frames = await frames_until(communicator, timeout=TIMEOUT)

    assert types(frames) == ["chat.message", "turn.started", "llm.start", "turn.failed"]
    failed = of_type(frames, "turn.failed")[0]
    assert failed["error"] == {
        "code": "timeout",
        "message": f"the provider at 127.0.0.1:{fake.port} did not answer within 1s",
    }
    assert 1000 <= failed["duration_ms"] < 6000
    [turn] = await stored_turns(hello["conv_id"])
    assert (turn.status, turn.error) == ("failed", failed["error"])
    assert_key_never_sent(fake, 1)


async def test_an_invalid_chunk_is_a_malformed_stream_and_keeps_the_text_before_it(open_ws, frames_until, fake):
    await db(remote_profile)(fake)
    communicator, hello = await open_remote(open_ws)
    fake.garbage(["so far ", "so good"])

    await send(communicator, "hello")
    frames = await frames_until(communicator, timeout=TIMEOUT)

    assert shape(frames) == ["chat.message", "turn.started", "llm.start", "llm.delta", "turn.failed"], types(frames)
    failed = of_type(frames, "turn.failed")[0]
    assert failed["error"] == {
        "code": "malformed_stream",
        "message": f"the provider at 127.0.0.1:{fake.port} sent an invalid stream",
    }
    [turn] = await stored_turns(hello["conv_id"])
    assert (turn.status, turn.text) == ("failed", "so far so good")
    assert_key_never_sent(fake, 1)


# --------------------------------------------------------------------------- tool calls


async def test_an_openai_tool_call_round_runs_the_allowed_tool_and_sends_its_result_back(open_ws, frames_until, fake):
    await db(remote_profile)(fake, tools=["calculator"])
    communicator, hello = await open_remote(open_ws)
    assert hello["data"]["tools"] == ["calculator"]
    fake.stream_tool_calls([("call_sum", "calculator", {"expression": "2+3"})])
    fake.stream_text(["2+3 ", "is 5."])

    await send(communicator, "what is 2+3?")
    frames = await frames_until(communicator, timeout=TIMEOUT)

    assert shape(frames) == [
        "chat.message",
        "turn.started",
        "llm.start",
        "llm.final",
        "tool.start",
        "tool.result",
        "tool.done",
        "llm.start",
        "llm.delta",
        "llm.final",
        "turn.completed",
    ], types(frames)
    turn_id = of_type(frames, "chat.message")[0]["turn_id"]
    result = {"expression": "2+3", "result": 5}
    assert of_type(frames, "tool.start") == [
        {"call_id": "call_sum", "name": "calculator", "input": {"expression": "2+3"}}
    ]
    assert of_type(frames, "tool.result") == [{"call_id": "call_sum", "name": "calculator", "result": result}]
    assert of_type(frames, "tool.done") == [{"call_id": "call_sum", "name": "calculator"}]
    first_final, last_final = of_type(frames, "llm.final")
    assert (first_final["message_id"], first_final["stop_reason"]) == (f"{turn_id}:1", "tool_calls")
    assert (last_final["message_id"], last_final["text"], last_final["stop_reason"]) == (
        f"{turn_id}:2",
        "2+3 is 5.",
        "stop",
    )
    assert (first_final["usage"], last_final["usage"]) == (FAKE_USAGE, FAKE_USAGE)
    completed = of_type(frames, "turn.completed")[0]
    assert completed["text"] == "2+3 is 5."

    # First request: only the allowed tool is offered.
    first, second = (request.body for request in fake.requests)
    assert [tool["function"]["name"] for tool in first["tools"]] == ["calculator"]
    assert first["messages"][-1] == {"role": "user", "content": "what is 2+3?"}
    # Second request: the assistant's call and the tool's result, by call id.
    assert second["messages"][-2:] == [
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {
                    "id": "call_sum",
                    "type": "function",
                    "function": {"name": "calculator", "arguments": json.dumps({"expression": "2+3"})},
                }
            ],
        },
        {"role": "tool", "tool_call_id": "call_sum", "content": json.dumps(result)},
    ]
    assert_key_never_sent(fake, 2)

    [turn] = await stored_turns(hello["conv_id"])
    assert turn.status == "completed"
    assert turn.text == "2+3 is 5."
    assert turn.tool_calls == [
        {"call_id": "call_sum", "name": "calculator", "input": {"expression": "2+3"}, "result": result}
    ]
    assert turn.tools == ["calculator"]
    assert turn.engine == {"provider": "openai", "model": "fake-model", "history_turns": 20}
    # The turn's usage is the sum of its rounds (the tool-call round and the final one).
    both = {key: 2 * value for key, value in FAKE_USAGE.items()}
    assert turn.usage == completed["usage"] == {**both, "cost_usd": None}
