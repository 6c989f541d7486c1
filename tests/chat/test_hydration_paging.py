"""Hydration paging: `GET /api/chat/conversations/{id}` returns the newest turns, `?before_seq=` pages back.

Turns are rows made with the factory (no engine runs); both mounts serve the same contract.
"""

from __future__ import annotations

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from chat.models import Turn

from .factories import ConversationFactory, TurnFactory, turns_counted

pytestmark = pytest.mark.django_db

MOUNTS = [pytest.param("/", "chat", id="chat"), pytest.param("/inventory/", "inventory", id="inventory")]

SUMMARY_KEYS = {
    "conv_id",
    "mount",
    "title",
    "profile_selection",
    "current_runtime_key",
    "current_fingerprint",
    "current_profile_version",
    "last_seq",
    "created_at_ms",
    "updated_at_ms",
    "archived",
    "archived_at_ms",
    "turn_count",
}


@pytest.fixture
def conversation_with(chat_user):
    """`conversation_with(n, mount=..., seqs=...)`: a conversation of `chat_user` with turns of those seqs."""

    def make(n: int = 0, *, mount: str = "chat", seqs=None):
        conversation = ConversationFactory(owner=chat_user, mount=mount)
        seqs = list(seqs) if seqs is not None else list(range(1, n + 1))
        Turn.objects.bulk_create(
            [TurnFactory.build(conversation=conversation, seq=seq, prompt=f"p{seq}") for seq in seqs]
        )
        turns_counted(conversation)
        conversation.last_seq = max(seqs, default=0)
        conversation.save(update_fields=["last_seq"])
        return conversation

    return make


def get(api, prefix: str, conversation, **params):
    return api.get(f"{prefix}api/chat/conversations/{conversation.pk}", params)


def seqs_of(body: dict) -> list[int]:
    return [turn["seq"] for turn in body["turns"]]


@pytest.mark.parametrize(("prefix", "mount"), MOUNTS)
def test_default_page_is_the_newest_50_turns_ascending(chat_api, conversation_with, prefix, mount):
    conversation = conversation_with(120, mount=mount)

    response = get(chat_api, prefix, conversation)

    assert response.status_code == 200, response.content
    body = response.json()
    assert SUMMARY_KEYS | {"turns", "turns_more", "turns_before_seq"} == set(body)
    assert body["conv_id"] == str(conversation.pk) and body["mount"] == mount
    assert seqs_of(body) == list(range(71, 121))
    assert [turn["prompt"] for turn in body["turns"][:2]] == ["p71", "p72"]
    assert body["turns_more"] is True
    assert body["turns_before_seq"] == 71


@pytest.mark.parametrize(("prefix", "mount"), MOUNTS)
def test_before_seq_pages_through_every_turn_without_duplicate_or_gap(chat_api, conversation_with, prefix, mount):
    conversation = conversation_with(23, mount=mount)

    pages = [get(chat_api, prefix, conversation, turns_limit=5).json()]
    while pages[-1]["turns_more"]:
        pages.append(
            get(chat_api, prefix, conversation, turns_limit=5, before_seq=pages[-1]["turns_before_seq"]).json()
        )

    assert [seqs_of(page) for page in pages] == [
        [19, 20, 21, 22, 23],
        [14, 15, 16, 17, 18],
        [9, 10, 11, 12, 13],
        [4, 5, 6, 7, 8],
        [1, 2, 3],
    ]
    assert [page["turns_more"] for page in pages] == [True, True, True, True, False]
    assert pages[-1]["turns_before_seq"] is None
    everything = [seq for page in reversed(pages) for seq in seqs_of(page)]
    assert everything == list(range(1, 24))


def test_paging_follows_seq_values_not_positions(chat_api, conversation_with):
    conversation = conversation_with(seqs=range(3, 40, 3))  # 3, 6, ..., 39: 13 turns with gaps

    first = get(chat_api, "/", conversation, turns_limit=6).json()
    second = get(chat_api, "/", conversation, turns_limit=6, before_seq=first["turns_before_seq"]).json()
    last = get(chat_api, "/", conversation, turns_limit=6, before_seq=second["turns_before_seq"]).json()

    assert seqs_of(first) == [24, 27, 30, 33, 36, 39] and first["turns_before_seq"] == 24
    assert seqs_of(second) == [6, 9, 12, 15, 18, 21] and second["turns_before_seq"] == 6
    assert seqs_of(last) == [3] and last["turns_more"] is False and last["turns_before_seq"] is None


def test_an_exact_last_page_has_no_more(chat_api, conversation_with):
    conversation = conversation_with(10)

    body = get(chat_api, "/", conversation, turns_limit=10).json()

    assert seqs_of(body) == list(range(1, 11))
    assert body["turns_more"] is False and body["turns_before_seq"] is None


def test_before_seq_past_the_ends(chat_api, conversation_with):
    conversation = conversation_with(8)

    above = get(chat_api, "/", conversation, before_seq=1000).json()
    below = get(chat_api, "/", conversation, before_seq=1).json()

    assert seqs_of(above) == list(range(1, 9)) and above["turns_more"] is False
    assert below["turns"] == [] and below["turns_more"] is False and below["turns_before_seq"] is None


def test_turns_limit_max_is_200(chat_api, conversation_with):
    conversation = conversation_with(205)

    body = get(chat_api, "/", conversation, turns_limit=200).json()

    assert seqs_of(body) == list(range(6, 206))
    assert body["turns_more"] is True and body["turns_before_seq"] == 6


def test_a_conversation_without_turns(chat_api, conversation_with):
    body = get(chat_api, "/", conversation_with(0)).json()

    assert body["turns"] == [] and body["turns_more"] is False and body["turns_before_seq"] is None


def test_only_this_conversations_turns(chat_api, conversation_with):
    mine = conversation_with(3)
    conversation_with(60)

    assert seqs_of(get(chat_api, "/", mine).json()) == [1, 2, 3]


def test_create_returns_the_paging_keys_too(chat_api):
    response = chat_api.post("/api/chat/conversations", {}, format="json")

    assert response.status_code == 201, response.content
    body = response.json()
    assert body["turns"] == [] and body["turns_more"] is False and body["turns_before_seq"] is None


@pytest.mark.parametrize(("prefix", "mount"), MOUNTS)
@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"turns_limit": 0}, "turns_limit"),
        ({"turns_limit": 201}, "turns_limit"),
        ({"turns_limit": -5}, "turns_limit"),
        ({"turns_limit": "many"}, "turns_limit"),
        ({"turns_limit": "1.5"}, "turns_limit"),
        ({"before_seq": 0}, "before_seq"),
        ({"before_seq": "x"}, "before_seq"),
    ],
)
def test_bad_params_are_400_with_the_field(chat_api, conversation_with, prefix, mount, params, field):
    conversation = conversation_with(3, mount=mount)

    response = get(chat_api, prefix, conversation, **params)

    assert response.status_code == 400, response.content
    error = response.json()["error"]
    assert error["code"] == "invalid"
    assert error["field"] == field


@pytest.mark.parametrize(("prefix", "mount"), MOUNTS)
def test_the_query_count_does_not_grow_with_the_turns(chat_api, conversation_with, prefix, mount):
    few, many = conversation_with(10, mount=mount), conversation_with(300, mount=mount)

    counts, sqls = [], []
    for conversation in (few, many):
        with CaptureQueriesContext(connection) as queries:
            response = get(chat_api, prefix, conversation)
        assert response.status_code == 200
        counts.append(len(queries))
        sqls.append([q["sql"] for q in queries.captured_queries if 'FROM "chat_turn"' in q["sql"]])

    assert counts[0] == counts[1]
    assert len(response.json()["turns"]) == 50
    turn_queries = sqls[1]
    assert len(turn_queries) == 1
    assert "ORDER BY" in turn_queries[0] and "DESC" in turn_queries[0] and "LIMIT 51" in turn_queries[0]
