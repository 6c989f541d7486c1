"""A profile whose stored stack does not resolve (older data: a cycle or a layer that is gone; the
services refuse to write one, so the tests write it to the database directly) is refused when a user
selects it, with a 409 `profile_unavailable` naming the field and what is broken; nothing is stored.
It can still be read, and fixed by an editor. Through both mounts.
"""

from __future__ import annotations

import pytest

from profiles import services
from profiles.models import Profile, ProfileSelection

from .support import MountCase, error_of

pytestmark = pytest.mark.django_db


def break_stack(registry: str, slug: str, how: str) -> str:
    """Write a stack the services would refuse straight to the database; returns the expected cause."""
    if how == "dangling":
        Profile.objects.filter(registry__slug=registry, slug=slug).update(
            stack=[{"registry": registry, "slug": "gone"}]
        )
        return f"stack[0]: layer {registry}/gone not found"
    services.profile_create(registry_slug=registry, slug="other-half", stack=[{"slug": slug}])
    Profile.objects.filter(registry__slug=registry, slug=slug).update(
        stack=[{"registry": registry, "slug": "other-half"}]
    )
    return f"stack[0]: stacking {registry}/{slug} makes a cycle: {registry}/{slug} -> {registry}/other-half -> "


@pytest.fixture(params=["dangling", "cycle"])
def broken(request, mount: MountCase, seeded) -> str:
    """`broken` in the mount's registry, stacked on its default profile, then broken in the database."""
    services.profile_create(
        registry_slug=mount.registry, slug="broken", stack=[{"slug": mount.default_profile}], runtime={}
    )
    return break_stack(mount.registry, "broken", request.param)


def test_selecting_it_as_the_current_profile_is_a_409_and_stores_nothing(mount, broken, api_reader, reader):
    response = api_reader.post(mount.url("/profile"), {"slug": "broken"}, format="json")

    assert response.status_code == 409, response.content
    error = error_of(response)
    assert (error["code"], error["field"]) == ("profile_unavailable", "slug")
    assert error["message"].startswith(f"profile {mount.registry}/broken cannot be used: its stack does not resolve (")
    assert broken in error["message"]
    assert not ProfileSelection.objects.filter(user=reader).exists()
    current = api_reader.get(mount.url("/profile")).json()
    assert (current["slug"], current["source"]) == (mount.default_profile, "default")


def test_a_dry_run_resolution_says_the_same(mount, broken, api_reader):
    response = api_reader.post(mount.url("/profiles/broken/resolve"), {}, format="json")
    assert (response.status_code, error_of(response)["code"]) == (409, "profile_unavailable")


def test_it_can_still_be_read_and_an_editor_can_fix_it(mount, broken, api_reader, api_editor):
    assert api_reader.get(mount.url("/profiles/broken")).status_code == 200
    response = api_editor.patch(mount.url("/profiles/broken"), {"stack": None}, format="json")
    assert response.status_code == 200, response.content
    response = api_reader.post(mount.url("/profile"), {"slug": "broken"}, format="json")
    assert (response.status_code, response.json()["slug"]) == (200, "broken")


def test_a_profile_whose_stack_resolves_is_selected_as_before(mount, seeded, api_reader):
    services.profile_create(registry_slug=mount.registry, slug="stacked", stack=[{"slug": mount.default_profile}])
    response = api_reader.post(mount.url("/profile"), {"slug": "stacked"}, format="json")
    assert (response.status_code, response.json()["source"]) == (200, "selection")
