"""The turn counts a conversation's row keeps (`Conversation.last_turn_seq`, `queued_turns`): what a
submission reads with its lock and a finish with its release, kept by the writes that change them."""

from __future__ import annotations

import importlib
from types import SimpleNamespace

import pytest
from django.apps import apps
from django.db import connection

from chat.errors import QueueFull
from chat.models import Conversation, Turn
from chat.mounts import CHAT_MOUNT
from chat.services import conversation_build, conversation_create, turn_finish, turn_start, turn_submit

from .factories import ConversationFactory, TurnFactory

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("seeded_registries")]


def at_once(conversation, turn, resolution):
    """A `start` that claims the turn with its submission when nothing runs or waits (no runtime record)."""
    return SimpleNamespace(record=None)


def counts(conversation) -> tuple[int, int]:
    row = Conversation.objects.filter(pk=conversation.pk).values_list("last_turn_seq", "queued_turns").get()
    return row[0], row[1]


def test_the_row_counts_its_newest_turn_and_its_queue_through_submission_claim_and_finish(chat_user):
    conversation = conversation_create(owner=chat_user, mount=CHAT_MOUNT)
    first = turn_submit(conversation=conversation, user=chat_user, prompt="one", start=at_once)
    assert (first.position, first.turn.status, counts(conversation)) == (0, Turn.Status.RUNNING, (1, 0))

    second = turn_submit(conversation=conversation, user=chat_user, prompt="two", start=at_once)
    third = turn_submit(conversation=conversation, user=chat_user, prompt="three", start=at_once)
    assert (second.position, third.position, third.turn.seq, counts(conversation)) == (1, 2, 3, (3, 2))

    assert turn_finish(turn_id=first.turn.pk, status="completed", text="1").more_queued
    assert turn_start(turn=second.turn, record=None)
    assert counts(conversation) == (3, 1)
    assert turn_finish(turn_id=second.turn.pk, status="completed", text="2").more_queued
    assert turn_start(turn=third.turn, record=None)
    assert counts(conversation) == (3, 0)
    assert not turn_finish(turn_id=third.turn.pk, status="completed", text="3").more_queued


def test_a_new_conversation_is_stored_with_the_counts_of_its_first_turn(chat_user):
    def new():
        return conversation_build(owner=chat_user, mount=CHAT_MOUNT, profile="agent", resolved_by_submission=True)

    running = turn_submit(conversation=new(), user=chat_user, prompt="now", start=at_once).turn.conversation
    queued = turn_submit(conversation=new(), user=chat_user, prompt="later").turn.conversation

    assert (counts(running), counts(queued)) == ((1, 0), (1, 1))


def test_a_refused_submission_leaves_the_counts_as_they_were(chat_user, settings):
    settings.CHAT_MAX_QUEUED_TURNS = 1  # the running turn and one waiting
    conversation = conversation_create(owner=chat_user, mount=CHAT_MOUNT)
    for prompt in ("runs", "waits"):
        turn_submit(conversation=conversation, user=chat_user, prompt=prompt, start=at_once)

    with pytest.raises(QueueFull):
        turn_submit(conversation=conversation, user=chat_user, prompt="one too many", start=at_once)

    assert counts(conversation) == (2, 1)
    assert Turn.objects.filter(conversation=conversation).count() == 2


def test_the_migration_that_added_them_counts_the_turns_stored_before_it(chat_user):
    migration = importlib.import_module("chat.migrations.0018_turn_counts_on_the_conversation")
    busy, empty = ConversationFactory(owner=chat_user), ConversationFactory(owner=chat_user)
    for seq, status in enumerate(["completed", "running", "queued", "queued"], start=1):
        TurnFactory(conversation=busy, seq=seq, status=status)
    Conversation.objects.update(last_turn_seq=0, queued_turns=0)

    with connection.schema_editor() as editor:
        migration.count_turns(apps, editor)

    assert (counts(busy), counts(empty)) == ((4, 2), (0, 0))


def test_a_claim_of_a_turn_another_worker_ran_already_is_refused_and_counts_nothing(chat_user):
    conversation = conversation_create(owner=chat_user, mount=CHAT_MOUNT)
    turn = turn_submit(conversation=conversation, user=chat_user, prompt="one").turn
    assert turn_start(turn=Turn.objects.get(pk=turn.pk), record=None, worker="w1")
    assert turn_finish(turn_id=turn.pk, status="completed", text="1", worker="w1").finished

    assert not turn_start(turn=turn, record=None, worker="w2")  # its copy from before the other ran it
    assert counts(conversation) == (1, 0)
