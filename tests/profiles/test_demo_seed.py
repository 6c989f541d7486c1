"""The demo seed (`manage.py seed_demo`): the shared registries, then the demo's additions in the same
YAML format (config/seed/groups.yaml): the `support` group with its own assistant and default, and
assistants built on the shared `default` profile. Running it again changes nothing."""

from __future__ import annotations

import io

import pytest
from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management import call_command
from rest_framework.test import APIClient

from profiles import selectors
from profiles.models import Profile, Registry
from profiles.yamlio import import_file

pytestmark = pytest.mark.django_db

DEMO_FILE = settings.BASE_DIR / "config" / "seed" / "groups.yaml"


def seed() -> str:
    out = io.StringIO()
    call_command("seed_demo", stdout=out)
    return out.getvalue()


def state() -> list:
    return sorted(Profile.objects.values_list("registry__slug", "slug", "version")) + sorted(
        Registry.objects.values_list("slug", "version")
    )


def client_for(username: str) -> APIClient:
    client = APIClient()
    client.force_authenticate(get_user_model().objects.get(username=username))
    return client


def test_the_demo_gives_the_support_team_its_own_assistant_and_default():
    seed()
    registry = Registry.objects.get(slug="default")
    assert registry.group_defaults == [{"group": "support", "profile": "support-desk"}]
    desk = Profile.objects.get(registry=registry, slug="support-desk")
    assert desk.visible_to_groups == ["support"]
    assert list(get_user_model().objects.get(username="support").groups.values_list("name", flat=True)) == ["support"]

    support, demo = client_for("support"), client_for("demo")
    current = support.get("/api/chat/profile").json()
    assert (current["slug"], current["source"], current["group"]) == ("support-desk", "group_default", "support")
    assert demo.get("/api/chat/profile").json()["slug"] == "default"
    assert "support-desk" not in [p["slug"] for p in demo.get("/api/chat/profiles").json()]
    assert demo.get("/api/chat/profiles/support-desk").status_code == 404


def test_the_demo_assistants_are_built_on_the_shared_default_and_say_where_each_field_came_from():
    seed()
    for slug in ("support-desk", "quick-math"):
        result = selectors.profile_resolve(registry_slug="default", profile_slug=slug)
        assert [(layer["slug"], layer["version"]) for layer in result.lineage] == [("default", 1), (slug, 1)]
        assert result.effective_runtime["tools"]
    quick = selectors.profile_resolve(registry_slug="default", profile_slug="quick-math")
    # It sets no prompt of its own: the base's applies, and says so.
    assert quick.provenance["runtime.system_prompt"]["layer"]["slug"] == "default"
    assert quick.provenance["runtime.tools"]["layer"]["slug"] == "quick-math"


def test_seeding_again_changes_nothing():
    seed()
    before = state()
    output = seed()
    assert state() == before
    assert "groups.yaml): 0 created, 0 updated, 2 unchanged" in output
    assert "user support: exists" in output


def test_the_demo_file_only_adds_to_the_shared_seed():
    """Importing it again (as `profiles_import` would) creates nothing more."""
    seed()
    report = import_file(DEMO_FILE, source="import")
    assert (report.created, report.changes) == ([], False)
