"""MCP tools through whole turns (#21): a websocket turn on the openai engine against a local fake provider
that asks for the tool under the name it was offered (`mcp_acme_add`, mapped back to `mcp:acme/add`), and a
completion of the OpenAI-compatible API whose offline engine is told `use mcp:acme/add with …`."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest
from rest_framework.test import APIClient

from .fake_openai import FakeOpenAIServer, remote_profile

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("fast_turns")]


@pytest.fixture
def fake(settings) -> Iterator[FakeOpenAIServer]:
    settings.OPENAI_API_KEY = ""
    settings.OPENAI_BASE_URL = ""
    with FakeOpenAIServer() as server:
        yield server


@pytest.mark.usefixtures("seeded_registries", "acme_registered")
async def test_the_openai_engine_calls_an_mcp_tool_under_a_name_the_provider_accepts(fake, acme, open_ws, frames_until):
    from channels.db import database_sync_to_async

    await database_sync_to_async(remote_profile)(fake, tools=["mcp:acme/add"])
    fake.stream_tool_calls([("call_1", "mcp_acme_add", {"a": 2, "b": 40})]).stream_text(["The sum is ", "42."])
    socket = await open_ws("/ws/chat/", conv_id=uuid.uuid4(), profile="remote")
    await socket.receive_json_from(timeout=5)  # ws.hello

    await socket.send_json_to({"type": "chat.send", "prompt": "add 2 and 40"})
    frames = await frames_until(socket, timeout=10)

    assert frames[-1]["type"] == "turn.completed", frames[-1]
    (result,) = [f["data"] for f in frames if f["type"] == "tool.result"]
    assert result["name"] == "mcp:acme/add"
    assert result["result"] == {"text": "42", "structured_content": {"result": 42}}
    assert acme.calls == ["add"]
    offered = fake.requests[0].body["tools"]
    assert [t["function"]["name"] for t in offered] == ["mcp_acme_add"]
    assert offered[0]["function"]["parameters"]["required"] == ["a", "b"]
    # The second round shows the provider its own call under the name it used.
    replayed = [m for m in fake.requests[1].body["messages"] if m["role"] == "assistant"]
    assert replayed[0]["tool_calls"][0]["function"]["name"] == "mcp_acme_add"


@pytest.mark.usefixtures("seeded_registries", "acme_registered")
def test_a_completion_of_the_openai_compatible_api_runs_an_mcp_tool(chat_user, chat_token):
    from profiles import services

    services.profile_create(
        registry_slug="default", slug="acme-helper", display_name="Acme", runtime={"tools": ["mcp:acme/add"]}
    )
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {chat_token}")

    response = client.post(
        "/v1/chat/completions",
        {"model": "acme-helper", "messages": [{"role": "user", "content": 'use mcp:acme/add with {"a": 20, "b": 22}'}]},
        format="json",
    )

    assert response.status_code == 200, response.content
    assert "42" in response.json()["choices"][0]["message"]["content"]


@pytest.mark.usefixtures("seeded_registries")
def test_mcp_calls_share_the_callers_turn_rate_with_rest(chat_user, chat_api, monkeypatch):
    from django.core.cache import cache

    from chat.mcp.protocol import Caller, _admit, _TurnThrottle
    from chat.mounts import CHAT_MOUNT
    from profiles.errors import Busy

    cache.clear()
    monkeypatch.setattr(_TurnThrottle, "THROTTLE_RATES", {"turns": "1/min"})
    _admit(Caller(user=chat_user, key=None, mount=CHAT_MOUNT))
    with pytest.raises(Busy) as refused:
        _admit(Caller(user=chat_user, key=None, mount=CHAT_MOUNT))
    assert refused.value.retry_after >= 1 and "CHAT_REST_TURN_RATE" in refused.value.message
    assert sum(cache.get(f"throttle_turns_{chat_user.pk}").values()) == 1  # REST's record: counts per slice


@pytest.mark.usefixtures("seeded_registries", "acme_registered")
def test_the_anthropic_engine_offers_and_maps_back_mcp_tool_names_too(chat_api, acme, settings):
    from .fake_anthropic import FakeAnthropicServer, anthropic_profile

    settings.ANTHROPIC_API_KEY = ""
    with FakeAnthropicServer() as fake:
        anthropic_profile(fake.base_url, tools=["mcp:acme/add"])
        fake.stream_tool_use([("toolu_1", "mcp_acme_add", {"a": 20, "b": 22})]).stream_text(["It is 42."])
        conv = chat_api.post("/api/chat/conversations", {"profile": "claude"}, format="json").json()["conv_id"]

        answer = chat_api.post(
            f"/api/chat/conversations/{conv}/messages?wait=1", {"prompt": "add them"}, format="json"
        ).json()

    assert answer["status"] == "completed", answer
    assert answer["tool_calls"][0]["name"] == "mcp:acme/add"
    assert answer["tool_calls"][0]["result"]["structured_content"] == {"result": 42}
    assert [t["name"] for t in fake.requests[0].body["tools"]] == ["mcp_acme_add"]
    replayed = [m for m in fake.requests[1].body["messages"] if m["role"] == "assistant"]
    assert [b["name"] for b in replayed[0]["content"] if b["type"] == "tool_use"] == ["mcp_acme_add"]
