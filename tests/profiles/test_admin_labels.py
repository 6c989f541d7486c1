"""The admin's lifecycle page: labels set and removed through the label services (a protected one needs
the promote permission), per-version stats, the diff between any two versions, and registry label settings."""

from __future__ import annotations

import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Permission
from django.test import Client
from django.urls import reverse

from profiles import services
from profiles.models import Profile, ProfileLabel, Registry

from .test_admin import browser_data, messages_of

pytestmark = pytest.mark.django_db


@pytest.fixture
def agent(db) -> Profile:
    services.registry_create(slug="team")
    services.profile_create(registry_slug="team", slug="agent", runtime={"system_prompt": "v1"})
    services.profile_update(registry_slug="team", slug="agent", changes={"runtime": {"system_prompt": "v2"}})
    return Profile.objects.get(slug="agent")


def staff_client(*perms: str) -> Client:
    user = get_user_model().objects.create_user("staffer", password="x", is_staff=True)
    for perm in perms:
        app, codename = perm.split(".")
        user.user_permissions.add(Permission.objects.get(content_type__app_label=app, codename=codename))
    client = Client()
    client.force_login(user)
    return client


def versions_url(profile: Profile) -> str:
    return reverse("admin:profiles_profile_versions", args=[profile.pk])


def test_an_editor_without_promote_cannot_move_a_protected_label_in_the_admin(agent):
    client = staff_client("profiles.view_profile", "profiles.change_profile")
    url = reverse("admin:profiles_profile_label_set", args=[agent.pk])
    refused = client.post(url, {"name": "production", "version": "1"}, follow=True)
    assert any("profiles.promote_profile" in m for m in messages_of(refused))
    assert not ProfileLabel.objects.exists()
    client.post(url, {"name": "staging", "version": "1"})
    assert dict(ProfileLabel.objects.values_list("name", "version")) == {"staging": 1}


def test_the_admin_sets_moves_and_removes_labels_and_shows_them_on_the_versions_page(admin_client, agent):
    url = reverse("admin:profiles_profile_label_set", args=[agent.pk])
    assert admin_client.post(url, {"name": "production", "version": "1"}).status_code == 302
    page = admin_client.get(versions_url(agent))
    assert page.status_code == 200
    assert b'id="profile-labels"' in page.content and b"needs the promote permission" in page.content
    admin_client.post(url, {"name": "production", "version": "2"})
    assert ProfileLabel.objects.get(name="production").version == 2
    delete = reverse("admin:profiles_profile_label_delete", args=[agent.pk, "production"])
    admin_client.post(delete)
    assert not ProfileLabel.objects.exists()


def test_the_versions_page_shows_the_diff_between_two_versions(admin_client, agent):
    page = admin_client.get(versions_url(agent) + "?from=1&to=2")
    assert page.status_code == 200
    assert page.context["diff"] == [{"op": "change", "path": "runtime.system_prompt", "from": "v1", "to": "v2"}]
    assert b"runtime.system_prompt" in page.content
    assert [row["stats"]["turns"] for row in page.context["revisions"]] == [0, 0]


def test_registry_label_settings_are_edited_in_the_admin_through_the_service(admin_client, agent):
    registry = Registry.objects.get(slug="team")
    url = reverse("admin:profiles_registry_change", args=[registry.pk])
    data = browser_data(admin_client, url, protected_labels="production, stable", serve_label="stable")
    assert admin_client.post(url, data).status_code == 302
    registry.refresh_from_db()
    assert (registry.protected_labels, registry.serve_label) == (["production", "stable"], "stable")
    bad = admin_client.post(url, browser_data(admin_client, url, serve_label="Not a label"))
    assert bad.status_code == 200 and "serve_label" in str(bad.context["adminform"].form.errors)
