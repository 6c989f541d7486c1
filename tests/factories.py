"""Factories shared by every test package."""

from __future__ import annotations

import factory
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Permission

PASSWORD = "pw-for-tests"


def grant(user, perms: list[str]) -> None:
    """Give `user` Django model permissions named like "inventory.change_item"."""
    for perm in perms:
        app_label, codename = perm.split(".")
        user.user_permissions.add(Permission.objects.get(content_type__app_label=app_label, codename=codename))


class UserFactory(factory.django.DjangoModelFactory):
    """`UserFactory(perms=["profiles.change_profile"])` grants those model permissions."""

    class Meta:
        model = get_user_model()
        django_get_or_create = ("username",)
        skip_postgeneration_save = True

    username = factory.Sequence(lambda n: f"user{n}")
    password = factory.django.Password(PASSWORD)

    @factory.post_generation
    def perms(self, create: bool, extracted: list[str] | None, **kwargs) -> None:
        grant(self, extracted or [])
