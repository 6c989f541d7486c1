"""The Responses API end to end (#20, point 5): the official `openai` SDK creates, streams, continues and
reads responses against a real daphne, through an API key; each response is a stored turn of one of the
key owner's conversations, and `previous_response_id` continues it."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import httpx2 as httpx
import openai
import pytest
from openai import OpenAI

from chat.models import Turn

from .helpers import ApiUser, http, make_user, seed
from .server import LiveServer

pytestmark = pytest.mark.e2e


async def issue(server: LiveServer, user: ApiUser, **body) -> dict:
    async with http(server, user) as rest:
        response = await rest.post("/api/keys", json={"name": "responses", **body})
    assert response.status_code == 201, response.text
    return response.json()


@pytest.fixture
def client(server) -> Iterator[OpenAI]:
    seed()
    owner = make_user("responder")
    key = asyncio.run(issue(server, owner, scopes=["analyst", "inventory"]))
    with OpenAI(
        api_key=key["key"],
        base_url=f"{server.url}/v1",
        max_retries=0,
        http_client=httpx.Client(trust_env=False, timeout=60),
    ) as sdk:
        yield sdk


def test_create_continue_and_retrieve_a_response(client):
    first = client.responses.create(model="analyst", input="What is 17.5% of 2,340?", metadata={"ticket": "T-1"})
    second = client.responses.create(
        model="analyst", input=[{"role": "user", "content": "And of 100?"}], previous_response_id=first.id
    )
    again = client.responses.retrieve(first.id)

    assert first.status == "completed" and first.object == "response"
    assert "409.5" in first.output_text
    assert first.usage.total_tokens > 0 and first.metadata == {"ticket": "T-1"}
    assert second.previous_response_id == first.id and second.output_text
    assert again.id == first.id and again.output_text == first.output_text
    turns = list(Turn.objects.filter(pk__in=[first.id[5:], second.id[5:]]).order_by("seq"))
    assert [t.seq for t in turns] == [1, 2] and turns[0].conversation_id == turns[1].conversation_id
    calculator = [item for item in first.output if item.type == "mcp_call"]
    assert [item.name for item in calculator] == ["calculator"] and calculator[0].server_label == "analyst"


def test_a_stream_gives_the_responses_events_and_the_final_response(client):
    with client.responses.stream(model="analyst", input="What is 3 ** 7?") as stream:
        kinds = [event.type for event in stream]
        final = stream.get_final_response()

    assert kinds[:2] == ["response.created", "response.in_progress"]
    assert "response.output_text.delta" in kinds
    assert kinds[-4:] == [
        "response.output_text.done",
        "response.content_part.done",
        "response.output_item.done",
        "response.completed",
    ]
    assert final.status == "completed" and "2187" in final.output_text
    assert client.responses.retrieve(final.id).output_text == final.output_text


def test_what_the_sdk_is_refused(client):
    with pytest.raises(openai.PermissionDeniedError) as not_allowed:
        client.responses.create(model="default", input="hi")
    with pytest.raises(openai.BadRequestError) as tools:
        client.responses.create(
            model="analyst", input="hi", tools=[{"type": "function", "name": "f", "parameters": {"type": "object"}}]
        )
    with pytest.raises(openai.NotFoundError):
        client.responses.retrieve("resp_" + "0" * 32)
    with pytest.raises(openai.BadRequestError) as unstored:
        client.responses.create(model="analyst", input="hi", store=False)

    assert not_allowed.value.code == "model_not_allowed"
    assert tools.value.code == "unsupported_parameter" and tools.value.param == "tools"
    assert unstored.value.param == "store"
