"""factory-boy factories for the profile platform.

Registries and profiles are created through `profiles.services`, never with `Model.objects.create`,
so every object a test starts from satisfies the same invariants (versions, default profile,
revision history) as the ones the API and the importer write.
"""

from __future__ import annotations

import factory
from django.contrib.auth.models import Group

from profiles import services
from profiles.models import Profile, Registry
from tests.factories import PASSWORD, UserFactory, grant

__all__ = [
    "PASSWORD",
    "EditorFactory",
    "GroupFactory",
    "ProfileFactory",
    "RegistryFactory",
    "UserFactory",
    "grant",
    "join",
]

PROFILE_EDITOR_PERMS = ["profiles.add_profile", "profiles.change_profile", "profiles.delete_profile"]


class EditorFactory(UserFactory):
    """A staff-like profile editor: may add, change and delete profiles."""

    username = factory.Sequence(lambda n: f"profiles-editor{n}")

    @factory.post_generation
    def perms(self, create: bool, extracted: list[str] | None, **kwargs) -> None:
        grant(self, PROFILE_EDITOR_PERMS if extracted is None else extracted)


class RegistryFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Registry

    slug = factory.Sequence(lambda n: f"registry-{n}")
    display_name = factory.LazyAttribute(lambda o: o.slug.title())
    description = ""

    @classmethod
    def _create(cls, model_class, *args, **kwargs) -> Registry:
        return services.registry_create(**kwargs)


class ProfileFactory(factory.django.DjangoModelFactory):
    """`ProfileFactory(registry=reg, slug="x", runtime={...})`: written by `services.profile_create`."""

    class Meta:
        model = Profile

    registry = factory.SubFactory(RegistryFactory)
    slug = factory.Sequence(lambda n: f"profile-{n}")
    display_name = factory.LazyAttribute(lambda o: o.slug.title())
    description = ""
    runtime = factory.LazyFunction(lambda: {"system_prompt": "You are a test assistant."})
    policy = None
    extensions = None
    set_default = False
    actor = None
    source = "api"

    @classmethod
    def _create(cls, model_class, *args, registry: Registry, **kwargs) -> Profile:
        return services.profile_create(registry_slug=registry.slug, **kwargs)


class GroupFactory(factory.django.DjangoModelFactory):
    """A Django group (`GroupFactory(name="support")`)."""

    class Meta:
        model = Group
        django_get_or_create = ("name",)

    name = factory.Sequence(lambda n: f"group-{n}")


def join(user, *names: str) -> None:
    """Put `user` in the groups named (created when missing)."""
    user.groups.add(*(GroupFactory(name=name) for name in names))
