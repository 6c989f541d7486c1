"""factory-boy factories for the profile platform.

Registries and profiles are created through `profiles.services`, never with `Model.objects.create`,
so every object a test starts from satisfies the same invariants (versions, default profile,
revision history) as the ones the API and the importer write.
"""

from __future__ import annotations

import factory
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Permission

from profiles import services
from profiles.models import Profile, Registry

PROFILE_EDITOR_PERMS = ["profiles.add_profile", "profiles.change_profile", "profiles.delete_profile"]
PASSWORD = "pw-for-tests"


class UserFactory(factory.django.DjangoModelFactory):
    """`UserFactory(perms=["profiles.change_profile"])` grants those model permissions."""

    class Meta:
        model = get_user_model()
        django_get_or_create = ("username",)
        skip_postgeneration_save = True

    username = factory.Sequence(lambda n: f"profiles-user{n}")
    password = factory.django.Password(PASSWORD)

    @factory.post_generation
    def perms(self, create: bool, extracted: list[str] | None, **kwargs) -> None:
        grant(self, extracted or [])


class EditorFactory(UserFactory):
    """A staff-like profile editor: may add, change and delete profiles."""

    username = factory.Sequence(lambda n: f"profiles-editor{n}")

    @factory.post_generation
    def perms(self, create: bool, extracted: list[str] | None, **kwargs) -> None:
        grant(self, PROFILE_EDITOR_PERMS if extracted is None else extracted)


def grant(user, perms: list[str]) -> None:
    for perm in perms:
        app_label, codename = perm.split(".")
        user.user_permissions.add(Permission.objects.get(content_type__app_label=app_label, codename=codename))


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
