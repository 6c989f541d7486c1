"""What the runtime costs: resolution in a fixed number of queries whatever the number of profiles and
registries, the turn row written before the first delta, and no rebuild for an unchanged profile."""

from __future__ import annotations

import uuid

import pytest
from channels.db import database_sync_to_async
from django.db import connection
from django.test.utils import CaptureQueriesContext

from chat import composition
from chat import selectors as chat_selectors
from chat.models import Conversation, Turn
from chat.mounts import CHAT_MOUNT  # registers the `chat` mount conversations resolve through
from profiles.selectors import profile_resolve
from profiles.services import profile_create, profile_select, registry_create

from .factories import ConversationFactory, UserFactory

db = database_sync_to_async


def queries(fn, **kwargs) -> tuple[int, object]:
    with CaptureQueriesContext(connection) as captured:
        result = fn(**kwargs)
    return len(captured.captured_queries), result


def grow(registry: str) -> None:
    """150 more profiles (130 in `registry`, one in each new registry) and 20 more registries."""
    for n in range(130):
        profile_create(registry_slug=registry, slug=f"extra-{n:03d}", runtime={"system_prompt": f"Extra {n}."})
    for n in range(20):
        registry_create(slug=f"more-{n:02d}")
        profile_create(registry_slug=f"more-{n:02d}", slug="only", runtime={"system_prompt": "Only."})


@pytest.fixture
def small_registry(db) -> str:
    """A registry with exactly 2 profiles: `first` (its default) and `second`."""
    registry_create(slug="costs")
    profile_create(registry_slug="costs", slug="first", runtime={"system_prompt": "You are the first."})
    profile_create(registry_slug="costs", slug="second", runtime={"system_prompt": "You are the second."})
    return "costs"


# --------------------------------------------------------------------------- (a) resolution costs


@pytest.mark.django_db
def test_profile_resolution_costs_the_same_few_queries_however_many_profiles_and_registries(small_registry):
    calls = {
        "named": {"registry_slug": small_registry, "profile_slug": "second"},
        "default": {"registry_slug": small_registry},
    }
    before = {name: queries(profile_resolve, **kwargs) for name, kwargs in calls.items()}
    assert before["named"][1].profile == "second"
    assert before["default"][1].profile == "first"

    grow(small_registry)
    after = {name: queries(profile_resolve, **kwargs) for name, kwargs in calls.items()}

    for name in calls:
        assert after[name][0] == before[name][0], name
        assert before[name][0] <= 2, name
        assert after[name][1].fingerprint == before[name][1].fingerprint, name
    assert before["named"][0] == 2  # the registry (with its default), then the named profile
    assert before["default"][0] == 1  # the registry and its default profile in one query


@pytest.mark.django_db
def test_conversation_resolution_costs_a_fixed_number_of_queries(small_registry, seeded_registries):
    owner, follower, newcomer = (UserFactory(username=name) for name in ("owner", "follower", "newcomer"))
    profile_select(user=follower, mount=CHAT_MOUNT.name, registry_slug=small_registry, slug="second")
    conversations = {
        "own selection": ConversationFactory(owner=owner, selected_registry=small_registry, selected_profile="second"),
        "own registry": ConversationFactory(owner=owner, selected_registry=small_registry),
        "user's selection": ConversationFactory(owner=follower),
        "registry default": ConversationFactory(owner=newcomer),
    }
    users = {"own selection": owner, "own registry": owner, "user's selection": follower, "registry default": newcomer}
    expected_profiles = {
        "own selection": ("costs", "second"),
        "own registry": ("costs", "first"),
        "user's selection": ("costs", "second"),
        "registry default": ("default", "default"),
    }

    def measure() -> dict[str, int]:
        counts = {}
        for name, conversation in conversations.items():
            counts[name], resolution = queries(
                chat_selectors.conversation_resolve, conversation=conversation, user=users[name]
            )
            assert (resolution.registry, resolution.profile) == expected_profiles[name], name
        return counts

    before = measure()
    grow(small_registry)
    after = measure()

    assert after == before
    assert before["own selection"] == 2  # profile_resolve only
    assert max(before.values()) <= 4


# --------------------------------------------------------------------------- (b) the turn row before the first delta


async def connect(open_ws, **query):
    communicator = await open_ws("/ws/chat/", **query)
    assert communicator.accepted
    hello = await communicator.receive_json_from(timeout=5)
    assert hello["type"] == "ws.hello", hello
    return communicator, hello


@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("seeded_registries")
async def test_the_turn_row_and_its_runtime_exist_before_the_first_delta(open_ws, settings):
    settings.CHAT_OFFLINE_DELAY_SECONDS = 0.15  # the turn is still streaming while we look
    settings.CHAT_DELTA_COALESCE_SECONDS = 0.001
    communicator, hello = await connect(open_ws, conv_id=uuid.uuid4(), profile="agent")

    await communicator.send_json_to({"type": "chat.send", "prompt": "hello there, how are you today?"})
    seen: list[str] = []
    while True:
        frame = await communicator.receive_json_from(timeout=5)
        seen.append(frame["type"])
        if frame["type"] == "llm.delta":
            break
        assert frame["type"] not in ("turn.completed", "turn.failed"), seen
    turn_id = frame["data"]["message_id"].split(":")[0]
    at_first_delta = await db(Turn.objects.get)(pk=turn_id)

    assert at_first_delta.status == "running"
    assert at_first_delta.registry == "default"
    assert at_first_delta.profile_slug == "agent"
    assert at_first_delta.runtime_key == "agent"
    assert at_first_delta.profile_version == 1
    assert at_first_delta.fingerprint == hello["data"]["fingerprint"]
    assert at_first_delta.engine == {"provider": "offline", "model": "offline-v1", "history_turns": 20}
    assert at_first_delta.middlewares == [{"name": "redact", "id": None}, {"name": "agent_mode", "id": None}]
    assert at_first_delta.tools == ["calculator", "current_time"]
    assert at_first_delta.finished_at_ms is None
    conversation = await db(Conversation.objects.get)(pk=hello["conv_id"])
    assert conversation.current_fingerprint == hello["data"]["fingerprint"]
    assert conversation.active_turn_id == at_first_delta.pk

    while frame["type"] not in ("turn.completed", "turn.failed"):
        frame = await communicator.receive_json_from(timeout=5)
    assert frame["type"] == "turn.completed"
    finished = await db(Turn.objects.get)(pk=turn_id)
    assert finished.status == "completed"
    assert finished.fingerprint == at_first_delta.fingerprint


# --------------------------------------------------------------------------- (c) no rebuild for an unchanged profile


@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("seeded_registries", "fast_turns")
async def test_an_unchanged_profile_is_built_once_across_three_turns(open_ws, frames_until):
    assert (composition.runtime_cache.builds, composition.runtime_cache.hits) == (0, 0)
    communicator, hello = await connect(open_ws, conv_id=uuid.uuid4(), profile="agent")
    assert (composition.runtime_cache.builds, composition.runtime_cache.hits) == (1, 0)

    fingerprints = []
    for n in range(1, 4):
        await communicator.send_json_to({"type": "chat.send", "prompt": f"message number {n}"})
        frames = await frames_until(communicator)
        kinds = [frame["type"] for frame in frames]
        assert kinds[-1] == "turn.completed", kinds
        assert "runtime.switched" not in kinds
        fingerprints += [f["data"]["fingerprint"] for f in frames if f["type"] == "turn.started"]
        assert (composition.runtime_cache.builds, composition.runtime_cache.hits) == (1, n)

    assert fingerprints == [hello["data"]["fingerprint"]] * 3
    assert len(composition.runtime_cache) == 1
