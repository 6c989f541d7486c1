"""Whoever may write a registry sees every slug of it; nobody else learns a hidden one.

A create with a taken slug answers 409, so a user who may create profiles in a registry could always
probe for slugs of profiles they may not see. Such a writer (the model permissions to write profiles and
edit rights on the registry: `profiles.access.WRITE_REGISTRY`) therefore sees every slug in the list: a
profile they may not use appears as `{registry, slug, restricted: true}` only, and naming it answers 403
(its content stays closed). Everyone else keeps the 404 a missing profile gets, and cannot probe with a
create. Through both mounts; the list stays one query.
"""

from __future__ import annotations

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from rest_framework.test import APIClient

from profiles import services
from profiles.models import Profile

from .conftest import client_for
from .factories import EditorFactory, join
from .support import MountCase, error_of

pytestmark = pytest.mark.django_db

RESTRICTED_MESSAGE = "profile 'support-desk' in registry '{registry}' is restricted to groups you are not in"


@pytest.fixture
def desk(mount: MountCase, seeded) -> Profile:
    """`support-desk` in the mount's registry, for the group `support` only (like the demo's)."""
    return services.profile_create(
        registry_slug=mount.registry,
        slug="support-desk",
        runtime={"system_prompt": "Internal support playbook."},
        visible_to_groups=["support"],
    )


def listing(client: APIClient, mount: MountCase) -> dict[str, dict]:
    response = client.get(mount.url("/profiles"))
    assert response.status_code == 200, response.content
    return {item["slug"]: item for item in response.json()}


def test_a_writer_lists_a_profile_they_may_not_use_by_its_slug_only(mount, desk, api_editor):
    items = listing(api_editor, mount)

    assert items["support-desk"] == {"registry": mount.registry, "slug": "support-desk", "restricted": True}
    assert set(items) == set(Profile.objects.filter(registry__slug=mount.registry).values_list("slug", flat=True))
    assert all("restricted" not in item for slug, item in items.items() if slug != "support-desk")
    assert "Internal support playbook." not in api_editor.get(mount.url("/profiles")).content.decode()


def test_a_create_with_that_slug_tells_a_writer_nothing_the_list_did_not(mount, desk, api_editor):
    assert listing(api_editor, mount)["support-desk"]["restricted"] is True
    response = api_editor.post(mount.url("/profiles"), {"slug": "support-desk"}, format="json")
    assert (response.status_code, error_of(response)["code"]) == (409, "conflict")
    assert Profile.objects.get(registry__slug=mount.registry, slug="support-desk").version == 1


# Every route that names the profile, for a writer outside its groups: (method, path, body).
NAMED_ROUTES = [
    ("get", "/profiles/support-desk", None),
    ("get", "/profiles/support-desk/versions", None),
    ("get", "/profiles/support-desk/versions/1", None),
    ("get", "/profiles/support-desk/labels", None),
    ("post", "/profiles/support-desk/resolve", {}),
    ("post", "/profile", {"slug": "support-desk"}),
    ("patch", "/profiles/support-desk", {"description": "x"}),
    ("delete", "/profiles/support-desk", None),
    ("post", "/profiles/support-desk/default", {}),
    ("post", "/profiles/support-desk/versions/1/restore", {}),
    ("put", "/profiles/support-desk/labels/staging", {"version": 1}),
]


@pytest.mark.parametrize(("method", "path", "body"), NAMED_ROUTES)
def test_naming_it_is_a_403_for_a_writer_and_changes_nothing(mount, desk, api_editor, method, path, body):
    response = getattr(api_editor, method)(mount.url(path), body, format="json")

    assert response.status_code == 403, response.content
    error = error_of(response)
    assert (error["code"], error["field"]) == ("permission_denied", "slug")
    assert error["message"] == RESTRICTED_MESSAGE.format(registry=mount.registry)
    desk.refresh_from_db()
    assert (desk.version, desk.description) == (1, "")


@pytest.mark.parametrize(("method", "path", "body"), NAMED_ROUTES[:6])
def test_everyone_else_keeps_the_404_of_a_missing_profile(mount, desk, api_reader, method, path, body):
    hidden = getattr(api_reader, method)(mount.url(path), body, format="json")
    other_body = {k: v.replace("support-desk", "no-such-desk") for k, v in body.items()} if body else body
    missing = getattr(api_reader, method)(
        mount.url(path.replace("support-desk", "no-such-desk")), other_body, format="json"
    )

    assert hidden.status_code == missing.status_code == 404
    assert error_of(hidden)["message"].replace("support-desk", "X") == error_of(missing)["message"].replace(
        "no-such-desk", "X"
    )
    assert "support-desk" not in listing(api_reader, mount)


def test_a_user_who_may_not_create_cannot_probe_with_a_create(mount, desk, api_reader):
    response = api_reader.post(mount.url("/profiles"), {"slug": "support-desk"}, format="json")
    assert (response.status_code, error_of(response)["code"]) == (403, "permission_denied")


def test_an_editor_outside_the_registrys_editor_groups_is_not_its_writer(mount, desk):
    services.registry_update(slug=mount.registry, editor_groups=["registry-editors"])
    outsider = client_for(EditorFactory(username="outsider"))

    assert "support-desk" not in listing(outsider, mount)
    assert outsider.get(mount.url("/profiles/support-desk")).status_code == 404
    response = outsider.post(mount.url("/profiles"), {"slug": "support-desk"}, format="json")
    assert (response.status_code, error_of(response)["field"]) == (403, "registry")  # before any slug check


def test_a_member_of_the_editor_groups_is_its_writer(mount, desk):
    services.registry_update(slug=mount.registry, editor_groups=["registry-editors"])
    insider = EditorFactory(username="insider")
    join(insider, "registry-editors")

    items = listing(client_for(type(insider).objects.get(pk=insider.pk)), mount)
    assert items["support-desk"] == {"registry": mount.registry, "slug": "support-desk", "restricted": True}


def test_a_writer_in_the_group_gets_the_profile_itself(mount, desk, editor, api_editor):
    join(editor, "support")
    member = client_for(type(editor).objects.get(pk=editor.pk))

    item = listing(member, mount)["support-desk"]
    assert "restricted" not in item and item["default_prompt"] == "Internal support playbook."
    assert member.get(mount.url("/profiles/support-desk")).status_code == 200


@pytest.mark.parametrize("perm", ["add_profile", "change_profile", "delete_profile"])
def test_any_permission_that_writes_profiles_makes_a_writer(mount, desk, perm):
    writer = client_for(EditorFactory(username=f"only-{perm}", perms=[f"profiles.{perm}"]))
    assert listing(writer, mount)["support-desk"] == {
        "registry": mount.registry,
        "slug": "support-desk",
        "restricted": True,
    }
    assert writer.get(mount.url("/profiles/support-desk")).status_code == 403


def test_a_writer_by_group_permission_is_a_writer(mount, desk):
    from django.contrib.auth.models import Group, Permission

    user = EditorFactory(username="by-group", perms=[])
    group = Group.objects.create(name="profile-writers")
    group.permissions.add(Permission.objects.get(content_type__app_label="profiles", codename="add_profile"))
    user.groups.add(group)
    client = client_for(type(user).objects.get(pk=user.pk))

    assert listing(client, mount)["support-desk"]["restricted"] is True
    assert client.get(mount.url("/profiles/support-desk")).status_code == 403


def test_an_inactive_writer_sees_nothing_more(mount, desk, editor, api_editor):
    editor.is_active = False
    editor.save()
    from profiles.access import write_filter

    registry = desk.registry
    assert not Profile.objects.filter(registry=registry).filter(write_filter(editor, registry)).exists()


def test_a_writers_list_is_still_one_query_of_rows(mount, desk, api_editor):
    with CaptureQueriesContext(connection) as queries:
        items = listing(api_editor, mount)
    assert "support-desk" in items
    assert len(queries.captured_queries) == 2  # the registry, then its rows (rights and groups are subqueries)


def test_the_schema_documents_both_list_entries(api_reader):
    schemas = api_reader.get("/api/schema/?format=json").json()["components"]["schemas"]
    entries = [ref["$ref"].rsplit("/", 1)[1] for ref in schemas["ProfileListEntry"]["oneOf"]]
    assert entries == ["ProfileListItem", "RestrictedProfileListItem"]
    restricted = schemas["RestrictedProfileListItem"]
    assert restricted["required"] == ["registry", "restricted", "slug"]
    assert "may not read or use" in restricted["properties"]["restricted"]["description"]
    assert "slug only" in restricted["description"]
