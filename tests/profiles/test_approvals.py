"""Approvals (#19, point 4), through both mounts: a registry with `required_approvals: n` refuses direct
moves and removals of its protected labels to everyone (superusers included) with 409
`approval_required`; a request approved by n approvers (members of `approver_groups` or superusers, never
its author) moves the label, recorded in its history with the request id; a request whose label moved
meanwhile is stale; weakening the approvals needs a superuser; the settings round-trip through REST and
YAML; every step is in the audit log."""

from __future__ import annotations

import pytest

from profiles import services
from profiles.models import AuditEvent, LabelRequest, ProfileLabel, Registry
from profiles.yamlio import export_data, export_text, import_text

from .conftest import client_for
from .factories import EditorFactory, UserFactory, join
from .support import error_of

pytestmark = pytest.mark.django_db
PROMOTER_PERMS = ["profiles.change_profile", "profiles.promote_profile"]


@pytest.fixture
def guarded(seeded, mount):
    """The mount's registry: production protected, two approvals from the `release` group; `agent` has v2
    and production on v1 (made before the rule, as an import would)."""
    registry = mount.registry
    services.profile_update(
        registry_slug=registry, slug=mount.default_profile, changes={"description": "v2"}, source="import"
    )
    services.label_set(
        registry_slug=registry, slug=mount.default_profile, name="production", version=1, source="import"
    )
    services.registry_update(slug=registry, required_approvals=2, approver_groups=["release"], source="import")
    return mount


@pytest.fixture
def author():
    return EditorFactory(username="author", perms=PROMOTER_PERMS)


@pytest.fixture
def approvers():
    users = [UserFactory(username=f"approver{n}") for n in range(3)]
    for user in users:
        join(user, "release")
    return users


def requests_url(mount, suffix: str = "") -> str:
    return mount.url(f"/profiles/{mount.default_profile}/labels/production/requests{suffix}")


def label_version(mount) -> int | None:
    return (
        ProfileLabel.objects.filter(
            profile__registry__slug=mount.registry, profile__slug=mount.default_profile, name="production"
        )
        .values_list("version", flat=True)
        .first()
    )


def test_a_protected_label_moves_for_nobody_directly(guarded, author):
    root = UserFactory(username="root", is_superuser=True, is_staff=True)
    for user in (author, root):
        api = client_for(user)
        url = guarded.url(f"/profiles/{guarded.default_profile}/labels/production")
        moved = api.put(url, {"version": 2}, format="json")
        removed = api.delete(url)
        for response in (moved, removed):
            assert response.status_code == 409, response.json()
            assert error_of(response)["code"] == "approval_required"
    assert label_version(guarded) == 1
    # Other labels move as before.
    staging = client_for(author).put(
        guarded.url(f"/profiles/{guarded.default_profile}/labels/staging"), {"version": 2}, format="json"
    )
    assert staging.status_code in (200, 201), staging.json()


def test_a_profile_that_carries_a_guarded_label_is_not_deleted(guarded):
    root = client_for(UserFactory(username="root", is_superuser=True, is_staff=True))
    services.profile_create(registry_slug=guarded.registry, slug="spare", source="import")
    services.label_set(registry_slug=guarded.registry, slug="spare", name="production", version=1, source="import")

    response = root.delete(guarded.url("/profiles/spare"))

    assert response.status_code == 409 and error_of(response)["code"] == "approval_required"


def test_two_approvals_move_the_label_and_the_history_names_the_request(guarded, author, approvers):
    made = client_for(author).post(requests_url(guarded), {"version": 2, "note": "canary was fine"}, format="json")
    assert made.status_code == 201, made.json()
    body = made.json()
    assert {k: body[k] for k in ("status", "label", "version", "from_version", "by", "note", "approvals")} == {
        "status": "pending",
        "label": "production",
        "version": 2,
        "from_version": 1,
        "by": "author",
        "note": "canary was fine",
        "approvals": [],
    }
    first = client_for(approvers[0]).post(requests_url(guarded, f"/{body['id']}/approve"))
    assert first.status_code == 200 and first.json()["status"] == "pending"
    assert label_version(guarded) == 1

    second = client_for(approvers[1]).post(requests_url(guarded, f"/{body['id']}/approve"))

    assert second.status_code == 200, second.json()
    assert second.json()["status"] == "applied"
    assert [a["username"] for a in second.json()["approvals"]] == ["approver0", "approver1"]
    assert label_version(guarded) == 2
    history = client_for(author).get(guarded.url(f"/profiles/{guarded.default_profile}/labels/production/history"))
    assert history.json()[0] | {"at_ms": 0} == {
        "from_version": 1,
        "to_version": 2,
        "by": "approver1",
        "at_ms": 0,
        "request": body["id"],
        "rollout": None,
    }
    listed = client_for(author).get(requests_url(guarded)).json()
    assert [(r["id"], r["status"]) for r in listed] == [(body["id"], "applied")]
    actions = list(
        AuditEvent.objects.filter(registry=guarded.registry, object_type__in=["request", "label"])
        .order_by("id")
        .values_list("action", flat=True)
    )
    assert actions[-5:] == ["request.created", "request.approved", "request.approved", "label.moved", "request.applied"]


def test_the_author_cannot_approve_and_non_approvers_are_refused(guarded, author, approvers):
    made = client_for(author).post(requests_url(guarded), {"version": 2}, format="json").json()
    outsider = EditorFactory(username="outsider", perms=PROMOTER_PERMS)

    own = client_for(author).post(requests_url(guarded, f"/{made['id']}/approve"))
    other = client_for(outsider).post(requests_url(guarded, f"/{made['id']}/approve"))
    rejected_by_outsider = client_for(outsider).post(requests_url(guarded, f"/{made['id']}/reject"))

    assert own.status_code == other.status_code == rejected_by_outsider.status_code == 403
    assert "author" in error_of(own)["message"]
    assert "release" in error_of(other)["message"]
    assert LabelRequest.objects.get(pk=made["id"]).approvals == []


def test_the_same_approver_counts_once(guarded, author, approvers):
    made = client_for(author).post(requests_url(guarded), {"version": 2}, format="json").json()
    approver = client_for(approvers[0])

    approver.post(requests_url(guarded, f"/{made['id']}/approve"))
    again = approver.post(requests_url(guarded, f"/{made['id']}/approve"))

    assert again.status_code == 409
    assert label_version(guarded) == 1


def test_a_request_whose_label_moved_meanwhile_is_stale(guarded, author, approvers):
    first = client_for(author).post(requests_url(guarded), {"version": 2}, format="json").json()
    second = client_for(author).post(requests_url(guarded), {"version": 2, "note": "again"}, format="json").json()
    for approver in approvers[:2]:
        client_for(approver).post(requests_url(guarded, f"/{second['id']}/approve"))

    late = client_for(approvers[2]).post(requests_url(guarded, f"/{first['id']}/approve"))

    assert late.status_code == 409
    assert error_of(late)["code"] == "request_closed" and "stale" in error_of(late)["message"]
    assert LabelRequest.objects.get(pk=first["id"]).status == "stale"


def test_a_rejected_request_moves_nothing_and_stays_closed(guarded, author, approvers):
    made = client_for(author).post(requests_url(guarded), {"version": 2}, format="json").json()

    rejected = client_for(approvers[0]).post(requests_url(guarded, f"/{made['id']}/reject"))
    approved = client_for(approvers[1]).post(requests_url(guarded, f"/{made['id']}/approve"))

    assert rejected.status_code == 200 and rejected.json()["status"] == "rejected"
    assert approved.status_code == 409
    assert label_version(guarded) == 1


@pytest.mark.parametrize(
    ("body", "field"),
    [({"version": 99}, "version"), ({"version": 1}, "version"), ({"version": 2, "extra": 1}, "extra")],
)
def test_a_bad_request_is_refused_on_its_field(guarded, author, body, field):
    response = client_for(author).post(requests_url(guarded), body, format="json")

    assert response.status_code in (400, 404, 409), response.json()
    assert error_of(response)["field"] == field
    assert not LabelRequest.objects.exists()


def test_a_label_that_needs_no_approval_takes_no_request(guarded, author):
    response = client_for(author).post(
        guarded.url(f"/profiles/{guarded.default_profile}/labels/staging/requests"), {"version": 2}, format="json"
    )

    assert response.status_code == 409
    assert "move it directly" in error_of(response)["message"]


def test_only_a_superuser_weakens_the_approvals(guarded):
    registrar = client_for(EditorFactory(username="registrar", perms=["profiles.change_registry"]))
    root = client_for(UserFactory(username="root", is_superuser=True, is_staff=True))
    url = guarded.url(f"/registries/{guarded.registry}")

    fewer = registrar.patch(url, {"required_approvals": 1}, format="json")
    others = registrar.patch(url, {"approver_groups": ["anyone"]}, format="json")
    unprotected = registrar.patch(url, {"protected_labels": []}, format="json")
    assert unprotected.status_code == 403 and error_of(unprotected)["field"] == "protected_labels"
    more = registrar.patch(url, {"required_approvals": 3}, format="json")
    by_root = root.patch(url, {"required_approvals": 0, "approver_groups": None}, format="json")

    assert fewer.status_code == others.status_code == 403
    assert error_of(fewer)["field"] == "required_approvals"
    assert more.status_code == 200 and more.json()["required_approvals"] == 3
    assert by_root.status_code == 200, by_root.json()
    assert (by_root.json()["required_approvals"], by_root.json()["approver_groups"]) == (0, [])


@pytest.mark.parametrize("value", [-1, 11, "two", True, 1.5])
def test_required_approvals_is_a_small_integer(guarded, value):
    root = client_for(UserFactory(username="root", is_superuser=True, is_staff=True))

    response = root.patch(guarded.url(f"/registries/{guarded.registry}"), {"required_approvals": value}, format="json")

    assert response.status_code == 400
    assert error_of(response)["field"] == "required_approvals"


def test_the_settings_round_trip_through_yaml(guarded):
    exported = export_data(registry=guarded.registry)["registries"][guarded.registry]
    assert (exported["required_approvals"], exported["approver_groups"]) == (2, ["release"])
    text = export_text(registry=guarded.registry)
    Registry.objects.filter(slug=guarded.registry).update(required_approvals=0, approver_groups=[])

    import_text(text, label="export.yaml", replace=True)

    registry = Registry.objects.get(slug=guarded.registry)
    assert (registry.required_approvals, registry.approver_groups) == (2, ["release"])


def test_approvers_decide_in_the_admin_through_the_same_rules(guarded, author, approvers, client):
    made = client_for(author).post(requests_url(guarded), {"version": 2}, format="json").json()
    client_for(approvers[0]).post(requests_url(guarded, f"/{made['id']}/approve"))
    root = UserFactory(username="root", is_superuser=True, is_staff=True)
    client.force_login(root)

    listing = client.get("/admin/profiles/labelrequest/")
    decided = client.post(
        "/admin/profiles/labelrequest/", {"action": "approve", "_selected_action": [made["id"]]}, follow=True
    )

    assert listing.status_code == 200 and "approver0" in listing.content.decode()
    assert [m.message for m in decided.context["messages"]] == [f"request {made['id']} approved: now applied"]
    assert label_version(guarded) == 2


def test_the_registry_admin_sets_the_approval_settings(seeded, client):
    root = UserFactory(username="root", is_superuser=True, is_staff=True)
    client.force_login(root)
    registry = Registry.objects.get(slug="default")
    page = client.get(f"/admin/profiles/registry/{registry.pk}/change/")
    form = page.context["adminform"].form
    data = {k: v for k, v in form.initial.items() if v is not None}
    data |= {
        "display_name": registry.display_name,
        "description": registry.description,
        "default_profile": registry.default_profile_id,
        "protected_labels": "production",
        "editor_groups": "",
        "group_defaults": "[]",
        "required_approvals": "2",
        "approver_groups": "release",
        "expected_version": registry.version,
    }

    response = client.post(f"/admin/profiles/registry/{registry.pk}/change/", data)

    assert response.status_code == 302, response.context["adminform"].form.errors if response.context else response
    registry.refresh_from_db()
    assert (registry.required_approvals, registry.approver_groups) == (2, ["release"])
