"""factory-boy factories for the chat tests: users (with optional permissions), tokens, conversations, turns."""

from __future__ import annotations

import factory
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Permission
from rest_framework.authtoken.models import Token

from chat.models import Conversation, Turn
from chat.services import now_ms

PASSWORD = "pw-for-chat-tests"


class UserFactory(factory.django.DjangoModelFactory):
    """`UserFactory(perms=["profiles.change_profile"])` grants those model permissions."""

    class Meta:
        model = get_user_model()
        django_get_or_create = ("username",)
        skip_postgeneration_save = True

    username = factory.Sequence(lambda n: f"chat-user{n}")
    password = factory.django.Password(PASSWORD)

    @factory.post_generation
    def perms(self, create: bool, extracted: list[str] | None, **kwargs) -> None:
        for perm in extracted or []:
            app_label, codename = perm.split(".")
            self.user_permissions.add(Permission.objects.get(content_type__app_label=app_label, codename=codename))


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
