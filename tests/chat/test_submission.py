"""`services.turn_submit(resolve=...)`: a new conversation's profile resolved by the write that stores it
with its first turn (the gateway's one trip to the database threads for its submission)."""

from __future__ import annotations

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from chat.models import Conversation, Turn
from chat.mounts import CHAT_MOUNT
from chat.services import conversation_build, conversation_create, turn_submit
from profiles.errors import NotFound
from profiles.selectors import profile_resolve

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("seeded_registries")]


def new_conversation(owner) -> Conversation:
    return conversation_build(owner=owner, mount=CHAT_MOUNT, profile="agent", resolved_by_submission=True)


def test_a_new_conversation_is_built_without_a_query_and_selects_the_profile_as_named(chat_user):
    with CaptureQueriesContext(connection) as queries:
        conversation = conversation_build(
            owner=chat_user, mount=CHAT_MOUNT, registry=" Default ", profile="Agent@1", resolved_by_submission=True
        )

    assert len(queries) == 0
    assert (conversation.selected_registry, conversation.selected_profile, conversation.selected_at) == (
        "default",
        "agent",
        "1",
    )


def test_the_submission_resolves_once_inside_its_transaction_and_the_turn_runs_on_it(chat_user):
    calls: list[bool] = []

    def resolve():
        calls.append(connection.in_atomic_block)
        return profile_resolve(registry_slug="default", profile_slug="agent", user=chat_user)

    submitted = turn_submit(conversation=new_conversation(chat_user), user=chat_user, prompt="hi", resolve=resolve)

    assert calls == [True]
    assert submitted.created and submitted.resolution.profile == "agent"
    assert Turn.objects.get(pk=submitted.turn.pk).conversation.selected_profile == "agent"


def test_a_refused_resolution_stores_neither_the_conversation_nor_the_turn(chat_user):
    def resolve():
        raise NotFound("model 'nope' not found", field="model")

    with pytest.raises(NotFound):
        turn_submit(conversation=new_conversation(chat_user), user=chat_user, prompt="hi", resolve=resolve)

    assert not Conversation.objects.exists() and not Turn.objects.exists()


def test_resolve_is_refused_for_a_stored_conversation(chat_user):
    stored = conversation_create(owner=chat_user, mount=CHAT_MOUNT, profile="agent")

    with pytest.raises(ValueError, match="new conversation"):
        turn_submit(conversation=stored, user=chat_user, prompt="hi", resolve=lambda: None)

    assert not Turn.objects.exists()
