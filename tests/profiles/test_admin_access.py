"""The admin edits group restrictions and stacks through the same services as the API, and the profile
page shows the effective runtime with the layer each field came from."""

from __future__ import annotations

import json

import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Permission
from django.test import Client
from django.urls import reverse

from profiles import services
from profiles.models import Profile, ProfileGroupAccess, ProfileRevision

pytestmark = pytest.mark.django_db


@pytest.fixture
def layered(db) -> None:
    services.registry_create(slug="adm")
    services.profile_create(
        registry_slug="adm", slug="base", runtime={"system_prompt": "Base prompt.", "tools": ["calculator"]}
    )
    services.profile_create(
        registry_slug="adm", slug="built", stack=[{"slug": "base"}], runtime={"system_prompt": "Built prompt."}
    )


def change_url(slug: str) -> str:
    return reverse("admin:profiles_profile_change", args=[Profile.objects.get(registry__slug="adm", slug=slug).pk])


def form_data(client: Client, url: str, **overrides: str) -> dict[str, str]:
    """What a browser posts for the change form at `url` (hidden version included), with `overrides`."""
    form = client.get(url).context["adminform"].form
    data = {}
    for name, field in form.fields.items():
        value = form[name].value()
        if value is None or value is False:
            continue
        data[name] = "on" if value is True else field.widget.format_value(value) or ""
    return {**data, **overrides}


def test_the_profile_page_shows_the_effective_runtime_and_the_origin_of_each_field(admin_client, layered):
    page = admin_client.get(change_url("built")).content.decode()
    assert "Lineage: adm/base v1 → adm/built v1" in page
    assert "<code>runtime.system_prompt</code>" in page
    row = page[page.index("<code>runtime.tools</code>") :]
    assert "adm/base v1" in row[: row.index("</tr>")]
    prompt = page[page.index("<code>runtime.system_prompt</code>") :]
    prompt = prompt[: prompt.index("</tr>")]
    assert "adm/built v1" in prompt and "adm/base v1: &quot;Base prompt.&quot;" in prompt


def test_the_admin_writes_the_stack_and_the_groups_through_the_services(admin_client, layered):
    url = change_url("built")
    data = form_data(
        admin_client,
        url,
        stack=json.dumps([{"slug": "base", "version": 1}]),
        visible_to_groups="support, leads",
    )
    response = admin_client.post(url, data)
    assert response.status_code == 302, response.context["adminform"].form.errors
    built = Profile.objects.get(registry__slug="adm", slug="built")
    assert built.version == 2
    assert built.stack == [{"registry": "adm", "slug": "base", "version": 1}]
    assert built.visible_to_groups == ["leads", "support"]
    assert sorted(ProfileGroupAccess.objects.filter(profile=built).values_list("group_name", flat=True)) == [
        "leads",
        "support",
    ]
    revision = ProfileRevision.objects.get(profile_id_at_write=built.pk, version=2)
    assert (revision.source, revision.document["visible_to_groups"]) == ("admin", ["leads", "support"])


@pytest.mark.parametrize(
    ("stack", "message"),
    [
        ([{"slug": "built"}], "stack[0]: stacking adm/built makes a cycle"),
        ([{"slug": "nope"}], "stack[0]: layer adm/nope not found"),
        ([{"slug": "base", "version": "x"}], "stack[0].version"),
    ],
)
def test_a_bad_stack_is_an_error_on_the_stack_field_and_nothing_is_written(admin_client, layered, stack, message):
    url = change_url("built")
    response = admin_client.post(url, form_data(admin_client, url, stack=json.dumps(stack)))
    assert response.status_code == 200
    errors = response.context["adminform"].form.errors
    assert any(message in error for error in errors["stack"]), errors
    assert Profile.objects.get(registry__slug="adm", slug="built").version == 1


def test_restricting_the_registry_default_in_the_admin_is_refused(admin_client, layered):
    url = change_url("base")  # the first profile: the default
    response = admin_client.post(url, form_data(admin_client, url, visible_to_groups="support"))
    assert response.status_code == 200
    assert "visible_to_groups" in response.context["adminform"].form.errors
    assert Profile.objects.get(registry__slug="adm", slug="base").visible_to_groups == []


def test_a_staff_viewer_without_the_change_permission_does_not_see_restricted_profiles(layered):
    services.profile_update(registry_slug="adm", slug="built", changes={"visible_to_groups": ["support"]})
    user = get_user_model().objects.create_user("viewer", password="pw", is_staff=True)
    user.user_permissions.add(Permission.objects.get(codename="view_profile"))
    client = Client()
    client.force_login(user)
    page = client.get(reverse("admin:profiles_profile_changelist")).content.decode()
    assert "built" not in page and "base" in page
    assert client.get(change_url("built")).status_code == 302  # the admin's "does not exist" redirect
