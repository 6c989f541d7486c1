"""Defaults per group: a user's current profile is their own selection, else the default of the first
entry of the registry's `group_defaults` whose group they are in, else the registry default; `GET
.../profile` says which (`source`). Through both mounts."""

from __future__ import annotations

import pytest

from profiles import services
from profiles.errors import Conflict, InvalidInput
from profiles.models import Registry

from .conftest import client_for
from .factories import UserFactory, join
from .support import MountCase, error_of

pytestmark = pytest.mark.django_db


@pytest.fixture
def desks(mount: MountCase, seeded) -> None:
    """`support-desk` (support only), `sales-desk` (everyone) and group defaults support, then sales."""
    services.profile_create(registry_slug=mount.registry, slug="support-desk", visible_to_groups=["support"])
    services.profile_create(registry_slug=mount.registry, slug="sales-desk")
    services.registry_update(
        slug=mount.registry,
        group_defaults=[
            {"group": "support", "profile": "support-desk"},
            {"group": "sales", "profile": "sales-desk"},
        ],
    )


def current(client, mount: MountCase) -> dict:
    response = client.get(mount.url("/profile"))
    assert response.status_code == 200, response.content
    return response.json()


def test_a_member_gets_the_group_default_and_is_told_so(mount, desks, api_supporter):
    body = current(api_supporter, mount)
    assert (body["slug"], body["source"], body["group"]) == ("support-desk", "group_default", "support")
    assert body["profile"]["slug"] == "support-desk"


def test_a_user_in_no_listed_group_gets_the_registry_default(mount, desks, api_reader):
    body = current(api_reader, mount)
    assert (body["slug"], body["source"]) == (mount.default_profile, "default")
    assert "group" not in body


def test_the_first_matching_entry_wins_in_the_registry_order(mount, desks):
    both = UserFactory(username="both")
    join(both, "sales", "support")  # the user's own group order does not matter
    assert current(client_for(both), mount)["slug"] == "support-desk"
    services.registry_update(
        slug=mount.registry,
        group_defaults=[
            {"group": "sales", "profile": "sales-desk"},
            {"group": "support", "profile": "support-desk"},
        ],
    )
    assert current(client_for(both), mount)["slug"] == "sales-desk"


def test_the_users_own_selection_comes_first(mount, desks, api_supporter):
    assert api_supporter.post(mount.url("/profile"), {"slug": "sales-desk"}, format="json").status_code == 200
    body = current(api_supporter, mount)
    assert (body["slug"], body["source"]) == ("sales-desk", "selection")


def test_a_selection_that_went_away_falls_back_to_the_group_default(mount, desks, api_supporter):
    services.profile_create(registry_slug=mount.registry, slug="temp")
    api_supporter.post(mount.url("/profile"), {"slug": "temp"}, format="json")
    services.profile_delete(registry_slug=mount.registry, slug="temp")
    body = current(api_supporter, mount)
    assert (body["slug"], body["source"], body["group"]) == ("support-desk", "group_default", "support")
    assert body["stale_selection"] == {"registry": mount.registry, "slug": "temp"}


def test_group_defaults_are_shown_to_editors_only(mount, desks, api_reader, api_staff_editor):
    mine = {r["slug"]: r for r in api_staff_editor.get(mount.url("/registries")).json()}[mount.registry]
    assert mine["group_defaults"] == [
        {"group": "support", "profile": "support-desk"},
        {"group": "sales", "profile": "sales-desk"},
    ]
    theirs = {r["slug"]: r for r in api_reader.get(mount.url("/registries")).json()}[mount.registry]
    assert "group_defaults" not in theirs  # it names a profile the reader may not see


# --------------------------------------------------------------------------- rules of the setting


@pytest.mark.parametrize(
    ("entries", "field"),
    [
        ("support", "group_defaults"),
        ([{"group": "support"}], "group_defaults[0].profile"),
        ([{"group": "", "profile": "sales-desk"}], "group_defaults[0].group"),
        ([{"group": "x", "profile": "sales-desk", "extra": 1}], "group_defaults[0].extra"),
        ([{"group": "x", "profile": "nope"}], "group_defaults[0].profile"),
        (
            [{"group": "x", "profile": "sales-desk"}, {"group": "x", "profile": "sales-desk"}],
            "group_defaults[1].group",
        ),
        ([{"group": "sales", "profile": "support-desk"}], "group_defaults[0].profile"),  # not visible to sales
    ],
)
def test_invalid_group_defaults_are_400_on_their_path_and_change_nothing(mount, desks, entries, field):
    before = Registry.objects.get(slug=mount.registry)
    with pytest.raises(InvalidInput) as raised:
        services.registry_update(slug=mount.registry, group_defaults=entries)
    assert raised.value.field == field
    after = Registry.objects.get(slug=mount.registry)
    assert (after.group_defaults, after.version) == (before.group_defaults, before.version)


def test_a_group_default_cannot_be_deleted_or_hidden_from_its_group(mount, desks, api_staff_editor):
    response = api_staff_editor.delete(mount.url("/profiles/sales-desk"))
    assert response.status_code == 409
    assert "group defaults" in error_of(response)["message"]
    with pytest.raises(Conflict) as raised:
        services.profile_update(
            registry_slug=mount.registry, slug="support-desk", changes={"visible_to_groups": ["other"]}
        )
    assert raised.value.field == "visible_to_groups"
    # Restricting it to its own group (and more) is fine.
    services.profile_update(
        registry_slug=mount.registry, slug="support-desk", changes={"visible_to_groups": ["other", "support"]}
    )


def test_setting_group_defaults_is_one_registry_version(mount, seeded):
    before = Registry.objects.get(slug=mount.registry).version
    services.registry_update(slug=mount.registry, group_defaults=[{"group": "g", "profile": mount.default_profile}])
    registry = Registry.objects.get(slug=mount.registry)
    assert registry.version == before + 1
    services.registry_update(slug=mount.registry, group_defaults=[{"group": "g", "profile": mount.default_profile}])
    assert Registry.objects.get(slug=mount.registry).version == before + 1  # unchanged: no new version
