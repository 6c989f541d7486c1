"""Per-version metrics of a profile, computed from its turn rows (`GET .../profiles/{slug}/stats` and
`.../versions/{n}/stats`): figures against hand-counted turns, and a constant number of queries."""

from __future__ import annotations

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from chat.models import Turn
from profiles import services

from .factories import ConversationFactory, TurnFactory, turns_counted

pytestmark = pytest.mark.django_db

BASE = 1_800_000_000_000


@pytest.fixture
def agent_v2(seeded_registries) -> None:
    services.profile_update(registry_slug="default", slug="agent", changes={"description": "two"})


def add_turns(conversation, version: int, rows: list[tuple[str, int | None, int, int]], start: int = 0) -> None:
    """rows: (status, duration ms or None, prompt tokens, completion tokens), created one second apart."""
    turns = []
    for n, (status, duration, tokens_in, tokens_out) in enumerate(rows):
        created = BASE + (start + n) * 1000
        turns.append(
            TurnFactory.build(
                conversation=conversation,
                seq=start + n + 1,
                status=status,
                registry="default",
                profile_slug="agent",
                profile_version=version,
                created_at_ms=created,
                started_at_ms=created + 5 if duration is not None else None,
                finished_at_ms=created + 5 + duration if duration is not None else None,
                usage={
                    "prompt_tokens": tokens_in,
                    "completion_tokens": tokens_out,
                    "total_tokens": tokens_in + tokens_out,
                },
            )
        )
    Turn.objects.bulk_create(turns)
    turns_counted(conversation)


def test_stats_per_version_match_the_hand_counted_turns(agent_v2, chat_api, chat_user):
    conversation = ConversationFactory(owner=chat_user)
    add_turns(
        conversation,
        1,
        [
            ("completed", 100, 10, 20),
            ("completed", 300, 1, 2),
            ("failed", 50, 5, 0),
            ("cancelled", None, 0, 0),
            ("completed", 200, 4, 6),
        ],
    )
    add_turns(conversation, 2, [("completed", 40, 3, 3), ("interrupted", 900, 2, 0)], start=5)
    # Another profile's turn is not counted.
    TurnFactory(
        conversation=conversation,
        seq=99,
        status="completed",
        registry="default",
        profile_slug="analyst",
        profile_version=1,
    )

    rows = chat_api.get("/api/chat/profiles/agent/stats?registry=default").json()
    assert rows == [
        {
            "version": 1,
            "turns": 5,
            "completed": 3,
            "failed": 1,
            "cancelled": 1,
            "interrupted": 0,
            "latency_ms_p50": 200,  # completed: 100, 200, 300
            "latency_ms_p95": 300,
            "tokens_in": 20,
            "tokens_out": 28,
            "cost_usd": 0.0,  # these rows carry no cost
            "thumbs_up": 0,
            "thumbs_down": 0,
            "first_turn_at_ms": BASE,
            "last_turn_at_ms": BASE + 4000,
        },
        {
            "version": 2,
            "turns": 2,
            "completed": 1,
            "failed": 0,
            "cancelled": 0,
            "interrupted": 1,
            "latency_ms_p50": 40,
            "latency_ms_p95": 40,
            "tokens_in": 5,
            "tokens_out": 3,
            "cost_usd": 0.0,
            "thumbs_up": 0,
            "thumbs_down": 0,
            "first_turn_at_ms": BASE + 5000,
            "last_turn_at_ms": BASE + 6000,
        },
    ]
    one = chat_api.get("/inventory/api/chat/profiles/agent/versions/2/stats?registry=default").json()
    assert one == rows[1]
    since = chat_api.get(f"/api/chat/profiles/agent/stats?registry=default&since_ms={BASE + 3000}").json()
    assert [(r["version"], r["turns"]) for r in since] == [(1, 2), (2, 2)]
    assert chat_api.get("/api/chat/profiles/agent/versions/7/stats?registry=default").status_code == 404


def test_a_version_without_turns_has_zero_counts_and_no_latency(agent_v2, chat_api):
    row = chat_api.get("/api/chat/profiles/agent/versions/2/stats?registry=default").json()
    assert row["turns"] == 0 and row["latency_ms_p50"] is None and row["first_turn_at_ms"] is None


def _queries(chat_api) -> int:
    with CaptureQueriesContext(connection) as captured:
        response = chat_api.get("/api/chat/profiles/agent/stats?registry=default")
    assert response.status_code == 200
    return len(captured)


def test_stats_cost_the_same_number_of_queries_for_10_and_1000_turns(agent_v2, chat_api, chat_user):
    conversation = ConversationFactory(owner=chat_user)
    add_turns(conversation, 1, [("completed", n, 1, 1) for n in range(10)])
    at_10 = _queries(chat_api)
    add_turns(conversation, 2, [("completed", n, 1, 1) for n in range(990)], start=10)
    assert _queries(chat_api) == at_10
    assert sum(r["turns"] for r in chat_api.get("/api/chat/profiles/agent/stats?registry=default").json()) == 1000
