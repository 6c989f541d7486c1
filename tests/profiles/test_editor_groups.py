"""Editors per registry (`editor_groups`, a django-rules object permission): a registry that names groups
is edited by their members only (with the model permissions as before) and by superusers; every other
editor gets 403 on every write of it, through both mounts and in the admin, and nothing changes."""

from __future__ import annotations

import json

import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Permission
from django.test import Client
from django.urls import reverse

from profiles import services
from profiles.errors import Forbidden
from profiles.models import Profile, ProfileLabel, ProfileRevision, Registry

from .conftest import client_for
from .factories import EditorFactory, join
from .support import MountCase, error_of

pytestmark = pytest.mark.django_db

PERMS = ["add", "change", "delete", "view", "promote"]


@pytest.fixture
def locked(mount: MountCase, seeded) -> Registry:
    """The mount's registry, edited by the group `registry-editors` only; `extra` has a second version."""
    services.profile_create(registry_slug=mount.registry, slug="extra", runtime={"system_prompt": "One."})
    services.profile_update(registry_slug=mount.registry, slug="extra", changes={"description": "Two."})
    services.label_set(registry_slug=mount.registry, slug="extra", name="staging", version=1)
    return services.registry_update(slug=mount.registry, editor_groups=["registry-editors"])


def state(registry: str) -> tuple:
    """Everything a write could change."""
    return (
        Registry.objects.get(slug=registry).version,
        sorted(Profile.objects.filter(registry__slug=registry).values_list("slug", "version")),
        ProfileRevision.objects.filter(registry_slug=registry).count(),
        sorted(ProfileLabel.objects.filter(profile__registry__slug=registry).values_list("name", "version")),
    )


def writes(mount: MountCase) -> list[tuple[str, str, dict | None]]:
    return [
        ("post", "/profiles", {"slug": "new-one"}),
        ("patch", "/profiles/extra", {"description": "changed"}),
        ("delete", "/profiles/extra", None),
        ("post", "/profiles/extra/default", {}),
        ("post", "/profiles/extra/versions/1/restore", {}),
        ("put", "/profiles/extra/labels/staging", {"version": 2}),
        ("put", "/profiles/extra/labels/canary", {"version": 1}),
        ("delete", "/profiles/extra/labels/staging", None),
    ]


@pytest.fixture
def outsider(db):
    """Every profile permission (staff too), in no editor group."""
    return EditorFactory(username="outsider", is_staff=True, perms=[f"profiles.{p}_profile" for p in PERMS])


@pytest.fixture
def insider(db):
    user = EditorFactory(username="insider", perms=[f"profiles.{p}_profile" for p in PERMS])
    join(user, "registry-editors")
    return get_user_model().objects.get(pk=user.pk)


@pytest.mark.parametrize("index", range(8))
def test_an_editor_outside_the_editor_groups_gets_403_on_every_write(mount, locked, outsider, index):
    method, path, body = writes(mount)[index]
    before = state(mount.registry)
    response = getattr(client_for(outsider), method)(mount.url(path), body, format="json")
    assert response.status_code == 403, response.content
    assert (error_of(response)["code"], error_of(response)["field"]) == ("permission_denied", "registry")
    assert state(mount.registry) == before


@pytest.mark.parametrize("index", range(8))
def test_a_member_of_the_editor_groups_may(mount, locked, insider, index):
    method, path, body = writes(mount)[index]
    response = getattr(client_for(insider), method)(mount.url(path), body, format="json")
    assert response.status_code in (200, 201, 204), response.content


def test_superusers_edit_every_registry(mount, locked, admin_user):
    response = client_for(admin_user).patch(mount.url("/profiles/extra"), {"description": "by admin"}, format="json")
    assert response.status_code == 200


def test_a_registry_without_editor_groups_is_edited_as_before(mount, seeded, outsider):
    response = client_for(outsider).patch(
        mount.url(f"/profiles/{mount.default_profile}"), {"description": "x"}, format="json"
    )
    assert response.status_code == 200


def test_the_other_registry_is_not_affected(mount, locked, outsider):
    response = client_for(outsider).post(
        mount.url(f"/profiles?registry={mount.other_registry}"), {"slug": "elsewhere"}, format="json"
    )
    assert response.status_code == 201


def test_reads_stay_open(mount, locked, outsider, api_reader):
    assert client_for(outsider).get(mount.url("/profiles/extra")).status_code == 200
    assert api_reader.get(mount.url("/profiles/extra")).status_code == 200


def test_the_registry_settings_themselves_are_for_its_editors(mount, locked, outsider, insider):
    with pytest.raises(Forbidden):
        services.registry_update(slug=mount.registry, editor_groups=[], actor=outsider)
    assert Registry.objects.get(slug=mount.registry).editor_groups == ["registry-editors"]
    services.registry_update(slug=mount.registry, description="insiders may", actor=insider)


def test_the_rule_is_a_django_permission_on_the_object(locked, outsider, insider, admin_user):
    assert not outsider.has_perm("profiles.edit_registry", locked)
    assert insider.has_perm("profiles.edit_registry", locked)
    assert admin_user.has_perm("profiles.edit_registry", locked)
    assert not outsider.has_perm("profiles.edit_registry")  # only ever asked about a registry


# --------------------------------------------------------------------------- the admin


@pytest.fixture
def admin_outsider(outsider) -> Client:
    client = Client()
    client.force_login(outsider)
    return client


def test_the_admin_refuses_an_outsider_every_write_with_403(mount, locked, admin_outsider):
    extra = Profile.objects.get(registry__slug=mount.registry, slug="extra")
    before = state(mount.registry)
    change = reverse("admin:profiles_profile_change", args=[extra.pk])
    assert admin_outsider.post(change, {"description": "x", "expected_version": 2}).status_code == 403
    assert (
        admin_outsider.post(reverse("admin:profiles_profile_delete", args=[extra.pk]), {"post": "yes"}).status_code
        == 403
    )
    assert admin_outsider.post(reverse("admin:profiles_profile_restore", args=[extra.pk, 1])).status_code == 403
    label = reverse("admin:profiles_profile_label_set", args=[extra.pk])
    assert admin_outsider.post(label, {"name": "staging", "version": 2}).status_code == 403
    registry = Registry.objects.get(slug=mount.registry)
    registry_change = reverse("admin:profiles_registry_change", args=[registry.pk])
    assert admin_outsider.post(registry_change, {"display_name": "x"}).status_code == 403
    assert state(mount.registry) == before


def test_the_admin_offers_an_outsider_only_the_registries_they_may_edit(mount, locked, admin_outsider):
    add = reverse("admin:profiles_profile_add")
    form = admin_outsider.get(add).context["adminform"].form
    offered = {r.slug for r in form.fields["registry"].queryset}
    assert mount.registry not in offered and mount.other_registry in offered
    response = admin_outsider.post(
        add,
        {
            "registry": Registry.objects.get(slug=mount.registry).pk,
            "slug": "sneaky",
            "runtime": "{}",
            "policy": "{}",
            "extensions": "{}",
            "stack": "[]",
        },
    )
    assert response.status_code == 200  # the form again, with the refusal on the registry field
    assert "registry" in response.context["adminform"].form.errors
    assert not Profile.objects.filter(slug="sneaky").exists()


def test_the_admin_lets_an_insider_edit_groups_and_defaults_through_the_services(mount, locked, insider):
    insider.is_staff = True
    insider.save()
    insider.user_permissions.add(Permission.objects.get(codename="change_registry"))
    client = Client()
    client.force_login(insider)
    registry = Registry.objects.get(slug=mount.registry)
    url = reverse("admin:profiles_registry_change", args=[registry.pk])
    data = {
        "display_name": registry.display_name,
        "description": registry.description,
        "default_profile": registry.default_profile_id,
        "expected_version": registry.version,
        "protected_labels": "production",
        "serve_label": "",
        "editor_groups": "registry-editors, leads",
        "group_defaults": json.dumps([{"group": "support", "profile": "extra"}]),
    }
    response = client.post(url, data)
    assert response.status_code == 302, response.context["adminform"].form.errors if response.context else ""
    registry.refresh_from_db()
    assert registry.editor_groups == ["leads", "registry-editors"]
    assert registry.group_defaults == [{"group": "support", "profile": "extra"}]
    # A bad group default is a form error on its field, and nothing is written.
    bad = {
        **data,
        "expected_version": registry.version,
        "group_defaults": json.dumps([{"group": "x", "profile": "nope"}]),
    }
    response = client.post(url, bad)
    assert response.status_code == 200
    assert "group_defaults" in response.context["adminform"].form.errors
    assert Registry.objects.get(slug=mount.registry).group_defaults == [{"group": "support", "profile": "extra"}]


def test_an_outsider_may_still_read_the_profile_in_the_admin_but_not_change_it(mount, locked, admin_outsider):
    """Reads stay open (as in the API): the change page is served view-only."""
    extra = Profile.objects.get(registry__slug=mount.registry, slug="extra")
    response = admin_outsider.get(reverse("admin:profiles_profile_change", args=[extra.pk]))
    assert response.status_code == 200
    assert response.context["has_change_permission"] is False
    assert response.context["has_delete_permission"] is False
