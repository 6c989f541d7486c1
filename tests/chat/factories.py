"""factory-boy factories for the chat tests: users (with optional permissions), tokens, conversations, turns."""

from __future__ import annotations

import factory
from rest_framework.authtoken.models import Token

from chat.models import Conversation, Turn
from chat.services import now_ms
from tests.factories import PASSWORD, UserFactory

__all__ = ["PASSWORD", "ConversationFactory", "TokenFactory", "TurnFactory", "UserFactory"]


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
