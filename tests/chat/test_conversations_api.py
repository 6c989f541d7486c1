"""Conversations over HTTP (`/api/chat/conversations`, both mounts) with DRF's APIClient.

There is no server event loop here, so a submitted turn runs inline to completion before the
response returns. The caller (`chat_user`) is an ordinary user without any model permission.
"""

from __future__ import annotations

import io
import uuid

import pytest
from asgiref.sync import async_to_sync
from django.core.management import call_command

from chat.models import Conversation, ConversationEvent, Turn
from chat.services import now_ms, turns_mark_interrupted
from chat.turns import dispatcher

from .factories import ConversationFactory, TurnFactory

# Transactional: the views reach the database through channels' `database_sync_to_async`, which
# closes a connection that sits inside a test's atomic block.
pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("seeded_registries", "fast_turns")]

MOUNTS = [
    pytest.param("/", "chat", "default", id="chat"),
    pytest.param("/inventory/", "inventory", "inventory", id="inventory"),
]


def create(api, prefix: str, **body) -> dict:
    response = api.post(f"{prefix}api/chat/conversations", body, format="json")
    assert response.status_code == 201, response.content
    return response.json()


def post_message(api, prefix: str, conv_id, *, wait: bool = True, **body):
    url = f"{prefix}api/chat/conversations/{conv_id}/messages" + ("?wait=1" if wait else "")
    return api.post(url, body, format="json")


def error_code(response) -> str:
    return response.json()["error"]["code"]


# --------------------------------------------------------------------------- create


@pytest.mark.parametrize(("prefix", "mount", "registry"), MOUNTS)
def test_create_returns_201_with_a_conv_id(chat_api, chat_user, prefix, mount, registry):
    body = create(chat_api, prefix)

    conversation = Conversation.objects.get(pk=body["conv_id"])
    assert conversation.owner == chat_user
    assert conversation.mount == mount
    assert body["mount"] == mount
    assert body["profile_selection"] is None
    assert body["turns"] == []
    assert isinstance(body["created_at_ms"], int)


@pytest.mark.parametrize(("prefix", "mount", "registry"), MOUNTS)
def test_create_with_a_profile_stores_it_as_the_conversations_selection(chat_api, prefix, mount, registry):
    body = create(chat_api, prefix, profile="analyst")

    assert body["profile_selection"] == {"registry": registry, "slug": "analyst", "ref": "analyst", "mode": "follow"}
    conversation = Conversation.objects.get(pk=body["conv_id"])
    assert (conversation.selected_registry, conversation.selected_profile) == (registry, "analyst")


@pytest.mark.parametrize(("prefix", "mount", "registry"), MOUNTS)
def test_create_with_an_unknown_profile_is_404(chat_api, prefix, mount, registry):
    response = chat_api.post(f"{prefix}api/chat/conversations", {"profile": "nope"}, format="json")

    assert response.status_code == 404
    assert error_code(response) == "not_found"
    assert not Conversation.objects.exists()


@pytest.mark.parametrize(("prefix", "mount", "registry"), MOUNTS)
def test_create_with_an_invalid_slug_is_400(chat_api, prefix, mount, registry):
    response = chat_api.post(f"{prefix}api/chat/conversations", {"profile": "bad slug!"}, format="json")

    assert response.status_code == 400
    assert error_code(response) == "invalid"
    assert not Conversation.objects.exists()


def test_create_needs_authentication(client):
    response = client.post("/api/chat/conversations", {}, content_type="application/json")

    assert response.status_code in (401, 403)
    assert not Conversation.objects.exists()


# --------------------------------------------------------------------------- list and retrieve


@pytest.mark.parametrize(("prefix", "mount", "registry"), MOUNTS)
def test_list_is_the_callers_conversations_newest_first_and_paginated(
    chat_api, chat_user, other_user, prefix, mount, registry
):
    now = now_ms()
    mine = [ConversationFactory(owner=chat_user, mount=mount, title=f"c{n}") for n in range(3)]
    for n, conversation in enumerate(mine):  # distinct creation times: c0 oldest, c2 newest
        Conversation.objects.filter(pk=conversation.pk).update(created_at_ms=now - (10 - n) * 60_000)
    ConversationFactory(owner=other_user, mount=mount, title="theirs")
    ConversationFactory(owner=chat_user, mount="inventory" if mount == "chat" else "chat", title="other mount")

    page_1 = chat_api.get(f"{prefix}api/chat/conversations?page_size=2")
    page_2 = chat_api.get(f"{prefix}api/chat/conversations?page_size=2&page=2")

    assert page_1.status_code == page_2.status_code == 200
    body_1, body_2 = page_1.json(), page_2.json()
    assert body_1["count"] == 3
    assert [c["title"] for c in body_1["results"]] == ["c2", "c1"]
    assert body_1["next"] is not None
    assert [c["title"] for c in body_2["results"]] == ["c0"]
    assert body_2["next"] is None
    assert body_1["results"][0]["conv_id"] == str(mine[2].pk)


@pytest.mark.parametrize(("prefix", "mount", "registry"), MOUNTS)
def test_retrieve_hydrates_the_turns_with_their_runtime(chat_api, prefix, mount, registry):
    conv_id = create(chat_api, prefix)["conv_id"]
    post_message(chat_api, prefix, conv_id, prompt="first")
    post_message(chat_api, prefix, conv_id, prompt="second")

    response = chat_api.get(f"{prefix}api/chat/conversations/{conv_id}")

    assert response.status_code == 200
    body = response.json()
    assert body["conv_id"] == conv_id
    assert body["mount"] == mount
    assert body["profile_selection"] is None
    assert body["current_runtime_key"] == registry  # both registries' default profile is named like them
    assert body["current_fingerprint"].startswith("sha256:")
    assert isinstance(body["created_at_ms"], int)
    turns = body["turns"]
    assert [(t["seq"], t["prompt"], t["status"]) for t in turns] == [
        (1, "first", "completed"),
        (2, "second", "completed"),
    ]
    for item in turns:
        assert uuid.UUID(item["turn_id"])
        assert item["text"].startswith("(offline")
        assert item["runtime_key"] == registry
        assert item["registry"] == registry
        assert item["profile_version"] == 1
        assert item["fingerprint"] == body["current_fingerprint"]
        assert item["engine"] == {"provider": "offline", "model": "offline-v1", "history_turns": 20}
        assert item["tool_calls"] == [] and item["artifacts"] == []
        assert item["usage"]["total_tokens"] > 0
        assert item["error"] is None
        assert item["started_at_ms"] <= item["finished_at_ms"]


def test_another_users_conversation_is_403_on_every_route(chat_api, other_user):
    foreign = ConversationFactory(owner=other_user)
    base = f"/api/chat/conversations/{foreign.pk}"

    responses = [
        chat_api.get(base),
        chat_api.patch(base, {"title": "mine now"}, format="json"),
        chat_api.post(f"{base}/messages", {"prompt": "hi"}, format="json"),
        chat_api.get(f"{base}/events"),
    ]

    assert [r.status_code for r in responses] == [403, 403, 403, 403]
    assert {error_code(r) for r in responses} == {"permission_denied"}
    assert not Turn.objects.exists()
    foreign.refresh_from_db()
    assert foreign.title == ""


def test_conversation_of_the_other_mount_is_not_found(chat_api):
    conv_id = create(chat_api, "/inventory/")["conv_id"]

    assert chat_api.get(f"/api/chat/conversations/{conv_id}").status_code == 404
    assert chat_api.get(f"/api/chat/conversations/{uuid.uuid4()}").status_code == 404


# --------------------------------------------------------------------------- messages


@pytest.mark.usefixtures("seeded_inventory")
@pytest.mark.parametrize(
    ("prefix", "profile", "prompt", "tool"),
    [
        pytest.param("/", "agent", "what is 17.5% of 2,340?", "calculator", id="chat"),
        pytest.param(
            "/inventory/", "inventory", "which items are low on stock?", "inventory_low_stock", id="inventory"
        ),
    ],
)
def test_post_message_with_wait_returns_the_finished_turn(chat_api, prefix, profile, prompt, tool):
    conv_id = create(chat_api, prefix, profile=profile)["conv_id"]

    response = post_message(chat_api, prefix, conv_id, prompt=prompt)

    assert response.status_code == 200, response.content
    body = response.json()
    assert body["status"] == "completed"
    assert body["prompt"] == prompt
    assert body["runtime_key"] == profile
    assert body["fingerprint"].startswith("sha256:")
    assert body["engine"] == {"provider": "offline", "model": "offline-v1", "history_turns": 20}
    assert [call["name"] for call in body["tool_calls"]] == [tool]
    assert "error" not in body["tool_calls"][0]
    assert body["text"]
    turn = Turn.objects.get(pk=body["turn_id"])
    assert (turn.status, turn.text, turn.fingerprint) == ("completed", body["text"], body["fingerprint"])
    if tool == "calculator":
        assert "409.5" in body["text"]
    else:
        assert [a["kind"] for a in body["artifacts"]] == ["table"]


@pytest.mark.parametrize(("prefix", "mount", "registry"), MOUNTS)
def test_post_message_without_wait_is_202_with_the_turn_id_and_status(chat_api, prefix, mount, registry):
    conv_id = create(chat_api, prefix)["conv_id"]

    response = post_message(chat_api, prefix, conv_id, wait=False, prompt="hello")

    assert response.status_code == 202
    body = response.json()
    turn = Turn.objects.get(pk=body["turn_id"])
    assert body["status"] == turn.status
    assert body["status"] in {choice.value for choice in Turn.Status}
    assert turn.prompt == "hello"


def test_same_idempotency_key_twice_gives_the_same_turn(chat_api):
    conv_id = create(chat_api, "/")["conv_id"]

    first = post_message(chat_api, "/", conv_id, wait=False, prompt="hello", idempotency_key="abc")
    second = post_message(chat_api, "/", conv_id, wait=False, prompt="hello", idempotency_key="abc")
    waited = post_message(chat_api, "/", conv_id, prompt="hello", idempotency_key="abc")

    assert first.status_code == second.status_code == 202
    assert first.json()["turn_id"] == second.json()["turn_id"] == waited.json()["turn_id"]
    assert Turn.objects.filter(conversation_id=conv_id).count() == 1
    assert ConversationEvent.objects.filter(conversation_id=conv_id, type="chat.message").count() == 1


def test_policy_violation_is_403_and_stores_no_turn(chat_api):
    conv_id = create(chat_api, "/")["conv_id"]

    response = post_message(chat_api, "/", conv_id, prompt="hi", request_overrides={"system_prompt": "Be rude."})

    assert response.status_code == 403
    assert error_code(response) == "policy_violation"
    assert not Turn.objects.exists()
    assert not ConversationEvent.objects.exists()


def test_allowed_override_is_applied(chat_api):
    conv_id = create(chat_api, "/", profile="analyst")["conv_id"]

    response = post_message(
        chat_api, "/", conv_id, prompt="hi", request_overrides={"systemPrompt": "You are a pirate."}
    )

    assert response.status_code == 200
    body = response.json()
    assert body["overrides_applied"] == {"system_prompt": "You are a pirate."}
    assert body["text"].startswith("(offline · pirate)")


@pytest.mark.parametrize("body", [{}, {"prompt": ""}, {"prompt": "   "}, {"prompt": None}])
def test_empty_prompt_is_400(chat_api, body):
    conv_id = create(chat_api, "/")["conv_id"]

    response = post_message(chat_api, "/", conv_id, **body)

    assert response.status_code == 400
    assert not Turn.objects.exists()


# --------------------------------------------------------------------------- events and rename


def events(chat_api, conv_id, **params) -> dict:
    response = chat_api.get(f"/api/chat/conversations/{conv_id}/events", params)
    assert response.status_code == 200, response.content
    return response.json()


def test_events_since_seq_returns_the_stored_frames_after_n_in_order(chat_api):
    conv_id = create(chat_api, "/")["conv_id"]
    post_message(chat_api, "/", conv_id, prompt="hello")

    page = events(chat_api, conv_id, since_seq=0)
    everything = page["frames"]
    kinds = [f["type"] for f in everything]
    seqs = [f["seq"] for f in everything]
    started = next(f["seq"] for f in everything if f["type"] == "turn.started")
    after = events(chat_api, conv_id, since_seq=started)

    # deltas are sent, never stored: the message's text is in its llm.final
    assert kinds == ["chat.message", "turn.started", "llm.start", "llm.final", "turn.completed"]
    assert seqs == sorted(seqs) and len(set(seqs)) == len(seqs)
    assert (page["more"], page["next_since_seq"]) == (False, seqs[-1])
    assert after["frames"] == [f for f in everything if f["seq"] > started]
    assert all(set(f) == {"type", "id", "seq", "conv_id", "ts_ms", "data"} for f in everything)
    assert events(chat_api, conv_id, since_seq=seqs[-1]) == {"frames": [], "next_since_seq": seqs[-1], "more": False}


def test_events_page_with_a_cursor_and_say_when_more_remains(chat_api):
    conv_id = create(chat_api, "/")["conv_id"]
    for prompt in ("one", "two", "three"):
        post_message(chat_api, "/", conv_id, prompt=prompt)
    everything = events(chat_api, conv_id, since_seq=0, limit=1000)["frames"]

    pages, since = [], 0
    while True:
        page = events(chat_api, conv_id, since_seq=since, limit=4)
        pages.append(page)
        since = page["next_since_seq"]
        if not page["more"]:
            break

    assert len(everything) == 15
    assert [len(p["frames"]) for p in pages] == [4, 4, 4, 3]
    assert [f for p in pages for f in p["frames"]] == everything  # no duplicate, no gap
    assert chat_api.get(f"/api/chat/conversations/{conv_id}/events?limit=1001").status_code == 400


def test_events_since_seq_must_be_a_non_negative_integer(chat_api):
    conv_id = create(chat_api, "/")["conv_id"]

    assert chat_api.get(f"/api/chat/conversations/{conv_id}/events?since_seq=-1").status_code == 400
    assert chat_api.get(f"/api/chat/conversations/{conv_id}/events?since_seq=x").status_code == 400


@pytest.mark.parametrize(("prefix", "mount", "registry"), MOUNTS)
def test_rename_with_patch_title(chat_api, prefix, mount, registry):
    conv_id = create(chat_api, prefix)["conv_id"]

    response = chat_api.patch(f"{prefix}api/chat/conversations/{conv_id}", {"title": "  Budget  "}, format="json")
    too_long = chat_api.patch(f"{prefix}api/chat/conversations/{conv_id}", {"title": "x" * 201}, format="json")

    assert response.status_code == 200
    assert response.json()["title"] == "Budget"
    assert too_long.status_code == 400
    assert chat_api.get(f"{prefix}api/chat/conversations/{conv_id}").json()["title"] == "Budget"


# --------------------------------------------------------------------------- recovery


def running_turn(owner, **fields):
    conversation = ConversationFactory(owner=owner)
    stamp = now_ms()
    fields.setdefault("worker", "host-a:1:abc")
    turn = TurnFactory(
        conversation=conversation,
        seq=1,
        prompt="interrupted one",
        status=Turn.Status.RUNNING,
        started_at_ms=stamp,
        lease_until_ms=stamp + 60_000,
        **fields,
    )
    Conversation.objects.filter(pk=conversation.pk).update(active_turn=turn)
    return conversation, turn


def test_chat_recover_marks_running_turns_interrupted_and_frees_the_conversation(chat_api, chat_user):
    conversation, turn = running_turn(chat_user)
    out = io.StringIO()

    call_command("chat_recover", stdout=out)

    turn.refresh_from_db()
    conversation.refresh_from_db()
    assert turn.status == "interrupted"
    assert turn.error["code"] == "interrupted"
    assert turn.finished_at_ms is not None
    assert conversation.active_turn_id is None
    assert "1" in out.getvalue()
    # Its end is in the conversation's frames: a client catching up by seq sees it ended.
    ended = ConversationEvent.objects.get(conversation=conversation, turn_id=turn.pk, type="turn.failed")
    assert ended.frame["data"]["status"] == "interrupted"
    assert ended.frame["data"]["error"]["code"] == "interrupted"

    response = post_message(chat_api, "/", conversation.pk, prompt="are you back?")

    assert response.status_code == 200
    assert response.json()["status"] == "completed"
    assert response.json()["seq"] == 2


def test_a_queued_turn_behind_an_interrupted_one_runs_next(chat_api, chat_user):
    conversation, turn = running_turn(chat_user)
    queued = TurnFactory(conversation=conversation, seq=2, prompt="waiting")

    assert len(turns_mark_interrupted(turn_ids=[turn.pk])) == 1
    response = post_message(chat_api, "/", conversation.pk, prompt="third")

    assert response.json()["status"] == "completed"
    queued.refresh_from_db()
    assert queued.status == "completed"
    statuses = list(Turn.objects.filter(conversation=conversation).order_by("seq").values_list("status", flat=True))
    assert statuses == ["interrupted", "completed", "completed"]


def test_turns_mark_interrupted_only_touches_the_matching_worker(chat_user, other_user):
    _, mine = running_turn(chat_user)
    _, theirs = running_turn(other_user, worker="host-b:2:def")

    assert len(turns_mark_interrupted(worker_prefix="host-a:")) == 1

    mine.refresh_from_db()
    theirs.refresh_from_db()
    assert (mine.status, theirs.status) == ("interrupted", "running")


def test_a_turn_whose_lease_expired_is_released_by_the_sweep(chat_api, chat_user):
    conversation, turn = running_turn(chat_user)
    Turn.objects.filter(pk=turn.pk).update(lease_until_ms=now_ms() - 1)

    async_to_sync(dispatcher.sweep)()
    response = post_message(chat_api, "/", conversation.pk, prompt="hello?")

    assert response.json()["status"] == "completed"
    turn.refresh_from_db()
    assert turn.status == "interrupted"


def test_rest_messages_are_throttled_per_user(chat_api, chat_user, seeded_registries, fast_turns, monkeypatch):
    from django.core.cache import cache
    from rest_framework.throttling import ScopedRateThrottle

    monkeypatch.setattr(ScopedRateThrottle, "THROTTLE_RATES", {"turns": "2/min"})
    conv_ids = [chat_api.post("/api/chat/conversations", {}, format="json").json()["conv_id"] for _ in range(3)]
    statuses = [
        chat_api.post(f"/api/chat/conversations/{conv_id}/messages", {"prompt": "hi"}, format="json").status_code
        for conv_id in conv_ids  # a new conversation per message: the limit is the user's, not the queue's
    ]
    assert statuses == [202, 202, 429]
    assert Turn.objects.count() == 2
    assert sum(cache.get(f"throttle_turns_{chat_user.pk}").values()) == 2  # counts per slice (profiles.api.throttling)


def test_wait_that_ends_before_the_turn_answers_202_with_the_turn_and_retry_after(chat_api, chat_user, settings):
    settings.CHAT_ENGINE_TIMEOUT_SECONDS = 0.1  # the wait is twice the engine timeout
    conversation, _ = running_turn(chat_user)  # another turn holds the conversation (its lease is live)

    response = post_message(chat_api, "/", conversation.pk, prompt="behind it")

    assert response.status_code == 202
    assert response.headers["Retry-After"] == "1"
    assert (response.json()["status"], response.json()["prompt"]) == ("queued", "behind it")


@pytest.mark.parametrize(
    ("path", "body", "field"),
    [
        ("conversations", {"profil": "agent"}, "profil"),
        ("conversations/{conv}/messages", {"prompt": "hi", "quantity": 1}, "quantity"),
        ("conversations/{conv}", {"title": "x", "name": "y"}, "name"),
    ],
)
def test_unknown_body_keys_are_a_400_naming_the_key(chat_api, path, body, field):
    conv_id = create(chat_api, "/")["conv_id"]
    url = "/api/chat/" + path.format(conv=conv_id)
    send = chat_api.patch if path == "conversations/{conv}" else chat_api.post

    response = send(url, body, format="json")

    assert response.status_code == 400, response.content
    assert response.json()["error"]["field"] == field
    assert Turn.objects.count() == 0


def test_a_full_queue_is_a_429_with_retry_after(chat_api, chat_user, settings):
    settings.CHAT_MAX_QUEUED_TURNS = 1
    conversation, _ = running_turn(chat_user)
    TurnFactory(conversation=conversation, seq=2, prompt="waiting")

    response = post_message(chat_api, "/", conversation.pk, wait=False, prompt="one too many")

    assert response.status_code == 429
    assert response.json()["error"]["code"] == "queue_full"
    assert response.headers["Retry-After"] == "5"
