"""Who may see and use which profile (`visible_to_groups`), through both mounts.

A user outside a profile's groups (and not staff with the change permission) does not see it in lists
and gets 404 (never 403: nothing leaks) wherever it is named, unless they may write its registry (they see
its slug then: test_slug_visibility.py); the list filters in the database with one query whatever the
number of the user's groups; a selection the user lost falls back like a deleted one.
"""

from __future__ import annotations

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from profiles import services
from profiles.access import forget_groups
from profiles.errors import Conflict
from profiles.models import Profile, ProfileGroupAccess

from .factories import UserFactory, join
from .support import MountCase, error_of

pytestmark = pytest.mark.django_db

SECRET_PROMPT = "You help the support team."


@pytest.fixture
def secret(mount: MountCase, seeded) -> Profile:
    """`secret` in the mount's registry, for the group `support` only."""
    return services.profile_create(
        registry_slug=mount.registry,
        slug="secret",
        runtime={"system_prompt": SECRET_PROMPT},
        visible_to_groups=["support"],
    )


def slugs(response) -> list[str]:
    assert response.status_code == 200, response.content
    return [item["slug"] for item in response.json()]


# Every route that names the profile, for a reader: (method, path, body).
NAMED_ROUTES = [
    ("get", "/profiles/secret", None),
    ("get", "/profiles/secret/versions", None),
    ("get", "/profiles/secret/versions/1", None),
    ("get", "/profiles/secret/versions/diff?from=1&to=1", None),
    ("get", "/profiles/secret/labels", None),
    ("get", "/profiles/secret/stats", None),
    ("get", "/profiles/secret/versions/1/stats", None),
    ("post", "/profiles/secret/resolve", {}),
    ("post", "/profiles/secret@1/resolve", {}),
    ("post", "/profiles/secret@latest/resolve", {}),
    ("post", "/profile", {"slug": "secret"}),
    ("post", "/profile", {"slug": "secret@1"}),
]


@pytest.mark.parametrize(("method", "path", "body"), NAMED_ROUTES)
def test_a_user_outside_the_group_gets_404_wherever_the_profile_is_named(mount, secret, api_reader, method, path, body):
    response = getattr(api_reader, method)(mount.url(path), body, format="json")
    assert response.status_code == 404, response.content
    error = error_of(response)
    assert error["code"] == "not_found"
    assert error["message"] == f"profile 'secret' not found in registry '{mount.registry}'"


def test_a_hidden_profile_reads_exactly_like_a_missing_one(mount, secret, api_reader):
    hidden = api_reader.get(mount.url("/profiles/secret"))
    services.profile_update(registry_slug=mount.registry, slug="secret", changes={"visible_to_groups": []})
    services.profile_create(registry_slug=mount.registry, slug="spare")
    missing = api_reader.get(mount.url("/profiles/nothing-here"))
    assert hidden.status_code == missing.status_code == 404
    assert error_of(hidden)["message"].replace("secret", "X") == error_of(missing)["message"].replace(
        "nothing-here", "X"
    )


@pytest.mark.parametrize(("method", "path", "body"), NAMED_ROUTES)
def test_a_member_of_the_group_uses_it_everywhere(mount, secret, api_supporter, method, path, body):
    response = getattr(api_supporter, method)(mount.url(path), body, format="json")
    assert response.status_code == 200, response.content


def test_the_list_and_the_registry_count_leave_it_out_for_others(mount, secret, api_reader, api_supporter):
    assert "secret" not in slugs(api_reader.get(mount.url("/profiles")))
    assert "secret" in slugs(api_supporter.get(mount.url("/profiles")))
    counts = {r["slug"]: r["profile_count"] for r in api_reader.get(mount.url("/registries")).json()}
    member_counts = {r["slug"]: r["profile_count"] for r in api_supporter.get(mount.url("/registries")).json()}
    assert member_counts[mount.registry] == counts[mount.registry] + 1
    # Another registry's list through this mount filters the same way.
    other = api_reader.get(mount.url(f"/profiles?registry={mount.registry}"))
    assert "secret" not in slugs(other)


def test_staff_with_the_change_permission_and_superusers_see_it_plain_editors_see_only_its_slug(
    mount, secret, api_staff_editor, api_editor, admin_user
):
    from rest_framework.test import APIClient

    assert "secret" in slugs(api_staff_editor.get(mount.url("/profiles")))
    assert api_staff_editor.get(mount.url("/profiles/secret")).status_code == 200
    superuser = APIClient()
    superuser.force_authenticate(admin_user)
    assert superuser.get(mount.url("/profiles/secret")).status_code == 200
    # The model permissions without staff status do not open it: the editor may not read or change it,
    # but writes the registry, so sees its slug (`restricted`) and is told 403, not 404
    # (test_slug_visibility.py).
    listed = {item["slug"]: item for item in api_editor.get(mount.url("/profiles")).json()}
    assert listed["secret"] == {"registry": mount.registry, "slug": "secret", "restricted": True}
    assert api_editor.get(mount.url("/profiles/secret")).status_code == 403
    response = api_editor.patch(mount.url("/profiles/secret"), {"description": "x"}, format="json")
    assert response.status_code == 403
    assert api_editor.delete(mount.url("/profiles/secret")).status_code == 403
    assert Profile.objects.get(slug="secret", registry__slug=mount.registry).version == 1


@pytest.mark.parametrize("groups", [1, 10, 100])
def test_the_list_filters_in_the_database_with_one_query_whatever_the_number_of_groups(mount, secret, groups):
    from rest_framework.test import APIClient

    user = UserFactory(username=f"many-{groups}")
    join(user, *(f"team-{i}" for i in range(groups - 1)), "support")
    for i in range(3):
        services.profile_create(registry_slug=mount.registry, slug=f"team-only-{i}", visible_to_groups=[f"team-{i}"])
    services.profile_create(registry_slug=mount.registry, slug="nobodys", visible_to_groups=["no-such-group"])
    client = APIClient()
    client.force_authenticate(user)
    with CaptureQueriesContext(connection) as queries:
        response = client.get(mount.url("/profiles"))
    listed = slugs(response)
    assert len(queries.captured_queries) == 2  # the registry, then its rows (the groups are a subquery)
    assert "secret" in listed and "nobodys" not in listed
    assert [s for s in listed if s.startswith("team-only")] == [f"team-only-{i}" for i in range(min(3, groups - 1))]


def test_a_user_in_no_group_lists_with_the_same_two_queries(mount, secret, api_reader):
    with CaptureQueriesContext(connection) as queries:
        listed = slugs(api_reader.get(mount.url("/profiles")))
    assert len(queries.captured_queries) == 2
    assert "secret" not in listed


def test_a_restriction_that_names_no_existing_group_fails_closed(mount, seeded, api_reader, api_supporter):
    services.profile_create(registry_slug=mount.registry, slug="typo", visible_to_groups=["suport"])
    assert api_reader.get(mount.url("/profiles/typo")).status_code == 404
    assert api_supporter.get(mount.url("/profiles/typo")).status_code == 404


# --------------------------------------------------------------------------- writing the restriction


def test_visible_to_groups_is_written_canonical_and_shown_in_the_document(mount, seeded, api_staff_editor):
    response = api_staff_editor.post(
        mount.url("/profiles"),
        {"slug": "desk", "visible_to_groups": [" support ", "sales", "support"]},
        format="json",
    )
    assert response.status_code == 201, response.content
    assert response.json()["visible_to_groups"] == ["sales", "support"]
    profile = Profile.objects.get(registry__slug=mount.registry, slug="desk")
    assert sorted(ProfileGroupAccess.objects.filter(profile=profile).values_list("group_name", flat=True)) == [
        "sales",
        "support",
    ]
    response = api_staff_editor.patch(mount.url("/profiles/desk"), {"visible_to_groups": []}, format="json")
    assert response.status_code == 200
    assert "visible_to_groups" not in response.json()  # absent: everyone
    assert not ProfileGroupAccess.objects.filter(profile=profile).exists()
    assert response.json()["metadata"]["version"] == 2


@pytest.mark.parametrize(
    ("value", "field"),
    [
        ("support", "visible_to_groups"),
        ([""], "visible_to_groups[0]"),
        ([7], "visible_to_groups[0]"),
        (["x" * 151], "visible_to_groups[0]"),
    ],
)
def test_an_invalid_group_list_is_400_on_its_path(mount, seeded, api_staff_editor, value, field):
    response = api_staff_editor.post(mount.url("/profiles"), {"slug": "bad", "visible_to_groups": value}, format="json")
    assert response.status_code == 400, response.content
    assert error_of(response)["field"] == field
    assert not Profile.objects.filter(slug="bad").exists()


def test_the_registry_default_cannot_be_restricted(mount, seeded, api_staff_editor):
    default = mount.default_profile
    response = api_staff_editor.patch(
        mount.url(f"/profiles/{default}"), {"visible_to_groups": ["support"]}, format="json"
    )
    assert response.status_code == 409
    assert error_of(response)["field"] == "visible_to_groups"
    services.profile_create(registry_slug=mount.registry, slug="secret", visible_to_groups=["support"])
    response = api_staff_editor.post(mount.url("/profiles/secret/default"), {}, format="json")
    assert response.status_code == 409
    response = api_staff_editor.post(
        mount.url("/profiles"), {"slug": "other", "visible_to_groups": ["x"], "set_default": True}, format="json"
    )
    assert response.status_code == 409
    assert not Profile.objects.filter(slug="other").exists()


def test_the_first_profile_of_an_empty_registry_cannot_be_restricted(db):
    services.registry_create(slug="empty")
    with pytest.raises(Conflict):
        services.profile_create(registry_slug="empty", slug="only", visible_to_groups=["support"])
    assert not Profile.objects.filter(registry__slug="empty").exists()


def test_a_restore_keeps_todays_restriction(mount, seeded, api_staff_editor, api_reader):
    services.profile_create(registry_slug=mount.registry, slug="desk")  # v1: everyone's
    services.profile_update(registry_slug=mount.registry, slug="desk", changes={"visible_to_groups": ["support"]})
    plan = api_staff_editor.post(mount.url("/profiles/desk/versions/1/restore?dry_run=1"), {}, format="json")
    assert plan.json() == []  # the content is the same; the restriction is not part of a restore
    response = api_staff_editor.post(mount.url("/profiles/desk/versions/1/restore"), {}, format="json")
    assert response.status_code == 200
    assert response.json()["visible_to_groups"] == ["support"]
    assert api_reader.get(mount.url("/profiles/desk")).status_code == 404


# --------------------------------------------------------------------------- selections the user lost


def test_a_selection_the_user_lost_falls_back_like_a_deleted_one(mount, secret, supporter, api_supporter):
    assert api_supporter.post(mount.url("/profile"), {"slug": "secret"}, format="json").json()["source"] == "selection"

    supporter.groups.clear()
    forget_groups(supporter)
    body = api_supporter.get(mount.url("/profile")).json()

    assert (body["slug"], body["source"]) == (mount.default_profile, "default")
    assert body["stale_selection"] == {"registry": mount.registry, "slug": "secret"}


def test_restricting_a_selected_profile_falls_back_for_those_outside(mount, seeded, api_reader):
    services.profile_create(registry_slug=mount.registry, slug="open")
    assert api_reader.post(mount.url("/profile"), {"slug": "open@1"}, format="json").status_code == 200

    services.profile_update(registry_slug=mount.registry, slug="open", changes={"visible_to_groups": ["support"]})
    body = api_reader.get(mount.url("/profile")).json()

    assert (body["slug"], body["source"]) == (mount.default_profile, "default")
    assert body["stale_selection"] == {"registry": mount.registry, "slug": "open", "ref": "open@1"}


@pytest.mark.backends
@pytest.mark.django_db(transaction=True)
def test_a_statement_that_loads_users_brings_their_group_names_and_the_rule_reads_them_no_more():
    """`user_group_names_of` (the turn's lock brings its owner's groups): the names it reads are what
    `user_group_names` would read, none for a user in no group, and the rule then makes no query."""
    from django.contrib.auth import get_user_model
    from django.db.models import OuterRef

    from profiles.access import remember_group_names, user_group_names, user_group_names_of

    member, loner = UserFactory(), UserFactory()
    join(member, "support", 'ops, "night" shift', "ünïcode")
    rows = (
        get_user_model()
        .objects.filter(pk__in=[member.pk, loner.pk])
        .annotate(names=user_group_names_of(OuterRef("pk")))
    )
    loaded = {user.pk: user for user in rows}

    with CaptureQueriesContext(connection) as queries:
        for user in loaded.values():
            remember_group_names(user, user.names)
        names = {pk: user_group_names(user) for pk, user in loaded.items()}

    assert queries.captured_queries == []
    assert names == {member.pk: user_group_names(UserFactory.build(pk=member.pk)), loner.pk: frozenset()}
    assert names[member.pk] == {"support", 'ops, "night" shift', "ünïcode"}
