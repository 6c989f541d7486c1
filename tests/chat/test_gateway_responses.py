"""The Responses API in-process (#20, point 5), through both mounts: what `input` may be and what is
refused with its parameter, `previous_response_id` continuing only the latest response of one of the
caller's conversations, a failed turn streamed as `response.failed`, and a key's scopes on reads."""

from __future__ import annotations

import json
from typing import Any

import pytest
from rest_framework.test import APIClient

from chat.models import Turn
from profiles import keys

from .fake_openai import FakeOpenAIServer, remote_profile

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.usefixtures("seeded_inventory", "fast_turns"),
    pytest.mark.filterwarnings("ignore:StreamingHttpResponse must consume asynchronous iterators"),
]
MOUNTS = [pytest.param("", id="chat"), pytest.param("/inventory", id="inventory")]


@pytest.fixture
def api(chat_token) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {chat_token}")
    return client


def respond(api: APIClient, prefix: str = "", **body: Any):
    body.setdefault("model", "default")
    return api.post(f"{prefix}/v1/responses", json.dumps(body), content_type="application/json")


def error_of(response, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.content
    return response.json()["error"]


def events_of(response) -> list[tuple[str, dict]]:
    assert response.status_code == 200 and response["Content-Type"] == "text/event-stream"
    found = []
    for block in b"".join(response).decode().split("\n\n"):
        if block:
            kind, data = block.split("\n", 1)
            found.append((kind.removeprefix("event: "), json.loads(data.removeprefix("data: "))))
    return found


@pytest.mark.parametrize("prefix", MOUNTS)
def test_a_string_input_is_answered_as_a_turn_on_each_mount(api, prefix):
    answer = respond(api, prefix, input="hello")

    assert answer.status_code == 200, answer.content
    assert answer.json()["output"][0]["content"][0]["text"]
    assert Turn.objects.get(pk=answer["X-Turn-Id"]).conversation.mount == ("inventory" if prefix else "chat")


def test_items_with_a_system_item_and_instructions_answer_as_a_turn(api):
    answer = respond(
        api,
        model="analyst",
        instructions="Be brief.",
        input=[
            {"role": "developer", "content": "Answer in numbers."},
            {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "What is 2+2?"}]},
        ],
    )

    assert answer.status_code == 200, answer.content
    body = answer.json()
    assert body["object"] == "response" and body["status"] == "completed" and body["id"].startswith("resp_")
    assert body["output"][0]["content"][0]["text"] and body["instructions"] == "Be brief.\n\nAnswer in numbers."
    assert body["previous_response_id"] is None and body["metadata"] == {}
    assert answer["X-Turn-Id"].replace("-", "") == body["id"][5:]
    turn = Turn.objects.get(pk=answer["X-Turn-Id"])
    assert turn.request_overrides["system_prompt"] == "Be brief.\n\nAnswer in numbers."


@pytest.mark.parametrize(
    ("body", "param", "status"),
    [
        ({"input": [{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"}]}, "input", 400),
        ({"input": [{"role": "user", "content": "a"}, {"role": "user", "content": "b"}]}, "input[0]", 400),
        ({"input": [{"type": "function_call_output", "call_id": "x", "output": "1"}]}, "input[0]", 400),
        (
            {"input": [{"role": "user", "content": [{"type": "input_image", "image_url": "x"}]}]},
            "input[0].content[0]",
            400,
        ),
        ({"input": "   "}, "input", 400),
        ({"input": "hi", "store": False}, "store", 400),
        ({"input": "hi", "tools": [{"type": "web_search"}]}, "tools", 400),
        ({"input": "hi", "metadata": {str(n): "v" for n in range(17)}}, "metadata", 400),
        ({"input": "hi", "reasoning": {"effort": "low"}}, "reasoning", 400),
        ({"input": "hi", "temperature": 0.3}, "temperature", 403),
        ({"input": "hi", "instructions": "Be brief."}, "instructions", 403),
        ({"input": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "hi"}]}, "input", 403),
        ({"input": "hi", "previous_response_id": "resp_nope"}, "previous_response_id", 404),
    ],
)
def test_what_is_refused_names_its_parameter_and_stores_nothing(api, body, param, status):
    error = error_of(respond(api, **body), status)

    assert error["param"] == param, error
    assert Turn.objects.count() == 0


def test_previous_response_id_continues_only_the_latest_response_of_your_conversation(api, other_user):
    first = respond(api, input="one").json()
    second = respond(api, input="two", previous_response_id=first["id"]).json()
    stranger = APIClient()
    stranger.force_authenticate(other_user)

    branch = respond(api, input="three", previous_response_id=first["id"])
    theirs = respond(stranger, input="mine now", previous_response_id=second["id"])
    other_app = respond(api, "/inventory", model="inventory", input="x", previous_response_id=second["id"])

    assert second["previous_response_id"] == first["id"]
    assert (
        error_of(branch, 409)["param"] == "previous_response_id" and second["id"] in branch.json()["error"]["message"]
    )
    assert error_of(theirs, 404)["param"] == "previous_response_id"
    assert error_of(other_app, 404)["param"] == "previous_response_id"
    assert api.get(f"/v1/responses/{second['id']}").json()["previous_response_id"] == first["id"]
    assert stranger.get(f"/v1/responses/{second['id']}").status_code == 404


def test_a_stream_numbers_its_events_and_ends_with_the_whole_response(api):
    events = events_of(respond(api, input="hello there", stream=True))

    kinds = [kind for kind, _ in events]
    assert kinds[:4] == [
        "response.created",
        "response.in_progress",
        "response.output_item.added",
        "response.content_part.added",
    ]
    assert kinds[-1] == "response.completed"
    assert [data["sequence_number"] for _, data in events] == list(range(len(events)))
    assert all(data["type"] == kind for kind, data in events)
    deltas = "".join(data["delta"] for kind, data in events if kind == "response.output_text.delta")
    final = events[-1][1]["response"]
    assert deltas == final["output"][0]["content"][0]["text"] and final["status"] == "completed"


def test_a_failed_turn_streams_response_failed_with_its_error(api):
    with FakeOpenAIServer() as fake:  # nothing scripted: every request is a 500
        remote_profile(fake)
        events = events_of(respond(api, model="remote", input="hi", stream=True))

    kind, data = events[-1]
    assert kind == "response.failed"
    assert data["response"]["status"] == "failed" and data["response"]["error"]["code"]


def test_a_keys_scopes_apply_to_reading_a_response(api, chat_user):
    made = respond(api, input="hello").json()
    narrow = APIClient()
    narrow.credentials(
        HTTP_AUTHORIZATION=f"Bearer {keys.key_create(owner=chat_user, name='r', scopes=['analyst']).secret}"
    )
    wide = APIClient()
    wide.credentials(HTTP_AUTHORIZATION=f"Bearer {keys.key_create(owner=chat_user, name='w', scopes=['*']).secret}")

    assert error_of(narrow.get(f"/v1/responses/{made['id']}"), 403)["code"] == "model_not_allowed"
    assert wide.get(f"/v1/responses/{made['id']}").json()["output"] == made["output"]
