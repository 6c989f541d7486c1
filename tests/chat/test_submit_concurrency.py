"""Concurrent submissions to one conversation (real threads, real database: SQLite here, PostgreSQL
in the scale-out stage of `make test`)."""

import threading
import time
from types import SimpleNamespace

import pytest
from django.db import connection, transaction

from chat.models import Turn
from chat.mounts import CHAT_MOUNT
from chat.services import conversation_create, turn_finish, turn_submit
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


def _wait_until_another_transaction_waits_for_a_lock() -> None:
    """On PostgreSQL, until a statement of another connection waits for a row lock (SQLite's writers
    wait for the database's write lock at BEGIN: a moment is enough there)."""
    if connection.vendor != "postgresql":
        time.sleep(0.3)
        return
    deadline = time.monotonic() + 10
    with connection.cursor() as cursor:
        while time.monotonic() < deadline:
            cursor.execute("SELECT count(*) FROM pg_locks WHERE NOT granted")
            if cursor.fetchone()[0]:
                return
            time.sleep(0.01)
    raise AssertionError("nothing waited for a lock")


def test_a_finish_that_waited_for_a_submission_sees_the_turn_it_queued(conversation, chat_user):
    """The release reads the queue from its own changed row: a PostgreSQL UPDATE that waited for the
    lock of a submission committing a queued turn sees it (a subquery would read as of its start, and
    the queued turn would wait for a sweep)."""
    running = turn_submit(
        conversation=conversation, user=chat_user, prompt="runs", start=lambda *_: SimpleNamespace(record=None)
    ).turn
    submitted_and_holding = threading.Event()

    def submit_or_finish(i: int):
        if i == 0:
            with transaction.atomic():
                submitted = turn_submit(conversation=conversation, user=chat_user, prompt="waits")
                submitted_and_holding.set()
                _wait_until_another_transaction_waits_for_a_lock()
            return submitted
        assert submitted_and_holding.wait(10)
        return turn_finish(turn_id=running.pk, status="completed", text="done")

    submitted, finished = in_threads(2, submit_or_finish)

    assert submitted.position == 1 and submitted.turn.status == Turn.Status.QUEUED, submitted
    assert finished.finished and finished.more_queued, finished
