"""The OpenAI-compatible gateway (`/v1/…`, `/inventory/v1/…`) in-process: DRF's APIClient (the turn runs
inline before the answer) and, for live streaming, `config.asgi.application` itself (the turn runs as a
task on the test's loop while the answer streams).

Error shapes and statuses (what the openai SDK maps to its classes), hostile input, overrides and their
policy, the conversation header, turn failures and timeouts, and the stored turn behind every answer.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from typing import Any

import pytest
from asgiref.testing import ApplicationCommunicator
from channels.layers import channel_layers
from django.db import connection
from django.test.utils import CaptureQueriesContext
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from chat import frames
from chat.gateway import selectors as gateway_selectors
from chat.models import Conversation, ConversationEvent, Turn
from chat.mounts import CHAT_MOUNT
from inventory.mounts import INVENTORY_MOUNT
from profiles.models import Profile
from profiles.selectors import profile_resolve
from profiles.services import profile_create

from .factories import ConversationFactory, TurnFactory, UserFactory
from .fake_openai import free_port

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.usefixtures("seeded_inventory", "fast_turns"),
    # The test client is WSGI-like: it reads the event stream synchronously (daphne reads it async).
    pytest.mark.filterwarnings("ignore:StreamingHttpResponse must consume asynchronous iterators"),
]

MOUNTS = [pytest.param("", "default", id="chat"), pytest.param("/inventory", "inventory", id="inventory")]
ERROR_KEYS = {"message", "type", "param", "code"}
LOW_STOCK_SKUS = ["A-1021", "C-3010", "A-1055", "A-1002", "B-2015"]


@pytest.fixture
def api(chat_token) -> APIClient:
    """Authenticated as OpenAI clients are: `Authorization: Bearer <token>`."""
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {chat_token}")
    return client


def complete(api: APIClient, prefix: str = "", headers: dict[str, str] | None = None, **body: Any):
    body.setdefault("messages", [{"role": "user", "content": "hello"}])
    extra = {f"HTTP_{k.upper().replace('-', '_')}": v for k, v in (headers or {}).items()}
    return api.post(f"{prefix}/v1/chat/completions", body, format="json", **extra)


def openai_error(response, status: int) -> dict[str, Any]:
    """The OpenAI error object of a response that must have this status."""
    assert response.status_code == status, response.content
    assert response["Content-Type"] == "application/json"
    body = response.json()
    assert set(body) == {"error"} and set(body["error"]) == ERROR_KEYS, body
    return body["error"]


def sse_events(response) -> list[Any]:
    """The `data:` payloads of an event stream (`[DONE]` as the string)."""
    assert response.status_code == 200
    assert response["Content-Type"] == "text/event-stream"
    raw = b"".join(response).decode()
    events = [block.removeprefix("data: ") for block in raw.split("\n\n") if block]
    assert all(not e.startswith("data:") for e in events)
    return [e if e == "[DONE]" else json.loads(e) for e in events]


def streamed_text(events: list[Any]) -> str:
    return "".join(
        e["choices"][0]["delta"].get("content") or "" for e in events if isinstance(e, dict) and e.get("choices")
    )


# --------------------------------------------------------------------------- authentication


@pytest.mark.parametrize("path", ["/v1/models", "/inventory/v1/models", "/v1/models/default"])
def test_no_token_or_a_bad_one_is_a_401_in_openai_shape(path):
    anonymous = APIClient()
    error = openai_error(anonymous.get(path), 401)
    assert error["type"] == "authentication_error"
    bad = APIClient()
    bad.credentials(HTTP_AUTHORIZATION="Bearer not-a-token")
    response = bad.get(path)
    assert openai_error(response, 401)["message"] == "Invalid token."
    assert response["WWW-Authenticate"] == "Bearer"


def test_bearer_and_token_keywords_both_work(chat_token):
    for keyword in ("Bearer", "Token"):
        client = APIClient()
        client.credentials(HTTP_AUTHORIZATION=f"{keyword} {chat_token}")
        assert client.get("/v1/models").status_code == 200


def test_the_session_does_not_authenticate_the_gateway(chat_user):
    client = APIClient()
    client.force_login(chat_user)
    assert openai_error(client.get("/v1/models"), 401)["type"] == "authentication_error"


# --------------------------------------------------------------------------- models


@pytest.mark.parametrize(("prefix", "default_registry"), MOUNTS)
def test_models_are_every_profile_named_relative_to_the_mount(api, prefix, default_registry):
    response = api.get(f"{prefix}/v1/models")

    assert response.status_code == 200
    body = response.json()
    assert body["object"] == "list"
    other = "inventory" if default_registry == "default" else "default"

    def slugs(registry: str) -> list[str]:
        return list(Profile.objects.filter(registry__slug=registry).order_by("slug").values_list("slug", flat=True))

    expected = [*slugs(default_registry), *(f"{other}/{slug}" for slug in slugs(other))]
    assert [m["id"] for m in body["data"]] == expected
    assert len(expected) == 6
    for model in body["data"]:
        registry, _, slug = model["id"].rpartition("/")
        profile = Profile.objects.get(registry__slug=registry or default_registry, slug=slug)
        assert model == {
            "id": model["id"],
            "object": "model",
            "created": profile.created_at_ms // 1000,
            "owned_by": profile.registry.slug,
        }
        assert api.get(f"{prefix}/v1/models/{model['id']}").json() == model
    assert api.get(f"{prefix}/v1/models/{default_registry}/analyst").json()["id"] == "analyst"


@pytest.mark.parametrize("model", ["nope", "inventory/nope", "nope/default", "default@v1", "a/b/c", "%00"])
def test_an_unknown_model_is_a_404_model_not_found(api, model):
    error = openai_error(api.get(f"/v1/models/{model}"), 404)
    assert (error["code"], error["param"], error["type"]) == ("model_not_found", "model", "invalid_request_error")
    error = openai_error(complete(api, model=model), 404)
    assert (error["code"], error["param"]) == ("model_not_found", "model")
    assert not Conversation.objects.exists()


def test_listing_models_costs_one_query_whatever_the_number_of_profiles():
    def count() -> int:
        with CaptureQueriesContext(connection) as captured:
            gateway_selectors.model_list(mount=CHAT_MOUNT, user=None)
        return len(captured)

    before = count()
    for n in range(10):
        profile_create(registry_slug="inventory", slug=f"extra-{n}", runtime={"system_prompt": "x"})
    assert count() == before == 1
    assert len(gateway_selectors.model_list(mount=INVENTORY_MOUNT, user=None)) == 16


@pytest.mark.parametrize("path", ["/v1/embeddings", "/inventory/v1/completions", "/v1/models/"])
def test_other_v1_paths_are_openai_404s(path):
    client = APIClient(enforce_csrf_checks=True)  # as a token client: no CSRF token
    assert openai_error(client.get(path), 404)["code"] == "not_found"
    assert openai_error(client.post(path, {"model": "default"}, format="json"), 404)["code"] == "not_found"


def test_a_wrong_method_is_a_405_in_openai_shape(api):
    assert openai_error(api.get("/v1/chat/completions"), 405)["code"] == "method_not_allowed"


# --------------------------------------------------------------------------- completions


@pytest.mark.parametrize(("prefix", "default_registry"), MOUNTS)
def test_a_completion_is_a_stored_turn_of_a_new_conversation(api, chat_user, prefix, default_registry):
    response = complete(api, prefix, model="analyst", messages=[{"role": "user", "content": "What is 2+2?"}])

    assert response.status_code == 200, response.content
    body = response.json()
    conversation = Conversation.objects.get(pk=response["X-Conversation-Id"])
    turn = conversation.turns.get()
    assert str(turn.pk) == response["X-Turn-Id"]
    assert (conversation.owner, conversation.mount) == (chat_user, "chat" if not prefix else "inventory")
    assert (conversation.selected_registry, conversation.selected_profile) == (default_registry, "analyst")
    assert conversation.title == "What is 2+2?"
    assert (turn.status, turn.prompt, turn.registry, turn.profile_slug) == (
        "completed",
        "What is 2+2?",
        default_registry,
        "analyst",
    )
    resolution = profile_resolve(registry_slug=default_registry, profile_slug="analyst")
    assert body == {
        "id": f"chatcmpl-{turn.pk.hex}",
        "object": "chat.completion",
        "created": turn.created_at_ms // 1000,
        "model": "analyst",
        "system_fingerprint": resolution.fingerprint,
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": turn.text, "refusal": None},
                "logprobs": None,
                "finish_reason": "stop",
            }
        ],
        "usage": turn.usage,
    }
    assert turn.fingerprint == resolution.fingerprint
    assert set(turn.usage) == {"prompt_tokens", "completion_tokens", "total_tokens", "cost_usd"}


def test_a_model_of_another_registry_is_named_registry_slash_slug(api):
    response = complete(api, model="inventory/analyst")

    turn = Turn.objects.get()
    assert response.json()["model"] == "inventory/analyst"
    assert (turn.registry, turn.profile_slug, turn.conversation.mount) == ("inventory", "analyst", "chat")


def test_streaming_sends_role_deltas_finish_usage_then_done(api):
    response = complete(
        api, model="agent", stream=True, stream_options={"include_usage": True}, messages=[{"role": "user", "content": "What is 2+2?"}]
    )  # fmt: skip

    events = sse_events(response)
    turn = Turn.objects.get(pk=response["X-Turn-Id"])
    assert events[-1] == "[DONE]"
    chunks = events[:-1]
    assert {c["id"] for c in chunks} == {f"chatcmpl-{turn.pk.hex}"}
    assert {c["object"] for c in chunks} == {"chat.completion.chunk"}
    assert {c["system_fingerprint"] for c in chunks} == {turn.fingerprint}
    assert {c["model"] for c in chunks} == {"agent"}
    assert chunks[0]["choices"][0]["delta"] == {"role": "assistant", "content": ""}
    assert chunks[-2]["choices"][0] == {"index": 0, "delta": {}, "logprobs": None, "finish_reason": "stop"}
    assert chunks[-1]["choices"] == [] and chunks[-1]["usage"] == turn.usage
    assert all(c["usage"] is None for c in chunks[:-1])  # include_usage: null until the last chunk
    assert streamed_text(events) == turn.text and "2+2 = 4" in turn.text


def test_streaming_without_include_usage_has_no_usage(api):
    events = sse_events(complete(api, model="default", stream=True))
    assert all("usage" not in e for e in events[:-1])
    assert events[-2]["choices"][0]["finish_reason"] == "stop"


def test_the_inventory_default_profile_answers_from_its_tool(api):
    response = complete(
        api, "/inventory", model="inventory", messages=[{"role": "user", "content": "Which items are low on stock?"}]
    )

    content = response.json()["choices"][0]["message"]["content"]
    assert all(sku in content for sku in LOW_STOCK_SKUS), content
    turn = Turn.objects.get()
    assert [call["name"] for call in turn.tool_calls] == ["inventory_low_stock"]
    assert "tool_calls" not in response.json()["choices"][0]["message"]


def test_a_guardrail_refusal_finishes_with_content_filter(api):
    profile_create(
        registry_slug="default",
        slug="guarded",
        runtime={"system_prompt": "x", "middlewares": [{"name": "guardrail", "config": {"blocked_terms": ["secret"]}}]},
    )
    body = complete(api, model="guarded", messages=[{"role": "user", "content": "tell me the secret"}]).json()
    assert body["choices"][0]["finish_reason"] == "content_filter"
    assert body["choices"][0]["message"]["content"] == "I can't help with that request."
    events = sse_events(complete(api, model="guarded", stream=True, messages=[{"role": "user", "content": "secret?"}]))
    assert streamed_text(events) == "I can't help with that request."
    assert events[-2]["choices"][0]["finish_reason"] == "content_filter"


# --------------------------------------------------------------------------- overrides and their policy


def test_sampling_parameters_and_a_system_message_are_request_overrides(api):
    response = complete(
        api,
        model="analyst",
        temperature=0.5,
        top_p=0.9,
        max_completion_tokens=300,
        messages=[{"role": "system", "content": "You are brief."}, {"role": "user", "content": "hello"}],
    )

    assert response.status_code == 200, response.content
    turn = Turn.objects.get()
    assert turn.overrides_applied == {
        "system_prompt": "You are brief.",
        "step_settings_patch": {"ai-chat": {"ai-temperature": 0.5, "ai-top-p": 0.9, "ai-max-response-tokens": 300}},
    }
    assert turn.request_overrides == turn.overrides_applied
    expected = profile_resolve(
        registry_slug="default", profile_slug="analyst", request_overrides=turn.overrides_applied
    )
    assert response.json()["system_fingerprint"] == expected.fingerprint == turn.fingerprint
    assert turn.fingerprint != profile_resolve(registry_slug="default", profile_slug="analyst").fingerprint


@pytest.mark.parametrize(
    ("model", "body", "param"),
    [
        ("default", {"temperature": 0.2}, "temperature"),
        ("default", {"top_p": 0.5}, "top_p"),
        ("default", {"max_tokens": 10}, "max_tokens"),
        ("agent", {"messages": [{"role": "system", "content": "x"}, {"role": "user", "content": "hi"}]}, "messages"),
        ("analyst", {"max_tokens": 100_000}, "max_tokens"),  # above CHAT_OVERRIDE_MAX_RESPONSE_TOKENS
    ],
)
def test_an_override_the_policy_refuses_is_a_403_and_stores_nothing(api, model, body, param):
    error = openai_error(complete(api, model=model, **body), 403)

    assert (error["type"], error["code"], error["param"]) == ("permission_error", "policy_violation", param)
    assert error["message"].startswith(f"{param}: ")
    assert not Conversation.objects.exists() and not Turn.objects.exists()


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"temperature": 2.5}, "temperature"),
        ({"top_p": -1}, "top_p"),
        ({"max_tokens": 0}, "max_tokens"),
        ({"max_tokens": 10, "max_completion_tokens": 20}, "max_completion_tokens"),
        ({"temperature": "hot"}, "temperature"),
        ({"stream": False, "stream_options": {"include_usage": True}}, "stream_options"),
        ({"stream": True, "stream_options": {"include_usage": True, "extra": 1}}, "stream_options.extra"),
        ({"n": 2}, "n"),
        ({"n": 0}, "n"),
        ({"stop": ["\n"]}, "stop"),
        ({"seed": 1}, "seed"),
        ({"messages": []}, "messages"),
        ({"messages": [{"role": "user"}]}, "messages[0].content"),
        ({"messages": [{"role": "user", "content": "   "}]}, "messages[0].content"),
        ({"messages": [{"role": "assistant", "content": "hi"}]}, "messages"),
        ({"messages": [{"role": "narrator", "content": "hi"}]}, "messages[0].role"),
        ({"messages": [{"role": "user", "content": 3}]}, "messages[0].content"),
        ({"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "x"}}]}]}, "messages[0].content[0]"),
        ({"messages": [{"role": "user", "content": "hi", "extra": 1}]}, "messages[0].extra"),
        ({"messages": [{"role": "user", "content": "x" * 16_001}]}, "messages[0].content"),
    ],
)  # fmt: skip
def test_malformed_or_unsupported_input_is_a_400_naming_the_parameter(api, body, param):
    error = openai_error(complete(api, model="analyst", **body), 400)

    assert (error["type"], error["param"]) == ("invalid_request_error", param), error
    assert not Turn.objects.exists()


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"tools": [{"type": "function", "function": {"name": "f"}}]}, "tools"),
        ({"functions": [{"name": "f"}]}, "functions"),
        ({"tool_choice": "auto"}, "tool_choice"),
        ({"function_call": "auto"}, "function_call"),
        ({"parallel_tool_calls": False}, "parallel_tool_calls"),
        ({"messages": [{"role": "tool", "content": "42", "tool_call_id": "c1"}, {"role": "user", "content": "hi"}]}, "messages[0]"),
        ({"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": None, "tool_calls": [{"id": "c"}]}, {"role": "user", "content": "x"}]}, "messages[1]"),
    ],
)  # fmt: skip
def test_client_side_tools_are_refused_with_a_clear_400(api, body, param):
    error = openai_error(complete(api, model="agent", **body), 400)

    assert (error["code"], error["param"]) == ("unsupported_parameter", param)
    assert "server" in error["message"]
    assert not Turn.objects.exists()


def test_null_tool_parameters_and_echoed_answers_are_accepted(api):
    first = complete(api, model="default", tools=None, tool_choice=None, n=1, user="u-1")
    answer = first.json()["choices"][0]["message"]  # echoed back as SDK users do (refusal: null)
    messages = [
        {"role": "user", "content": "hello"},
        {**answer, "annotations": []},
        {"role": "user", "content": [{"type": "text", "text": "again"}]},
    ]
    second = complete(
        api, headers={"X-Conversation-Id": first["X-Conversation-Id"]}, model="default", messages=messages
    )
    assert second.status_code == 200, second.content
    assert Turn.objects.order_by("seq").last().prompt == "again"


# --------------------------------------------------------------------------- hostile input


@pytest.mark.parametrize(
    ("raw", "param"),
    [
        ('{"model": "default", "messages": [{"role": "user", "content": "a\\u0000b"}]}', "messages[0].content"),
        ('{"model": "default", "messages": [{"role": "user", "content": "\\ud800"}]}', "messages[0].content"),
        ('{"model": "\\ud800", "messages": [{"role": "user", "content": "hi"}]}', "model"),
        ('{"model": "default", "messages": [{"role": "user", "content": "hi"}], "\\ud800": 1}', None),
        ('{"model": "default", "messages": [{"role": "user", "content": "hi"}], "temperature": NaN}', None),
        ('{"model": "default", "messages": [{"role": "user", "content": "hi"}], "top_p": Infinity}', None),
        ('{"model": "default", "messages": [', None),
        ('["model", "default"]', None),
        ('"just a string"', None),
        ("", None),
    ],
)
def test_hostile_bodies_are_400s_in_openai_shape_never_500s(api, raw, param):
    response = api.generic("POST", "/v1/chat/completions", raw.encode(), content_type="application/json")

    error = openai_error(response, 400)
    if param:
        assert error["param"] == param
    json.dumps(response.json(), ensure_ascii=False).encode("utf-8")  # encodable, whatever was sent
    assert not Turn.objects.exists()


def test_a_non_json_body_is_a_415(api):
    response = api.generic("POST", "/v1/chat/completions", b"model=default", content_type="text/plain")
    assert openai_error(response, 415)["code"] == "unsupported_media_type"


def test_a_nul_in_a_system_message_or_the_conversation_header_is_refused(api):
    body = {"model": "analyst", "messages": [{"role": "system", "content": "\x00"}, {"role": "user", "content": "hi"}]}
    assert openai_error(complete(api, **body), 400)["param"] == "messages[0].content"
    error = openai_error(complete(api, headers={"X-Conversation-Id": "not-a-uuid"}, model="default"), 400)
    assert error["param"] == "X-Conversation-Id"


# --------------------------------------------------------------------------- conversations


def test_the_conversation_header_continues_a_conversation_with_its_history(api):
    first = complete(api, model="default", messages=[{"role": "user", "content": "hello one"}])
    conv_id = first["X-Conversation-Id"]
    second = complete(
        api, headers={"X-Conversation-Id": conv_id}, model="default", messages=[{"role": "user", "content": "and two"}]
    )

    assert second["X-Conversation-Id"] == conv_id
    one, two = Turn.objects.filter(conversation_id=conv_id).order_by("seq")
    # The offline engine counts the words of what it is sent: the first turn was in the second's history.
    assert two.usage["prompt_tokens"] == one.usage["prompt_tokens"] + len(one.text.split()) + 2
    assert Conversation.objects.count() == 1


def test_the_model_switches_the_named_conversations_profile(api):
    conv_id = complete(api, model="default")["X-Conversation-Id"]
    response = complete(api, headers={"X-Conversation-Id": conv_id}, model="agent")

    conversation = Conversation.objects.get(pk=conv_id)
    assert (conversation.selected_registry, conversation.selected_profile) == ("default", "agent")
    first, second = conversation.turns.order_by("seq")
    assert (first.profile_slug, second.profile_slug) == ("default", "agent")
    assert response.json()["model"] == "agent"
    switched = ConversationEvent.objects.get(conversation=conversation, type="runtime.switched").frame["data"]
    assert switched["reason"] == "profile_changed"


def test_earlier_messages_without_the_header_are_refused(api):
    messages = [
        {"role": "user", "content": "a"},
        {"role": "assistant", "content": "b"},
        {"role": "user", "content": "c"},
    ]
    error = openai_error(complete(api, model="default", messages=messages), 400)
    assert error["param"] == "messages" and "X-Conversation-Id" in error["message"]
    assert not Conversation.objects.exists()


def test_earlier_messages_must_be_the_stored_turns(api):
    conv_id = complete(api, model="default", messages=[{"role": "user", "content": "hello"}])["X-Conversation-Id"]
    answer = Turn.objects.get().text
    wrong = [
        {"role": "user", "content": "hello"},
        {"role": "assistant", "content": "not what you said"},
        {"role": "user", "content": "x"},
    ]
    unpaired = [{"role": "user", "content": "hello"}, {"role": "user", "content": "x"}]
    right = [
        {"role": "user", "content": "hello"},
        {"role": "assistant", "content": answer},
        {"role": "user", "content": "x"},
    ]

    assert (
        openai_error(complete(api, headers={"X-Conversation-Id": conv_id}, model="default", messages=wrong), 400)[
            "param"
        ]
        == "messages"
    )
    assert (
        openai_error(complete(api, headers={"X-Conversation-Id": conv_id}, model="default", messages=unpaired), 400)[
            "param"
        ]
        == "messages[0]"
    )
    assert complete(api, headers={"X-Conversation-Id": conv_id}, model="default", messages=right).status_code == 200
    assert Turn.objects.count() == 2


def test_another_users_or_another_apps_conversation_is_refused(api):
    theirs = ConversationFactory(owner=UserFactory(username="mallory"))
    error = openai_error(complete(api, headers={"X-Conversation-Id": str(theirs.pk)}, model="default"), 403)
    assert (error["param"], error["type"]) == ("X-Conversation-Id", "permission_error")
    mine = complete(api, model="default")["X-Conversation-Id"]
    error = openai_error(complete(api, "/inventory", headers={"X-Conversation-Id": mine}, model="inventory"), 404)
    assert error["param"] == "X-Conversation-Id"
    error = openai_error(complete(api, headers={"X-Conversation-Id": str(uuid.uuid4())}, model="default"), 404)
    assert error["code"] == "not_found"
    assert Turn.objects.count() == 1


# --------------------------------------------------------------------------- limits and outcomes


def test_the_turn_throttle_is_a_429_with_retry_after(api, chat_user, monkeypatch):
    """Each completion is a turn: the REST turn throttle (per user) applies."""
    from django.core.cache import cache
    from rest_framework.throttling import ScopedRateThrottle

    monkeypatch.setattr(ScopedRateThrottle, "THROTTLE_RATES", {"turns": "2/min"})
    assert complete(api, model="default").status_code == 200
    assert complete(api, model="default").status_code == 200
    response = complete(api, model="default")

    error = openai_error(response, 429)
    assert (error["type"], error["code"]) == ("rate_limit_error", "throttled")
    assert int(response["Retry-After"]) >= 1
    assert Turn.objects.count() == 2
    assert sum(cache.get(f"throttle_turns_{chat_user.pk}").values()) == 2  # counts per slice (profiles.api.throttling)
    assert api.get("/v1/models").status_code == 200  # listing models is not a turn


def _busy_conversation(user) -> Conversation:
    """A conversation whose turn runs on another worker (never finishing here)."""
    conversation = ConversationFactory(owner=user, selected_registry="default", selected_profile="default")
    running = TurnFactory(conversation=conversation, seq=1, status="running", worker="elsewhere", lease_until_ms=2**62)
    Conversation.objects.filter(pk=conversation.pk).update(active_turn=running)
    return conversation


def test_a_full_queue_is_a_429_queue_full(api, chat_user, settings):
    settings.CHAT_MAX_QUEUED_TURNS = 0
    conversation = _busy_conversation(chat_user)

    response = complete(api, headers={"X-Conversation-Id": str(conversation.pk)}, model="default")
    error = openai_error(response, 429)
    assert (error["type"], error["code"]) == ("rate_limit_error", "queue_full")
    assert response["Retry-After"] == "5"


def test_a_turn_that_does_not_finish_in_time_is_a_504_and_goes_on(api, chat_user, settings):
    settings.CHAT_ENGINE_TIMEOUT_SECONDS = 0.2  # the wait is twice that
    conversation = _busy_conversation(chat_user)

    response = complete(api, headers={"X-Conversation-Id": str(conversation.pk)}, model="default")
    error = openai_error(response, 504)
    assert (error["type"], error["code"]) == ("server_error", "timeout")
    assert response["x-should-retry"] == "false"
    assert response["X-Conversation-Id"] == str(conversation.pk)
    assert Turn.objects.get(pk=response["X-Turn-Id"]).status == "queued"  # still waits its turn

    events = sse_events(
        complete(api, headers={"X-Conversation-Id": str(conversation.pk)}, model="default", stream=True)
    )
    assert events[-1] == "[DONE]"
    assert events[-2]["error"]["code"] == "timeout"


def _unreachable_profile() -> None:
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


def test_a_failed_turn_is_a_502_with_the_turns_error_not_to_be_retried(api):
    _unreachable_profile()

    response = complete(api, model="unreachable")
    error = openai_error(response, 502)
    assert (error["type"], error["code"]) == ("server_error", "connection_error")
    assert response["x-should-retry"] == "false"
    turn = Turn.objects.get(pk=response["X-Turn-Id"])
    assert turn.status == "failed" and turn.error["code"] == "connection_error"
    assert str(turn.pk) in error["message"]


def test_a_failed_turn_streams_an_error_event_then_done(api):
    _unreachable_profile()

    events = sse_events(complete(api, model="unreachable", stream=True))
    assert events[0]["choices"][0]["delta"]["role"] == "assistant"
    assert events[-2] == {
        "error": {
            "message": events[-2]["error"]["message"],
            "type": "server_error",
            "param": None,
            "code": "connection_error",
        }
    }
    assert events[-1] == "[DONE]"


@pytest.mark.parametrize(
    ("status", "code", "http"), [("cancelled", "cancelled", 409), ("interrupted", "interrupted", 503)]
)
def test_cancelled_and_interrupted_turns_map_to_their_statuses(status, code, http):
    from chat.gateway.following import outcome_error
    from chat.gateway.selectors import TurnResult

    turn = TurnFactory(status=status, error={"code": code, "message": "gone"} if status == "interrupted" else None)
    error = outcome_error(TurnResult(turn, None))
    assert (error.code, error.http_status) == (code, http)


# --------------------------------------------------------------------------- live streaming on the ASGI app


async def asgi_post(
    user, body: dict[str, Any], token: str | None = None
) -> tuple[ApplicationCommunicator, dict[str, str]]:
    """POST /v1/chat/completions to `config.asgi.application`; returns the communicator and the headers."""
    from asgiref.sync import sync_to_async

    from config.asgi import application

    if token is None:
        token = await sync_to_async(lambda: Token.objects.get_or_create(user=user)[0].key)()
    raw = json.dumps(body).encode()
    headers = [
        (b"host", b"testserver"),
        (b"content-length", str(len(raw)).encode()),
        (b"authorization", f"Bearer {token}".encode()),
        (b"content-type", b"application/json"),
    ]
    scope = {"type": "http", "http_version": "1.1", "method": "POST", "path": "/v1/chat/completions"}
    communicator = ApplicationCommunicator(application, {**scope, "query_string": b"", "headers": headers})
    await communicator.send_input({"type": "http.request", "body": raw})
    start = await communicator.receive_output(timeout=20)
    assert start["type"] == "http.response.start"
    return communicator, {k.decode().lower(): v.decode() for k, v in start["headers"]} | {":status": start["status"]}


async def read_body(communicator: ApplicationCommunicator) -> bytes:
    body = b""
    while True:  # as it streams; Django's closing message has no `body`
        part = await communicator.receive_output(timeout=20)
        body += part.get("body", b"")
        if not part.get("more_body"):
            return body


async def turn_row(turn_id: str) -> Turn:
    from asgiref.sync import sync_to_async

    return await sync_to_async(Turn.objects.get)(pk=turn_id)


def conversation_group_is_empty(turn: Turn) -> bool:
    """No channel is left in the conversation's groups (its sockets' and followers', its waiters')."""
    groups = channel_layers["default"].groups
    return not groups.get(frames.group_name(turn.conversation_id)) and not groups.get(
        frames.ends_group_name(turn.conversation_id)
    )


async def test_live_streaming_through_the_asgi_application(chat_user, fresh_layer, settings):
    """Through `config.asgi.application` (as daphne serves it): the dispatcher runs the turn as a task
    on this loop while the view follows its frames on the channel layer and streams the deltas."""
    # A turn of a few seconds, so the view has joined the conversation's group long before it ends even
    # on a loaded machine (a turn that ended first would come from the replay as one block).
    settings.CHAT_OFFLINE_DELAY_SECONDS = 0.1
    body = {
        "model": "agent",
        "stream": True,
        "stream_options": {"include_usage": True},
        "messages": [{"role": "user", "content": "Please explain in detail what you can do for me."}],
    }
    communicator, headers = await asgi_post(chat_user, body)
    raw = await read_body(communicator)

    assert headers[":status"] == 200, raw
    assert headers["content-type"] == "text/event-stream"
    events = [b.removeprefix("data: ") for b in raw.decode().split("\n\n") if b]
    assert events[-1] == "[DONE]"
    chunks = [json.loads(e) for e in events[:-1]]
    turn = await turn_row(headers["x-turn-id"])
    deltas = [
        c["choices"][0]["delta"]["content"] for c in chunks if c["choices"] and c["choices"][0]["delta"].get("content")
    ]
    assert len(deltas) > 1, "live deltas, not one block from the stored turn"
    assert "".join(deltas) == turn.text
    assert chunks[-1]["usage"] == turn.usage
    assert {c["system_fingerprint"] for c in chunks} == {turn.fingerprint}
    assert conversation_group_is_empty(turn)  # the request's channel left the conversation's group


async def test_a_streamed_completion_claimed_with_its_submission_reads_its_turn_neither_at_start_nor_end(
    chat_user, fresh_layer, monkeypatch
):
    """Its first chunk's id, model and fingerprint come from the turn as its submission stored it; its
    last chunk's usage and finish from the terminal frame."""
    from chat.gateway import selectors as gateway_selectors

    def no_read(**kwargs):
        raise AssertionError("the turn was read again")

    monkeypatch.setattr(gateway_selectors, "turn_identity", no_read)
    monkeypatch.setattr(gateway_selectors, "turn_result", no_read)
    body = {
        "model": "agent",
        "stream": True,
        "stream_options": {"include_usage": True},
        "messages": [{"role": "user", "content": "Hello there"}],
    }
    communicator, headers = await asgi_post(chat_user, body)
    raw = await read_body(communicator)

    chunks = [json.loads(b.removeprefix("data: ")) for b in raw.decode().split("\n\n") if b and "[DONE]" not in b]
    turn = await turn_row(headers["x-turn-id"])
    assert turn.status == "completed", raw
    assert chunks[0]["choices"][0]["delta"] == {"role": "assistant", "content": ""}
    assert {(c["id"], c["model"], c["system_fingerprint"]) for c in chunks} == {
        (f"chatcmpl-{turn.pk.hex}", "agent", turn.fingerprint)
    }
    text = "".join(c["choices"][0]["delta"].get("content", "") for c in chunks if c["choices"])
    assert (text, chunks[-1]["usage"]) == (turn.text, turn.usage)


async def test_waiting_completions_hold_no_thread_so_more_than_the_sync_threads_run_at_once(
    chat_user, fresh_layer, settings
):
    """A non-streamed completion waits for its turn on the event loop. A synchronous-only middleware
    would make Django run it, and everything below it, on one of the HTTP_SYNC_THREADS threads, which
    would wait too: at most that many completions would run at once (`config.static`)."""
    from config.asgi import http_app

    settings.CHAT_OFFLINE_DELAY_SECONDS = 0.05  # each turn streams for about a second
    count = len(http_app.executors) + 2
    body = {"model": "agent", "messages": [{"role": "user", "content": "Please explain in detail what you can do."}]}

    responses = await asyncio.gather(*(asgi_post(chat_user, body) for _ in range(count)))
    turns = [await turn_row(headers["x-turn-id"]) for _, headers in responses]
    for communicator, _ in responses:
        await read_body(communicator)

    assert [t.status for t in turns] == ["completed"] * count
    # Every turn had started before the first one finished: they all ran at once.
    assert max(t.started_at_ms for t in turns) < min(t.finished_at_ms for t in turns)


async def test_live_waiting_for_a_non_streaming_answer(chat_user, fresh_layer):
    body = {"model": "agent", "messages": [{"role": "user", "content": "What is 17.5% of 2,340?"}]}
    communicator, headers = await asgi_post(chat_user, body)
    answer = json.loads(await read_body(communicator))

    assert headers[":status"] == 200, answer
    turn = await turn_row(headers["x-turn-id"])
    assert turn.status == "completed"
    assert answer["choices"][0]["message"]["content"] == turn.text and "409.5" in turn.text
    assert answer["usage"] == turn.usage
    assert conversation_group_is_empty(turn)


async def test_a_client_that_leaves_mid_stream_leaves_the_group_and_the_turn_completes(chat_user, fresh_layer):
    import asyncio

    body = {"model": "agent", "stream": True, "messages": [{"role": "user", "content": "Tell me all you can do."}]}
    communicator, headers = await asgi_post(chat_user, body)
    first = await communicator.receive_output(timeout=20)
    assert first["body"].startswith(b"data: ")

    await communicator.send_input({"type": "http.disconnect"})
    await communicator.wait(timeout=5)  # the request ends
    turn = await turn_row(headers["x-turn-id"])
    assert conversation_group_is_empty(turn)
    for _ in range(200):  # the turn itself goes on without the client, and is stored
        turn = await turn_row(headers["x-turn-id"])
        if turn.status == "completed":
            break
        await asyncio.sleep(0.05)
    assert turn.status == "completed" and turn.text


def test_a_model_id_may_pin_a_version_or_follow_a_label(seeded_registries, db):
    """`agent@1` answers from version 1 after version 2 exists; `agent@nope` names no model."""
    from chat.gateway import services as gateway
    from chat.mounts import CHAT_MOUNT
    from profiles import services as profile_services

    profile_services.profile_update(registry_slug="default", slug="agent", changes={"description": "two"})
    registry, ref = gateway.model_ref("agent@1", CHAT_MOUNT)
    assert (registry, str(ref), ref.mode) == ("default", "agent@1", "pinned")
    assert gateway.model_get(mount=CHAT_MOUNT, model="agent@1", user=None).slug == "agent"
    with pytest.raises(gateway.ModelNotFound):
        gateway.model_get(mount=CHAT_MOUNT, model="agent@nope", user=None)


def test_a_profile_restricted_to_other_groups_is_neither_listed_nor_served(seeded_registries, db):
    """`visible_to_groups`: the gateway lists and answers only the profiles the caller may use (404 as
    for a missing model, nothing leaks)."""
    from django.contrib.auth.models import Group

    from chat.gateway import selectors as gateway_selectors
    from chat.gateway import services as gateway
    from chat.mounts import CHAT_MOUNT
    from profiles import services as profile_services

    Group.objects.create(name="support")
    profile_services.profile_update(registry_slug="default", slug="analyst", changes={"visible_to_groups": ["support"]})
    outsider = UserFactory(username="outsider")
    member = UserFactory(username="member")
    member.groups.add(Group.objects.get(name="support"))
    listed = {(row.registry, row.slug) for row in gateway_selectors.model_list(mount=CHAT_MOUNT, user=outsider)}
    assert ("default", "analyst") not in listed and ("default", "agent") in listed
    member_list = gateway_selectors.model_list(mount=CHAT_MOUNT, user=member)
    assert ("default", "analyst") in {(row.registry, row.slug) for row in member_list}
    with pytest.raises(gateway.ModelNotFound):
        gateway.model_get(mount=CHAT_MOUNT, model="analyst", user=outsider)
    assert gateway.model_get(mount=CHAT_MOUNT, model="analyst", user=member).slug == "analyst"


def test_a_body_naming_a_key_twice_is_a_400_and_stores_nothing(api):
    raw = '{"model": "default", "model": "agent", "messages": [{"role": "user", "content": "hi"}]}'
    response = api.generic("POST", "/v1/chat/completions", raw, content_type="application/json")
    assert response.status_code == 400
    assert "given twice" in response.json()["error"]["message"]
    assert not Conversation.objects.exists()


@pytest.mark.parametrize(
    "name",
    [
        "chat.gateway.serializers.ChatCompletionRequestSerializer",
        "chat.gateway.responses.ResponseRequestSerializer",
        "chat.serializers.MessageCreateSerializer",
    ],
)
def test_the_bodies_every_turn_validates_bind_their_fields_once(name):
    """Per request, DRF bound a copy of every field (~30% of a completion body's validation)."""
    import importlib

    module, _, cls = name.rpartition(".")
    body = getattr(importlib.import_module(module), cls)

    assert body(data={}).fields is body(data={}).fields
