"""Every profile as an MCP tool (#21), driven with the official `mcp` SDK's client against a real daphne:
`tools/list` has one `ask_<slug>` per profile the caller may use, `tools/call` runs a stored turn of the
caller's conversation and answers text plus {conversation_id, turn_id, profile_version, fingerprint}; a
profile the caller may not use is the same MCP error as a missing one; tokens and API keys (their scopes)
authenticate; the inventory mount serves its own registry's profiles."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx2
import pytest
from mcp import Client
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.exceptions import MCPError

from chat.models import Conversation, Turn
from profiles import services

from .helpers import ApiUser, http, make_user

pytestmark = pytest.mark.e2e


def mcp_client(server: Any, secret: str, path: str = "/mcp", mode: str = "auto") -> tuple[httpx2.AsyncClient, Client]:
    transport_client = httpx2.AsyncClient(headers={"Authorization": f"Bearer {secret}"}, timeout=60, trust_env=False)
    return transport_client, Client(
        streamable_http_client(f"{server.url}{path}", http_client=transport_client), mode=mode, cache=None
    )


async def listed(server: Any, secret: str, path: str = "/mcp") -> dict[str, Any]:
    http_client, client = mcp_client(server, secret, path)
    async with http_client, client:
        return {tool.name: tool for tool in (await client.list_tools()).tools}


async def call(server: Any, secret: str, name: str, arguments: dict[str, Any], path: str = "/mcp", mode: str = "auto"):
    http_client, client = mcp_client(server, secret, path, mode)
    async with http_client, client:
        return await client.call_tool(name, arguments)


def refused(coroutine: Any) -> MCPError:
    """The MCP error a call ends with (the SDK's task group may wrap it in an exception group)."""
    try:
        asyncio.run(coroutine)
    except MCPError as exc:
        return exc
    except BaseExceptionGroup as group:
        found = group.subgroup(MCPError)
        assert found is not None, group
        while isinstance(found, BaseExceptionGroup):
            found = found.exceptions[0]
        return found
    raise AssertionError("the call succeeded")


@pytest.fixture
def hidden(server) -> None:
    """A profile only the `finance` group may use."""
    services.profile_create(
        registry_slug="default",
        slug="ledger",
        display_name="Ledger",
        description="Answers about the books.",
        runtime={"system_prompt": "Be exact.", "tools": ["calculator"]},
        visible_to_groups=["finance"],
    )


def test_tools_list_has_one_ask_tool_per_profile_the_caller_may_use(server, alice: ApiUser, hidden):
    tools = asyncio.run(listed(server, alice.token))

    assert {"ask_default", "ask_analyst", "ask_agent"} <= set(tools)
    assert "ask_ledger" not in tools
    analyst = tools["ask_analyst"]
    assert analyst.input_schema["required"] == ["message"]
    assert set(analyst.input_schema["properties"]) == {"message", "conversation_id"}
    assert "(profile analyst)" in (analyst.description or "")


def test_a_call_runs_a_stored_turn_and_continues_the_conversation(server, alice: ApiUser):
    first = asyncio.run(call(server, alice.token, "ask_analyst", {"message": "what is 6 * 7?"}))
    ids = first.structured_content
    second = asyncio.run(
        call(server, alice.token, "ask_analyst", {"message": "and 2 + 2?", "conversation_id": ids["conversation_id"]})
    )

    assert not first.is_error and "42" in first.content[0].text
    turn = Turn.objects.get(pk=ids["turn_id"])
    assert ids == {
        "conversation_id": str(turn.conversation_id),
        "turn_id": str(turn.pk),
        "profile_version": turn.profile_version,
        "fingerprint": turn.fingerprint,
    }
    assert turn.status == "completed" and turn.text == first.content[0].text
    conversation = Conversation.objects.get(pk=ids["conversation_id"])
    assert conversation.owner.username == "alice" and conversation.mount == "chat"
    assert second.structured_content["conversation_id"] == ids["conversation_id"]
    assert conversation.turns.count() == 2 and "4" in second.content[0].text


def test_a_profile_the_caller_may_not_use_is_the_same_error_as_a_missing_one(server, alice: ApiUser, hidden):
    hidden_one = refused(call(server, alice.token, "ask_ledger", {"message": "hi"}))
    missing_one = refused(call(server, alice.token, "ask_nothing", {"message": "hi"}))

    assert hidden_one.code == missing_one.code
    assert hidden_one.message.replace("ledger", "X") == missing_one.message.replace("nothing", "X")
    assert not Turn.objects.exists()


def test_a_member_of_the_group_may_ask_the_restricted_profile(server, hidden):
    from django.contrib.auth.models import Group

    fiona = make_user("fiona")
    Group.objects.create(name="finance").user_set.add(fiona.pk)
    answer = asyncio.run(call(server, fiona.token, "ask_ledger", {"message": "what is 10 / 4?"}))
    assert not answer.is_error and "2.5" in answer.content[0].text


def test_bad_arguments_are_mcp_errors_naming_the_argument(server, alice: ApiUser):
    assert "arguments.message" in refused(call(server, alice.token, "ask_analyst", {"message": ""})).message
    bad_id = refused(call(server, alice.token, "ask_analyst", {"message": "hi", "conversation_id": "nope"}))
    assert "arguments.conversation_id" in bad_id.message


def test_another_users_conversation_is_refused_on_its_argument(server, alice: ApiUser):
    bob = make_user("bob")
    ids = asyncio.run(call(server, bob.token, "ask_analyst", {"message": "2+2?"})).structured_content
    answer = asyncio.run(
        call(server, alice.token, "ask_analyst", {"message": "hi", "conversation_id": ids["conversation_id"]})
    )
    assert answer.is_error
    assert answer.content[0].text.startswith("permission_denied: arguments.conversation_id: ")


def test_without_credentials_the_endpoint_answers_401(server):
    async def post() -> httpx2.Response:
        async with httpx2.AsyncClient(trust_env=False) as client:
            return await client.post(f"{server.url}/mcp", json={"jsonrpc": "2.0", "id": 1, "method": "tools/list"})

    response = asyncio.run(post())
    assert response.status_code == 401
    assert response.headers["www-authenticate"].startswith("Bearer")
    assert response.json()["error"]["code"] == "not_authenticated"


def test_an_api_key_lists_and_asks_only_what_its_scopes_cover(server, alice: ApiUser):
    async def issue() -> str:
        async with http(server, alice) as rest:
            response = await rest.post("/api/keys", json={"name": "mcp", "scopes": ["analyst"]})
        assert response.status_code == 201, response.text
        return response.json()["key"]

    secret = asyncio.run(issue())
    tools = asyncio.run(listed(server, secret))
    assert "unknown tool" in refused(call(server, secret, "ask_agent", {"message": "hi"})).message
    answer = asyncio.run(call(server, secret, "ask_analyst", {"message": "what is 3 * 3?"}))

    assert list(tools) == ["ask_analyst"]
    assert not answer.is_error and "9" in answer.content[0].text
    assert Turn.objects.get(pk=answer.structured_content["turn_id"]).api_key_id is not None


def test_the_inventory_mount_serves_its_registrys_profiles(server, alice: ApiUser):
    tools = asyncio.run(listed(server, alice.token, path="/inventory/mcp"))
    answer = asyncio.run(call(server, alice.token, "ask_inventory", {"message": "hello"}, path="/inventory/mcp"))

    assert "ask_inventory" in tools
    assert Conversation.objects.get(pk=answer.structured_content["conversation_id"]).mount == "inventory"


def test_a_client_speaking_the_initialize_handshake_is_served_too(server, alice: ApiUser):
    answer = asyncio.run(call(server, alice.token, "ask_analyst", {"message": "what is 5 + 5?"}, mode="legacy"))
    assert not answer.is_error and "10" in answer.content[0].text
