"""The audit log: every write to registries, profiles and labels appends an entry in its own transaction
(through both mounts, the admin's services and the importer), refused writes append none, and only staff
with `profiles.view_auditevent` read it, filtered, a cursor page at a time or as JSON lines. Nothing
changes or deletes an entry."""

from __future__ import annotations

import json

import pytest
from django.contrib.auth.models import Permission
from rest_framework.test import APIClient

from profiles import services
from profiles.models import AuditEvent

from .conftest import _fresh
from .factories import EditorFactory, UserFactory
from .support import error_of

pytestmark = pytest.mark.django_db


@pytest.fixture
def auditor(db):
    """Staff with profiles.view_auditevent (and nothing else)."""
    user = UserFactory(username="auditor", is_staff=True)
    user.user_permissions.add(Permission.objects.get(codename="view_auditevent"))
    return _fresh(user)


@pytest.fixture
def api_auditor(auditor) -> APIClient:
    client = APIClient()
    client.force_authenticate(user=auditor)
    return client


def entries(**filters) -> list[AuditEvent]:
    return list(AuditEvent.objects.filter(**filters).order_by("id"))


def test_each_write_through_a_mount_appends_an_entry_with_the_actor_the_object_and_the_change(
    seeded, api_editor, editor, mount
):
    before = AuditEvent.objects.count()
    created = api_editor.post(
        mount.url("/profiles"),
        {"slug": "audited", "runtime": {"system_prompt": "Be brief."}},
        format="json",
        REMOTE_ADDR="203.0.113.7",
    )
    assert created.status_code == 201, created.json()
    patched = api_editor.patch(
        mount.url("/profiles/audited"),
        {"runtime": {"system_prompt": "Be terse."}},
        format="json",
        HTTP_IF_MATCH='"1"',
    )
    assert patched.status_code == 200, patched.json()
    moved = api_editor.put(mount.url("/profiles/audited/labels/staging"), {"version": 1}, format="json")
    assert moved.status_code in (200, 201), moved.json()
    removed = api_editor.delete(mount.url("/profiles/audited/labels/staging"))
    assert removed.status_code == 204

    new = entries(id__gt=0)[before:]
    assert [e.action for e in new] == ["profile.created", "profile.updated", "label.moved", "label.removed"]
    first = new[0]
    assert (first.actor_type, first.actor_id, first.actor_username) == ("user", editor.pk, "editor")
    assert (first.object_type, first.registry, first.slug) == ("profile", mount.registry, "audited")
    assert first.ip == "203.0.113.7"
    assert first.changes["version"] == 1
    assert {"op": "add", "path": "runtime.system_prompt", "to": "Be brief."} in first.changes["diff"]
    assert new[1].changes == {
        "version": 2,
        "diff": [{"op": "change", "path": "runtime.system_prompt", "from": "Be brief.", "to": "Be terse."}],
    }
    assert new[2].changes == {"label": "staging", "from_version": None, "to_version": 1}
    assert new[3].changes == {"label": "staging", "from_version": 1, "to_version": None}


def test_a_registry_change_records_each_field_from_and_to(seeded, mount):
    client = APIClient()
    client.force_authenticate(_fresh(EditorFactory(username="registrar", perms=["profiles.change_registry"])))
    response = client.patch(
        mount.url(f"/registries/{mount.registry}"),
        {"description": "Audited.", "protected_labels": ["production", "stable"]},
        format="json",
    )
    assert response.status_code == 200, response.json()

    (entry,) = entries(action="registry.updated", registry=mount.registry)
    assert entry.changes["description"]["to"] == "Audited."
    assert entry.changes["protected_labels"] == {"from": ["production"], "to": ["production", "stable"]}
    assert entry.object_type == "registry" and entry.slug == ""


def test_a_refused_write_appends_nothing(seeded, api_editor, mount):
    before = AuditEvent.objects.count()
    stale = api_editor.patch(
        mount.url(f"/profiles/{mount.default_profile}"),
        {"description": "x", "expected_version": 99},
        format="json",
    )
    invalid = api_editor.post(mount.url("/profiles"), {"slug": "bad", "runtime": {"tools": ["nope"]}}, format="json")

    assert stale.status_code == 409 and invalid.status_code == 400
    assert AuditEvent.objects.count() == before


def test_a_write_that_fails_after_its_entry_leaves_neither(seeded, editor, monkeypatch):
    """The entry is in the write's transaction: a failure after it rolls both back."""
    from profiles.services import profiles as services_module

    def failing(*args, **kwargs):
        raise RuntimeError("the registry version could not be bumped")

    before = AuditEvent.objects.count()
    monkeypatch.setattr(services_module, "_bump_registry", failing)  # profile_update's, after the entry
    with pytest.raises(RuntimeError):
        services.profile_update(registry_slug="default", slug="agent", changes={"description": "never"}, actor=editor)
    assert AuditEvent.objects.count() == before


def test_the_importer_writes_as_the_system(seeded):
    entry = AuditEvent.objects.filter(action="profile.created").order_by("id").first()

    assert entry is not None
    assert (entry.actor_type, entry.actor_id, entry.actor_username) == ("system", None, "seed")


def test_the_admin_writes_as_its_user(seeded, client):
    admin = UserFactory(username="root", is_staff=True, is_superuser=True)
    client.force_login(admin)
    registry = client.get("/admin/profiles/registry/add/")
    assert registry.status_code == 200
    response = client.post(
        "/admin/profiles/registry/add/",
        {"slug": "from-admin", "display_name": "From the admin", "description": "", "protected_labels": "production"},
    )
    assert response.status_code == 302, response.content[:2000]

    (entry,) = entries(action="registry.created", registry="from-admin")
    assert (entry.actor_type, entry.actor_username) == ("user", "root")
    assert entry.ip == "127.0.0.1"


@pytest.mark.parametrize("who", ["anonymous", "reader", "staff_without_permission", "editor"])
def test_only_staff_with_the_view_permission_read_it(seeded, who, editor):
    client = APIClient()
    if who == "reader":
        client.force_authenticate(UserFactory(username="plain"))
    elif who == "staff_without_permission":
        client.force_authenticate(UserFactory(username="staffer", is_staff=True))
    elif who == "editor":
        client.force_authenticate(editor)

    response = client.get("/api/audit")

    assert response.status_code == (401 if who == "anonymous" else 403)
    if who != "anonymous":
        assert "profiles.view_auditevent" in error_of(response)["message"]


def test_the_log_is_newest_first_a_cursor_page_at_a_time_and_filtered(seeded, api_auditor, api_editor):
    for n in range(3):
        services.label_set(
            registry_slug="default", slug="agent", name=f"lane-{n}", version=1, actor=EditorFactory(username=f"e{n}")
        )

    page = api_auditor.get("/api/audit", {"action": "label.moved", "page_size": 2})
    assert page.status_code == 200, page.json()
    body = page.json()
    assert [e["changes"]["label"] for e in body["results"]] == ["lane-2", "lane-1"]
    assert body["results"][0]["actor"] == {
        "type": "user",
        "id": body["results"][0]["actor"]["id"],
        "username": "e2",
    }
    assert body["results"][0]["object"] == {"type": "label", "registry": "default", "slug": "agent"}
    rest = api_auditor.get(body["next"]).json()
    assert [e["changes"]["label"] for e in rest["results"]] == ["lane-0"] and rest["next"] is None

    assert [e["actor"]["username"] for e in api_auditor.get("/api/audit", {"actor": "e1"}).json()["results"]] == ["e1"]
    latest = AuditEvent.objects.order_by("-id").first()
    since = api_auditor.get("/api/audit", {"since_ms": latest.at_ms + 1}).json()
    assert since["results"] == []
    other = api_auditor.get("/api/audit", {"registry": "inventory", "action": "label.moved"}).json()
    assert other["results"] == []


def test_a_bad_filter_is_a_400_on_its_parameter(seeded, api_auditor):
    response = api_auditor.get("/api/audit", {"since_ms": "yesterday"})

    assert response.status_code == 400
    assert error_of(response)["field"] == "since_ms"


def test_the_export_is_every_matching_entry_oldest_first_as_json_lines(seeded, api_auditor):
    response = api_auditor.get("/api/audit/export", {"registry": "default"})

    assert response.status_code == 200
    assert response["Content-Type"] == "application/x-ndjson"
    lines = b"".join(response.streaming_content).decode().splitlines()
    rows = [json.loads(line) for line in lines]
    assert len(rows) == AuditEvent.objects.filter(registry="default").count() > 0
    assert [r["id"] for r in rows] == sorted(r["id"] for r in rows)
    assert {r["object"]["registry"] for r in rows} == {"default"}


@pytest.mark.parametrize("method", ["post", "put", "patch", "delete"])
def test_no_route_changes_or_deletes_an_entry(seeded, api_auditor, method):
    for path in ("/api/audit", "/api/audit/export"):
        response = getattr(api_auditor, method)(path, {}, format="json")
        assert response.status_code == 405, (path, response.status_code)


def test_the_model_refuses_changes_and_deletion(seeded):
    entry = AuditEvent.objects.first()

    entry.action = "profile.forged"
    with pytest.raises(ValueError):
        entry.save()
    with pytest.raises(ValueError):
        entry.delete()


def test_the_admin_shows_entries_and_offers_no_change_or_delete(seeded, client):
    admin = UserFactory(username="root", is_staff=True, is_superuser=True)
    client.force_login(admin)
    entry = AuditEvent.objects.first()

    listing = client.get("/admin/profiles/auditevent/")
    detail = client.get(f"/admin/profiles/auditevent/{entry.pk}/change/")
    delete = client.post(f"/admin/profiles/auditevent/{entry.pk}/delete/", {"post": "yes"})

    assert listing.status_code == 200 and entry.action in listing.content.decode()
    assert detail.status_code == 200 and b"Save" not in detail.content
    assert delete.status_code == 403
    assert AuditEvent.objects.filter(pk=entry.pk).exists()
