"""factory-boy factories for the chat tests: users (with optional permissions), tokens, conversations, turns."""

from __future__ import annotations

from typing import Any

import factory
from django.db.models import Count, Max, Q
from rest_framework.authtoken.models import Token

from chat.models import Conversation, Turn
from chat.services import now_ms
from tests.factories import PASSWORD, UserFactory

__all__ = ["PASSWORD", "ConversationFactory", "TokenFactory", "TurnFactory", "UserFactory", "turns_counted"]


class TokenFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Token

    user = factory.SubFactory(UserFactory)


class ConversationFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Conversation

    owner = factory.SubFactory(UserFactory)
    mount = "chat"


class TurnFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Turn

    conversation = factory.SubFactory(ConversationFactory)
    seq = factory.Sequence(lambda n: n + 1)
    prompt = "Hello"
    created_at_ms = factory.LazyFunction(now_ms)

    @classmethod
    def _create(cls, model_class: Any, *args: Any, **kwargs: Any) -> Turn:
        turn = super()._create(model_class, *args, **kwargs)
        turns_counted(turn.conversation)
        return turn


def turns_counted(*conversations: Conversation) -> None:
    """Give conversations whose turns a test stored directly the counts the services keep on the row
    (`Conversation.last_turn_seq`, `queued_turns`), as the migration that added them counted them."""
    for conversation in conversations:
        counts = Turn.objects.filter(conversation=conversation).aggregate(
            last=Max("seq"), queued=Count("pk", filter=Q(status=Turn.Status.QUEUED))
        )
        conversation.last_turn_seq, conversation.queued_turns = counts["last"] or 0, counts["queued"]
        Conversation.objects.filter(pk=conversation.pk).update(
            last_turn_seq=conversation.last_turn_seq, queued_turns=conversation.queued_turns
        )
