"""The OpenAI-compatible gateway end to end: the official `openai` SDK (sync and async clients,
streaming and not) against a real daphne process, under both mounts (`/v1/`, `/inventory/v1/`).

Every answer is checked against what the server stored: the conversation and its turns read back over
the REST API (runtime record, usage, tool calls) and the fingerprint `POST …/profiles/{slug}/resolve`
computes. The offline engine answers deterministically; the turns run in the server process.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator

import httpx2 as httpx
import openai
import pytest
from openai import AsyncOpenAI, OpenAI

from chat.models import Conversation, Turn
from tests.chat.factories import turns_counted

from .helpers import LOW_STOCK_SKUS, ApiUser, get_conversation, http, make_user
from .server import LiveServer

pytestmark = pytest.mark.e2e

MOUNTS = [pytest.param("", "default", id="chat"), pytest.param("/inventory", "inventory", id="inventory")]


def sync_client(server: LiveServer, token: str, prefix: str = "", **options) -> OpenAI:
    """The official SDK, no retries unless asked (a retry would hide what the server answered first)."""
    options.setdefault("max_retries", 0)
    return OpenAI(
        api_key=token,
        base_url=f"{server.url}{prefix}/v1",
        http_client=httpx.Client(trust_env=False, timeout=60),
        **options,
    )


def async_client(server: LiveServer, token: str, prefix: str = "", **options) -> AsyncOpenAI:
    options.setdefault("max_retries", 0)
    return AsyncOpenAI(
        api_key=token,
        base_url=f"{server.url}{prefix}/v1",
        http_client=httpx.AsyncClient(trust_env=False, timeout=60),
        **options,
    )


@pytest.fixture
def client(server, alice) -> Iterator[OpenAI]:
    with sync_client(server, alice.token) as sdk:
        yield sdk


def user_message(text: str) -> list[dict[str, str]]:
    return [{"role": "user", "content": text}]


async def rest_profiles(server: LiveServer, user: ApiUser, prefix: str) -> list[tuple[str, str]]:
    """(registry, slug) of every profile, as the profile API lists them."""
    async with http(server, user) as rest:
        registries = (await rest.get(f"{prefix}/api/chat/registries")).json()
        found = []
        for registry in registries:
            profiles = (await rest.get(f"{prefix}/api/chat/profiles", params={"registry": registry["slug"]})).json()
            found += [(registry["slug"], profile["slug"]) for profile in profiles]
    return found


async def resolved(server: LiveServer, user: ApiUser, prefix: str, registry: str, slug: str) -> dict:
    async with http(server, user) as rest:
        response = await rest.post(f"{prefix}/api/chat/profiles/{slug}/resolve", json={}, params={"registry": registry})
    assert response.status_code == 200, response.text
    return response.json()


async def stored_turns(server: LiveServer, user: ApiUser, conv_id: str, prefix: str = "") -> list[dict]:
    async with http(server, user) as rest:
        return (await get_conversation(rest, conv_id, prefix))["turns"]


def model_id(default_registry: str, registry: str, slug: str) -> str:
    return slug if registry == default_registry else f"{registry}/{slug}"


# --------------------------------------------------------------------------- models


@pytest.mark.parametrize(("prefix", "default_registry"), MOUNTS)
async def test_models_are_the_profiles_the_resolve_api_allows(server, alice, prefix, default_registry):
    async with async_client(server, alice.token, prefix) as sdk:
        page = await sdk.models.list()
        ids = [model.id for model in page.data]
        one = await sdk.models.retrieve(ids[-1])

    profiles = await rest_profiles(server, alice, prefix)
    assert sorted(ids) == sorted(model_id(default_registry, registry, slug) for registry, slug in profiles)
    assert len(ids) == 6  # the seed: three profiles in each registry
    # The mount's own registry first, by bare slug; the other registry as `registry/slug`.
    other = "inventory" if default_registry == "default" else "default"
    assert ids[:3] == sorted(ids[:3]) and ids[3:] == sorted(ids[3:])
    assert all("/" not in i for i in ids[:3]) and all(i.startswith(f"{other}/") for i in ids[3:])
    for model in page.data:
        assert model.object == "model" and isinstance(model.created, int) and model.created > 0
        registry = model.id.split("/")[0] if "/" in model.id else default_registry
        assert model.owned_by == registry
    for registry, slug in profiles:  # a plain user may resolve (use) every one of them
        await resolved(server, alice, prefix, registry, slug)
    assert one.id == ids[-1]


def test_a_bad_token_is_an_authentication_error(server):
    with sync_client(server, "not-a-token") as sdk:
        with pytest.raises(openai.AuthenticationError) as listing:
            sdk.models.list()
        with pytest.raises(openai.AuthenticationError) as completion:
            sdk.chat.completions.create(model="default", messages=user_message("hello"))
    for raised in (listing.value, completion.value):
        assert raised.status_code == 401
        assert raised.body["type"] == "authentication_error"
    assert not Turn.objects.exists()


async def test_a_bad_token_is_an_authentication_error_for_the_async_client_too(server):
    async with async_client(server, "not-a-token", "/inventory") as sdk:
        with pytest.raises(openai.AuthenticationError):
            await sdk.chat.completions.create(model="inventory", messages=user_message("hello"), stream=True)


# --------------------------------------------------------------------------- completions


@pytest.mark.parametrize(("prefix", "default_registry"), MOUNTS)
async def test_every_profile_answers_with_its_runtime_fingerprint(server, alice, prefix, default_registry):
    """One completion per seeded profile (concurrently, async client): the answer's system_fingerprint
    is the fingerprint the resolve API computes, and the stored turn ran that runtime."""
    profiles = await rest_profiles(server, alice, prefix)
    async with async_client(server, alice.token, prefix) as sdk:
        answers = await asyncio.gather(
            *(
                sdk.chat.completions.with_raw_response.create(
                    model=model_id(default_registry, registry, slug), messages=user_message("hello there")
                )
                for registry, slug in profiles
            )
        )
    for (registry, slug), raw in zip(profiles, answers, strict=True):
        completion = raw.parse()
        expected = await resolved(server, alice, prefix, registry, slug)
        assert completion.model == model_id(default_registry, registry, slug)
        assert completion.system_fingerprint == expected["fingerprint"]
        assert completion.object == "chat.completion"
        assert completion.choices[0].finish_reason == "stop"
        assert completion.choices[0].message.content
        [turn] = await stored_turns(server, alice, raw.headers["x-conversation-id"], prefix)
        assert (turn["registry"], turn["profile_slug"], turn["fingerprint"]) == (
            registry,
            slug,
            expected["fingerprint"],
        )
        assert completion.id == f"chatcmpl-{uuid.UUID(turn['turn_id']).hex}"
        assert raw.headers["x-turn-id"] == turn["turn_id"]


def test_the_stored_turn_is_the_answer_with_its_runtime_record(server, alice, client):
    """Non-streaming, sync client, through the chat mount: the conversation shows like any other (the
    caller's, titled by the prompt) and its turn records the runtime, the override and the usage."""
    raw = client.chat.completions.with_raw_response.create(
        model="analyst",
        messages=[{"role": "system", "content": "You are an analyst assistant. Be brief."}, *user_message("2+2")],
        temperature=0.25,
        max_tokens=200,
    )
    completion = raw.parse()
    conv_id = raw.headers["x-conversation-id"]

    [turn] = asyncio.run(stored_turns(server, alice, conv_id))
    assert turn["status"] == "completed"
    assert turn["text"] == completion.choices[0].message.content
    assert turn["usage"] == completion.usage.model_dump(
        include={"prompt_tokens", "completion_tokens", "total_tokens", "cost_usd"}
    )
    assert turn["fingerprint"] == completion.system_fingerprint
    assert (turn["registry"], turn["profile_slug"], turn["profile_version"]) == ("default", "analyst", 1)
    assert turn["engine"]["provider"] == "offline"
    assert turn["middlewares"] == [{"name": "suggestions", "id": "followups"}]
    assert turn["tools"] == ["calculator"]
    assert [call["name"] for call in turn["tool_calls"]] == ["calculator"]
    assert turn["overrides_applied"] == {
        "system_prompt": "You are an analyst assistant. Be brief.",
        "step_settings_patch": {"ai-chat": {"ai-temperature": 0.25, "ai-max-response-tokens": 200}},
    }
    # The overrides are part of the runtime: the fingerprint is the resolve API's for the same overrides.
    with httpx.Client(base_url=server.url, headers={"Authorization": f"Token {alice.token}"}, trust_env=False) as rest:
        expected = rest.post(
            "/api/chat/profiles/analyst/resolve", json={"request_overrides": turn["overrides_applied"]}
        ).json()
        listed = rest.get("/api/chat/conversations").json()["results"]
    assert expected["fingerprint"] == completion.system_fingerprint
    assert [(c["conv_id"], c["title"], c["mount"]) for c in listed] == [(conv_id, "2+2", "chat")]


def test_streaming_with_the_sync_client(server, alice, client):
    stream = client.chat.completions.create(
        model="agent",
        messages=user_message("Please explain what you can do for me, step by step."),
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(stream)
    conv_id = stream.response.headers["x-conversation-id"]

    content = [c.choices[0].delta.content for c in chunks if c.choices and c.choices[0].delta.content]
    # How many deltas depends on when the view joined the conversation (what came before arrives in one
    # replayed block); live deltas are asserted in tests/chat/test_gateway.py with a turn long enough.
    assert content, "the answer streamed"
    assert chunks[0].choices[0].delta.role == "assistant"
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "stop"
    assert chunks[-1].choices == [] and chunks[-1].usage is not None
    assert {c.id for c in chunks} == {chunks[0].id} and {c.object for c in chunks} == {"chat.completion.chunk"}
    [turn] = asyncio.run(stored_turns(server, alice, conv_id))
    assert "".join(content) == turn["text"]
    assert {c.system_fingerprint for c in chunks} == {turn["fingerprint"]}
    assert (
        chunks[-1].usage.model_dump(include={"prompt_tokens", "completion_tokens", "total_tokens", "cost_usd"})
        == turn["usage"]
    )


async def test_streaming_with_the_async_client_through_the_inventory_mount(server, alice):
    """The inventory default profile answers "which items are low on stock?" from its
    inventory_low_stock tool (run on the server); the stored turn lists the call."""
    async with async_client(server, alice.token, "/inventory") as sdk:
        stream = await sdk.chat.completions.create(
            model="inventory", messages=user_message("Which items are low on stock?"), stream=True
        )
        chunks = [chunk async for chunk in stream]
        conv_id = stream.response.headers["x-conversation-id"]

    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert all(sku in text for sku in LOW_STOCK_SKUS), text
    assert all(not c.choices or c.choices[0].delta.tool_calls is None for c in chunks)  # no client tool calls
    assert chunks[-1].choices[0].finish_reason == "stop"
    [turn] = await stored_turns(server, alice, conv_id, "/inventory")
    assert turn["text"] == text
    assert (turn["registry"], turn["profile_slug"]) == ("inventory", "inventory")
    [call] = turn["tool_calls"]
    assert call["name"] == "inventory_low_stock"
    assert sorted(item["sku"] for item in call["result"]["items"]) == sorted(LOW_STOCK_SKUS)


async def test_a_non_streaming_inventory_answer_comes_from_the_tool(server, alice):
    async with async_client(server, alice.token, "/inventory") as sdk:
        raw = await sdk.chat.completions.with_raw_response.create(
            model="inventory", messages=user_message("which items are low on stock?")
        )
    completion = raw.parse()
    assert all(sku in completion.choices[0].message.content for sku in LOW_STOCK_SKUS)
    [turn] = await stored_turns(server, alice, raw.headers["x-conversation-id"], "/inventory")
    assert [call["name"] for call in turn["tool_calls"]] == ["inventory_low_stock"]
    assert turn["usage"] == completion.usage.model_dump(
        include={"prompt_tokens", "completion_tokens", "total_tokens", "cost_usd"}
    )


# --------------------------------------------------------------------------- conversations


def words(text: str) -> int:
    return len(text.split())


def test_x_conversation_id_keeps_the_context_on_the_server(server, alice, client):
    first = client.chat.completions.with_raw_response.create(model="default", messages=user_message("hello one"))
    conv_id = first.headers["x-conversation-id"]
    answer = first.parse().choices[0].message.content

    # Only the new message: the server has the context.
    second = client.chat.completions.with_raw_response.create(
        model="default", messages=user_message("and two"), extra_headers={"X-Conversation-Id": conv_id}
    )
    # The whole history resent (as SDK users do): accepted because it is what the server stored.
    history = [
        *user_message("hello one"),
        {"role": "assistant", "content": answer},
        *user_message("and two"),
        {"role": "assistant", "content": second.parse().choices[0].message.content},
    ]
    third = client.chat.completions.with_raw_response.create(
        model="default",
        messages=[*history, *user_message("and three")],
        extra_headers={"X-Conversation-Id": conv_id},
    )
    # A history the server did not store is refused, not silently replaced.
    with pytest.raises(openai.BadRequestError) as raised:
        client.chat.completions.create(
            model="default",
            messages=[*user_message("and three"), {"role": "assistant", "content": "made up"}, *user_message("four")],
            extra_headers={"X-Conversation-Id": conv_id},
        )
    assert raised.value.body["param"] == "messages"
    assert second.headers["x-conversation-id"] == third.headers["x-conversation-id"] == conv_id

    turns = asyncio.run(stored_turns(server, alice, conv_id))
    assert [t["prompt"] for t in turns] == ["hello one", "and two", "and three"]
    assert turns[0]["text"] == answer
    # The offline engine counts the words of every message it was sent: the second turn was sent the
    # first one (prompt and answer) as history, the third both earlier turns.
    one, two, three = (t["usage"]["prompt_tokens"] for t in turns)
    assert two == one + words(answer) + words("and two")
    assert three == two + words(turns[1]["text"]) + words("and three")
    assert second.parse().usage.prompt_tokens == two


def test_earlier_messages_need_the_conversation(server, alice, client):
    history = [*user_message("hello"), {"role": "assistant", "content": "hi"}, *user_message("again")]
    with pytest.raises(openai.BadRequestError) as raised:
        client.chat.completions.create(model="default", messages=history)
    assert raised.value.body["param"] == "messages"
    assert "X-Conversation-Id" in raised.value.body["message"]
    assert not Conversation.objects.exists()


def test_another_users_conversation_is_refused(server, alice, client):
    conv_id = client.chat.completions.with_raw_response.create(model="default", messages=user_message("mine")).headers[
        "x-conversation-id"
    ]
    mallory = make_user("mallory")
    with sync_client(server, mallory.token) as other, pytest.raises(openai.PermissionDeniedError):
        other.chat.completions.create(
            model="default", messages=user_message("yours?"), extra_headers={"X-Conversation-Id": conv_id}
        )
    # Another app's conversation does not exist in this one.
    with sync_client(server, alice.token, "/inventory") as inventory, pytest.raises(openai.NotFoundError):
        inventory.chat.completions.create(
            model="inventory", messages=user_message("here?"), extra_headers={"X-Conversation-Id": conv_id}
        )
    assert Turn.objects.filter(conversation_id=conv_id).count() == 1


# --------------------------------------------------------------------------- refusals


def test_a_refused_override_is_permission_denied_and_stores_nothing(server, client):
    with pytest.raises(openai.PermissionDeniedError) as raised:
        client.chat.completions.create(model="default", messages=user_message("hello"), temperature=0.3)
    assert raised.value.body["code"] == "policy_violation"
    assert raised.value.body["param"] == "temperature"
    with pytest.raises(openai.PermissionDeniedError) as system:  # a system message is an override too
        client.chat.completions.create(
            model="inventory/inventory", messages=[{"role": "system", "content": "Be terse."}, *user_message("hi")]
        )
    assert system.value.body["param"] == "messages"
    assert not Conversation.objects.exists() and not Turn.objects.exists()


async def test_an_unknown_model_is_not_found(server, alice):
    async with async_client(server, alice.token) as sdk:
        for model in ("nope", "inventory/nope", "nope/default", "default@v1"):
            with pytest.raises(openai.NotFoundError) as raised:
                await sdk.chat.completions.create(model=model, messages=user_message("hello"))
            assert raised.value.body["code"] == "model_not_found"
            assert raised.value.body["param"] == "model"
        with pytest.raises(openai.NotFoundError):
            await sdk.models.retrieve("nope")


def test_client_tools_are_a_bad_request(server, client):
    tool = {"type": "function", "function": {"name": "lookup", "parameters": {"type": "object", "properties": {}}}}
    with pytest.raises(openai.BadRequestError) as raised:
        client.chat.completions.create(model="agent", messages=user_message("hello"), tools=[tool])
    assert raised.value.body["param"] == "tools"
    assert raised.value.body["code"] == "unsupported_parameter"
    with pytest.raises(openai.BadRequestError) as choice:
        client.chat.completions.create(model="agent", messages=user_message("hello"), tool_choice="none")
    assert choice.value.body["param"] == "tool_choice"
    with pytest.raises(openai.BadRequestError) as several:
        client.chat.completions.create(model="agent", messages=user_message("hello"), n=2)
    assert several.value.body["param"] == "n"
    assert not Turn.objects.exists()


def test_a_full_queue_is_a_rate_limit_error(server, alice, client):
    """Turns wait one at a time per conversation: past CHAT_MAX_QUEUED_TURNS the answer is 429 with
    Retry-After (the SDK's RateLimitError), as on the REST API."""
    conv_id = client.chat.completions.with_raw_response.create(model="default", messages=user_message("first")).headers[
        "x-conversation-id"
    ]
    conversation = Conversation.objects.get(pk=conv_id)
    # A turn running on another (live) worker, and a full queue behind it.
    running = Turn.objects.create(
        conversation=conversation, seq=2, prompt="busy", status="running", worker="elsewhere",
        created_at_ms=1, lease_until_ms=2**62,
    )  # fmt: skip
    Conversation.objects.filter(pk=conv_id).update(active_turn=running)
    for seq in range(3, 8):
        Turn.objects.create(conversation=conversation, seq=seq, prompt="waiting", created_at_ms=1)
    turns_counted(conversation)

    with pytest.raises(openai.RateLimitError) as raised:
        client.chat.completions.create(
            model="default", messages=user_message("one more"), extra_headers={"X-Conversation-Id": conv_id}
        )
    assert raised.value.body["code"] == "queue_full"
    assert int(raised.value.response.headers["retry-after"]) >= 1
    assert Turn.objects.filter(conversation_id=conv_id).count() == 7


def test_a_failed_turn_is_a_server_error_that_is_not_retried(server, alice):
    """A profile whose engine cannot be reached: the turn fails and is stored; non-streaming answers a 502
    with the turn's error code and `x-should-retry: false`, so the SDK (retries on) sends it once."""
    from profiles.services import profile_create

    from .server import free_port

    profile_create(
        registry_slug="default",
        slug="unreachable",
        runtime={
            "system_prompt": "You are remote.",
            "step_settings_patch": {
                "ai-chat": {"ai-api-type": "openai", "ai-engine": "remote-model"},
                "openai-chat": {"openai-base-url": f"http://127.0.0.1:{free_port()}/v1"},
            },
        },
    )
    with sync_client(server, alice.token, max_retries=2) as sdk:
        with pytest.raises(openai.InternalServerError) as raised:
            sdk.chat.completions.create(model="unreachable", messages=user_message("hello"))
        assert raised.value.status_code == 502
        assert raised.value.body["code"] == "connection_error"
        conv_id = raised.value.response.headers["x-conversation-id"]
        with pytest.raises(openai.APIError) as streamed:
            list(sdk.chat.completions.create(model="unreachable", messages=user_message("hello"), stream=True))
        assert streamed.value.body["code"] == "connection_error"
    assert Turn.objects.filter(conversation_id=conv_id).get().status == "failed"  # sent once, not retried
    assert Turn.objects.filter(status="failed").count() == 2
