"""Rollouts served (#19 point 2): whoever follows `agent@production` gets an arm by a stable hash of
(rollout, user) or (rollout, conversation); a conversation keeps its arm; pinned refs never enter; the arm
is in `ws.hello`, the resolve result and every turn record; per-arm stats count the rollout's turns; the
guard halts a failing or disliked arm when a turn finishes or is rated, and the next turn switches back
(`runtime.switched` reason `rollout_halted`). Real turns: the offline engine, and a local OpenAI-compatible
server that fails for the failing arm."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import uuid
from collections import Counter
from collections.abc import Iterator

import httpx2
import pytest
from channels.db import database_sync_to_async
from rest_framework.test import APIClient

from chat.models import Conversation, ConversationEvent, Turn
from chat.selectors import conversation_resolve
from chat.webhook_sender import deliver_due
from profiles import services, webhooks
from profiles.models import AuditEvent, LabelRollout, ProfileLabelMove
from tests.helpers import WebhookReceiver

from .factories import UserFactory
from .fake_openai import FakeOpenAIServer

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("seeded_registries", "fast_turns")]


@pytest.fixture
def releaser(db):
    return UserFactory(username="releaser", is_superuser=True, is_staff=True)


@pytest.fixture
def two_versions(db, seeded_registries) -> None:
    """`agent` has versions 1 and 2 (different content, so different fingerprints); production is on 1."""
    services.profile_update(registry_slug="default", slug="agent", changes={"description": "v2"}, source="import")
    services.label_set(registry_slug="default", slug="agent", name="production", version=1, source="import")


def start(releaser, *arms: tuple[int, int], sticky: str = "conversation", guard: dict | None = None) -> LabelRollout:
    body = {"arms": [{"version": v, "weight": w} for v, w in arms], "sticky": sticky}
    if guard:
        body["guard"] = guard
    return services.rollout_set(registry_slug="default", slug="agent", name="production", body=body, actor=releaser)


def following(owner, *, ref: str = "agent@production") -> Conversation:
    """A new conversation selecting `ref` (unsaved: resolution reads nothing of it)."""
    slug, _, at = ref.partition("@")
    return Conversation(
        id=uuid.uuid4(), owner=owner, mount="chat", selected_registry="default", selected_profile=slug, selected_at=at
    )


def api_for(user) -> APIClient:
    client = APIClient()
    client.force_authenticate(user)
    return client


def open_conversation(api, profile: str = "agent@production") -> str:
    response = api.post("/api/chat/conversations", {"profile": profile}, format="json")
    assert response.status_code == 201, response.content
    return response.json()["conv_id"]


def say(api, conv_id: str) -> Turn:
    response = api.post(f"/api/chat/conversations/{conv_id}/messages?wait=1", {"prompt": "hello"}, format="json")
    assert response.status_code == 200, response.content
    return Turn.objects.get(pk=response.json()["turn_id"])


def switches(conv_id: str) -> list[dict]:
    frames = ConversationEvent.objects.filter(conversation_id=conv_id, type="runtime.switched").order_by("seq")
    return [event.frame["data"] for event in frames]


# --------------------------------------------------------------------------- the split


def test_200_conversations_at_50_50_land_within_35_to_65_percent(two_versions, releaser, chat_user):
    rollout = start(releaser, (1, 50), (2, 50))

    served = [conversation_resolve(conversation=following(chat_user), user=chat_user) for _ in range(200)]

    counts = Counter(r.profile_version for r in served)
    assert 70 <= counts[2] <= 130, counts
    assert counts[1] + counts[2] == 200
    assert {(r.rollout["id"], r.rollout["label"], r.rollout["weight"]) for r in served} == {
        (rollout.pk, "production", 50)
    }
    assert all(r.rollout["version"] == r.profile_version for r in served)


def test_a_90_10_split_gives_the_small_arm_a_small_share(two_versions, releaser, chat_user):
    start(releaser, (1, 90), (2, 10))

    versions = Counter(
        conversation_resolve(conversation=following(chat_user), user=chat_user).profile_version for _ in range(300)
    )

    assert 10 <= versions[2] <= 55, versions  # 30 expected


def test_sticky_user_gives_every_conversation_of_a_user_the_same_arm(two_versions, releaser):
    start(releaser, (1, 50), (2, 50), sticky="user")
    users = [UserFactory(username=f"user{n}") for n in range(30)]

    arms = {
        user.pk: {conversation_resolve(conversation=following(user), user=user).profile_version for _ in range(4)}
        for user in users
    }

    assert all(len(versions) == 1 for versions in arms.values()), arms
    assert {v for versions in arms.values() for v in versions} == {1, 2}  # and users are split


def test_pinned_refs_and_rollout_less_labels_never_enter_a_rollout(two_versions, releaser, chat_user):
    start(releaser, (1, 0), (2, 100))

    pinned = conversation_resolve(conversation=following(chat_user, ref="agent@1"), user=chat_user)
    latest = conversation_resolve(conversation=following(chat_user, ref="agent@latest"), user=chat_user)
    followed = conversation_resolve(conversation=following(chat_user), user=chat_user)

    assert (pinned.profile_version, pinned.rollout) == (1, None)
    assert (latest.profile_version, latest.rollout) == (2, None)
    assert followed.profile_version == 2 and followed.rollout["weight"] == 100


# --------------------------------------------------------------------------- where the arm is said


def test_the_arm_is_in_the_turn_record_and_the_resolve_result(two_versions, releaser, chat_api):
    rollout = start(releaser, (1, 0), (2, 100))
    arm = {"id": rollout.pk, "label": "production", "version": 2, "weight": 100}

    resolved = chat_api.post("/api/chat/profiles/agent@production/resolve", {}, format="json")
    assert resolved.status_code == 200, resolved.content
    assert resolved.json()["rollout"] == arm and resolved.json()["profile_version"] == 2

    conv_id = open_conversation(chat_api)
    turn = say(chat_api, conv_id)
    assert (turn.rollout, turn.rollout_id, turn.profile_version) == (arm, rollout.pk, 2)
    shown = chat_api.get(f"/api/chat/conversations/{conv_id}").json()["turns"][0]
    assert shown["rollout"] == arm


async def test_the_socket_hello_names_the_arm(two_versions, releaser, connected, frames_until):
    rollout = await database_sync_to_async(start)(releaser, (1, 0), (2, 100))

    communicator, hello = await connected(conv_id=uuid.uuid4(), profile="agent@production")
    await communicator.send_json_to({"type": "chat.send", "prompt": "hello"})
    frames = await frames_until(communicator)

    assert hello["data"]["rollout"] == {"id": rollout.pk, "label": "production", "version": 2, "weight": 100}
    assert hello["data"]["profile"]["version"] == 2
    assert frames[-1]["type"] == "turn.completed"
    _pinned, pinned_hello = await connected(conv_id=uuid.uuid4(), profile="agent@1")
    assert pinned_hello["data"]["rollout"] is None


# --------------------------------------------------------------------------- stickiness over turns


def conversations_on_each_arm(api, limit: int = 40) -> dict[int, str]:
    """A conversation (REST, one real turn each) on each arm of a 50/50 sticky-conversation rollout."""
    found: dict[int, str] = {}
    for _ in range(limit):
        conv_id = open_conversation(api)
        found.setdefault(say(api, conv_id).profile_version, conv_id)
        if len(found) == 2:
            return found
    raise AssertionError(f"40 conversations all landed on one arm: {found}")


def test_a_conversation_keeps_its_arm_when_the_weights_change(two_versions, releaser, chat_api):
    rollout = start(releaser, (1, 50), (2, 50))
    on = conversations_on_each_arm(chat_api)

    start(releaser, (1, 99), (2, 1))  # changed in place: same rollout

    later = {version: say(chat_api, conv_id) for version, conv_id in on.items()}
    assert {v: t.profile_version for v, t in later.items()} == {1: 1, 2: 2}
    assert later[2].rollout == {"id": rollout.pk, "label": "production", "version": 2, "weight": 1}
    assert switches(on[2]) == []


def test_an_arm_drained_to_zero_moves_its_conversations_with_reason_rollout_changed(two_versions, releaser, chat_api):
    start(releaser, (1, 50), (2, 50))
    on = conversations_on_each_arm(chat_api)

    start(releaser, (1, 100), (2, 0))

    assert say(chat_api, on[2]).profile_version == 1
    assert [s["reason"] for s in switches(on[2])] == ["rollout_changed"]


def test_ending_the_rollout_serves_the_labels_own_version_with_reason_rollout_ended(two_versions, releaser, chat_api):
    start(releaser, (1, 0), (2, 100))
    conv_id = open_conversation(chat_api)
    assert say(chat_api, conv_id).profile_version == 2

    services.rollout_end(registry_slug="default", slug="agent", name="production", actor=releaser)

    turn = say(chat_api, conv_id)
    assert (turn.profile_version, turn.rollout, turn.rollout_id) == (1, None, None)
    assert [(s["reason"], s["from"]["profile_version"], s["to"]["profile_version"]) for s in switches(conv_id)] == [
        ("rollout_ended", 2, 1)
    ]
    assert Conversation.objects.values_list("rollout_id", flat=True).get(pk=conv_id) is None


# --------------------------------------------------------------------------- per-arm stats


def test_arm_stats_count_the_rollouts_turns_and_thumbs_only(two_versions, releaser, chat_api):
    before = open_conversation(chat_api)
    say(chat_api, before)  # on version 1, before the rollout: not the rollout's
    rollout = start(releaser, (1, 0), (2, 100))
    conv_id = open_conversation(chat_api)
    first, second = say(chat_api, conv_id), say(chat_api, conv_id)
    rated = chat_api.put(
        f"/api/chat/conversations/{conv_id}/turns/{first.pk}/feedback", {"rating": "down"}, format="json"
    )
    assert rated.status_code == 200, rated.content

    body = chat_api.get("/api/chat/profiles/agent/labels/production/rollout").json()

    assert body["id"] == rollout.pk and body["status"] == "active"
    stats = {arm["version"]: arm["stats"] for arm in body["arms"]}
    assert (stats[1]["turns"], stats[2]["turns"], stats[2]["completed"]) == (0, 2, 2)
    assert (stats[2]["thumbs_down"], stats[2]["thumbs_up"]) == (1, 0)
    assert stats[2]["latency_ms_p95"] is not None
    assert second.rollout_id == rollout.pk


# --------------------------------------------------------------------------- the guard


@pytest.fixture
def failing_v2(db, seeded_registries) -> Iterator[FakeOpenAIServer]:
    """`agent` version 2 answers through an OpenAI-compatible server that has nothing scripted: every
    request is a 500, so every turn on version 2 fails. Production stays on version 1 (offline)."""
    with FakeOpenAIServer() as server:
        services.profile_update(
            registry_slug="default",
            slug="agent",
            changes={
                "runtime": {
                    "system_prompt": "You are a remote assistant.",
                    "step_settings_patch": {
                        "ai-chat": {"ai-api-type": "openai", "ai-engine": "fake-model"},
                        "openai-chat": {"openai-base-url": server.base_url},
                    },
                }
            },
            source="import",
        )
        services.label_set(registry_slug="default", slug="agent", name="production", version=1, source="import")
        yield server


def test_the_guard_halts_a_failing_arm_and_the_next_turn_switches_back(failing_v2, releaser, chat_api):
    rollout = start(releaser, (1, 0), (2, 100), guard={"max_failure_rate": 0.5, "min_turns": 2})
    conv_id = open_conversation(chat_api)

    first = say(chat_api, conv_id)
    assert (first.status, first.profile_version) == ("failed", 2)
    rollout.refresh_from_db()
    assert rollout.status == "active"  # one turn: not judged yet (min_turns 2)

    second = say(chat_api, conv_id)
    assert second.status == "failed"
    rollout.refresh_from_db()
    assert rollout.status == "halted"
    assert "arm version 2" in rollout.halted_reason and "failure rate 1.00 > 0.5" in rollout.halted_reason

    third = say(chat_api, conv_id)
    assert (third.status, third.profile_version, third.rollout) == ("completed", 1, None)
    assert [s["reason"] for s in switches(conv_id)] == ["rollout_halted"]
    body = chat_api.get("/api/chat/profiles/agent/labels/production/rollout").json()
    assert (body["status"], body["halted_reason"]) == ("halted", rollout.halted_reason)
    step = ProfileLabelMove.objects.filter(name="production", rollout__isnull=False).order_by("-id").first()
    assert step.rollout["event"] == "halted" and step.by == "guard"
    assert AuditEvent.objects.filter(action="rollout.halted", actor_type="system").count() == 1


def test_a_halt_reaches_a_subscribed_receiver_signed(two_versions, releaser, chat_api, settings):
    settings.WEBHOOK_ALLOWED_HOSTS = ["127.0.0.1"]
    with WebhookReceiver() as receiver:
        hook = webhooks.webhook_create(
            registry_slug="default", url=receiver.url, events=["rollout.halted"], actor=releaser
        )
        rollout = start(releaser, (1, 0), (2, 100), guard={"max_thumbs_down_rate": 0.1, "min_turns": 1})
        conv_id = open_conversation(chat_api)
        turn = say(chat_api, conv_id)
        url = f"/api/chat/conversations/{conv_id}/turns/{turn.pk}/feedback"
        assert chat_api.put(url, {"rating": "down"}, format="json").status_code == 200

        assert asyncio.run(send_due()) == 1

    (headers, raw), *others = receiver.received
    assert others == []
    body = json.loads(raw)
    assert headers["x-webhook-event"] == "rollout.halted"
    assert headers["x-webhook-signature"] == "sha256=" + hmac.new(hook.secret.encode(), raw, hashlib.sha256).hexdigest()
    assert (body["profile"], body["label"], body["version"], body["actor"]) == ("agent", "production", 1, "system")
    assert body["rollout"]["id"] == rollout.pk and body["rollout"]["status"] == "halted"
    assert "arm version 2" in body["rollout"]["halted_reason"]


async def send_due() -> int:
    async with httpx2.AsyncClient(timeout=5) as client:
        return await deliver_due(client)


def test_thumbs_down_halt_the_rollout_when_the_rating_arrives(two_versions, releaser, chat_api):
    rollout = start(releaser, (1, 0), (2, 100), guard={"max_thumbs_down_rate": 0.5, "min_turns": 2})
    conv_id = open_conversation(chat_api)
    turns = [say(chat_api, conv_id), say(chat_api, conv_id)]

    def rate(turn: Turn) -> None:
        url = f"/api/chat/conversations/{conv_id}/turns/{turn.pk}/feedback"
        assert chat_api.put(url, {"rating": "down"}, format="json").status_code == 200

    rate(turns[0])
    rollout.refresh_from_db()
    assert rollout.status == "active"  # 1 of 2 rated down: 0.5 is not past 0.5
    rate(turns[1])
    rollout.refresh_from_db()
    assert rollout.status == "halted" and "thumbs-down rate 1.00 > 0.5" in rollout.halted_reason
    assert say(chat_api, conv_id).profile_version == 1


def test_a_halted_rollout_replaced_by_a_new_one_serves_again(two_versions, releaser, chat_api):
    halted = start(releaser, (1, 0), (2, 100), guard={"max_thumbs_down_rate": 0.1, "min_turns": 1})
    conv_id = open_conversation(chat_api)
    turn = say(chat_api, conv_id)
    chat_api.put(f"/api/chat/conversations/{conv_id}/turns/{turn.pk}/feedback", {"rating": "down"}, format="json")
    halted.refresh_from_db()
    assert halted.status == "halted"

    fresh = start(releaser, (1, 0), (2, 100))

    assert fresh.pk != halted.pk
    halted.refresh_from_db()
    assert halted.status == "ended"
    assert say(chat_api, conv_id).rollout["id"] == fresh.pk


# --------------------------------------------------------------------------- the OpenAI-compatible model


@pytest.mark.filterwarnings("ignore:StreamingHttpResponse must consume asynchronous iterators")
def test_a_completion_for_a_label_is_served_by_the_users_arm(two_versions, releaser, chat_user, chat_token):
    rollout = start(releaser, (1, 50), (2, 50), sticky="user")
    api = APIClient()
    api.credentials(HTTP_AUTHORIZATION=f"Bearer {chat_token}")

    answers = [
        api.post(
            "/v1/chat/completions",
            {"model": "agent@production", "messages": [{"role": "user", "content": "hello"}]},
            format="json",
        )
        for _ in range(4)
    ]

    assert [a.status_code for a in answers] == [200] * 4, answers[0].content
    turns = list(Turn.objects.filter(conversation__owner=chat_user))
    assert len(turns) == 4 and {t.rollout_id for t in turns} == {rollout.pk}
    assert len({t.profile_version for t in turns}) == 1  # one user: one arm
    expected = conversation_resolve(conversation=following(chat_user), user=chat_user).profile_version
    assert turns[0].profile_version == expected
