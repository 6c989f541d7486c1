"""Concurrent submissions to one conversation (real threads, real database: SQLite here, PostgreSQL
in the scale-out stage of `make test`)."""

import pytest

from chat.models import Turn
from chat.mounts import CHAT_MOUNT
from chat.services import conversation_create, turn_submit
from tests.helpers import in_threads

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.concurrency]


@pytest.fixture
def conversation(seeded_registries, chat_user, settings):
    settings.CHAT_MAX_QUEUED_TURNS = 1000
    return conversation_create(owner=chat_user, mount=CHAT_MOUNT)


def test_concurrent_sends_each_get_their_own_turn_and_seq(conversation, chat_user):
    def send_five(i: int) -> list:
        return [turn_submit(conversation=conversation, user=chat_user, prompt=f"t{i}-{n}").created for n in range(5)]

    results = in_threads(4, send_five)

    assert all(r == [True] * 5 for r in results), results
    seqs = sorted(Turn.objects.filter(conversation=conversation).values_list("seq", flat=True))
    assert seqs == list(range(1, 21))


def test_one_idempotency_key_sent_concurrently_makes_one_turn(conversation, chat_user):
    results = in_threads(
        6, lambda i: turn_submit(conversation=conversation, user=chat_user, prompt="once", idempotency_key="k")
    )

    assert not [r for r in results if isinstance(r, Exception)], results
    assert sum(r.created for r in results) == 1
    assert len({r.turn.pk for r in results}) == 1
    assert Turn.objects.filter(conversation=conversation).count() == 1
