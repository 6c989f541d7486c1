"""Rollouts on a label (#19, point 2), through both mounts: `PUT …/labels/{name}/rollout` splits the
label's traffic between versions (changed in place while active), `GET` shows it with each arm's stats,
`DELETE` ends it, and moving or removing the label ends it too. The body is checked with field paths; the
permission is the label's (promotion on a protected label, an approved request where approvals are
required). Every step is in the label's history, the audit log and the webhook outbox; the admin lists
rollouts and ends them through the service."""

from __future__ import annotations

import pytest
from rest_framework.test import APIClient

from profiles import services
from profiles.models import AuditEvent, LabelRollout, WebhookDelivery

from .conftest import client_for
from .factories import EditorFactory, UserFactory, join
from .support import error_of

pytestmark = pytest.mark.django_db
PROMOTER_PERMS = ["profiles.change_profile", "profiles.promote_profile"]
SPLIT = {"arms": [{"version": 1, "weight": 90}, {"version": 2, "weight": 10}]}


@pytest.fixture
def labelled(seeded, mount):
    """The mount's default profile with v2, and labels `staging` and `production` on v1."""
    registry, slug = mount.registry, mount.default_profile
    services.profile_update(registry_slug=registry, slug=slug, changes={"description": "v2"}, source="import")
    for name in ("staging", "production"):
        services.label_set(registry_slug=registry, slug=slug, name=name, version=1, source="import")
    return mount


@pytest.fixture
def promoter():
    return EditorFactory(username="promoter", perms=PROMOTER_PERMS)


@pytest.fixture
def api(promoter) -> APIClient:
    return client_for(promoter)


def label_url(mount, name: str = "staging", suffix: str = "") -> str:
    return mount.url(f"/profiles/{mount.default_profile}/labels/{name}{suffix}")


def rollout_url(mount, name: str = "staging") -> str:
    return label_url(mount, name, "/rollout")


def history(api: APIClient, mount, name: str = "staging") -> list[dict]:
    response = api.get(label_url(mount, name, "/history"))
    assert response.status_code == 200, response.json()
    return response.json()


def rollout_audit(mount) -> list[tuple[str, str]]:
    events = AuditEvent.objects.filter(registry=mount.registry, object_type="rollout").order_by("id")
    return list(events.values_list("action", "actor_username"))


def test_a_rollout_splits_the_label_and_reads_back_with_empty_arm_stats(labelled, api):
    assert api.get(rollout_url(labelled)).status_code == 404

    started = api.put(rollout_url(labelled), SPLIT, format="json")

    assert started.status_code == 200, started.json()
    body = started.json()
    assert {k: body[k] for k in ("label", "label_version", "status", "sticky", "guard", "halted_reason", "by")} == {
        "label": "staging",
        "label_version": 1,
        "status": "active",
        "sticky": "user",
        "guard": {},
        "halted_reason": None,
        "by": "promoter",
    }
    assert [(a["version"], a["weight"]) for a in body["arms"]] == [(1, 90), (2, 10)]
    for arm in body["arms"]:
        assert {
            k: arm["stats"][k] for k in ("turns", "completed", "failed", "thumbs_up", "thumbs_down")
        } == dict.fromkeys(("turns", "completed", "failed", "thumbs_up", "thumbs_down"), 0)
        assert arm["stats"]["latency_ms_p95"] is None
    assert body["ended_at_ms"] is None and body["started_at_ms"] == body["updated_at_ms"] > 0
    assert api.get(rollout_url(labelled)).json() == body
    assert LabelRollout.objects.get(pk=body["id"]).status == "active"


def test_a_rollout_needs_an_existing_label(labelled, api):
    response = api.put(rollout_url(labelled, "canary"), SPLIT, format="json")

    assert response.status_code == 404
    assert error_of(response)["field"] == "name"
    assert not LabelRollout.objects.exists()


def test_a_second_put_changes_the_active_rollout_in_place(labelled, api):
    first = api.put(rollout_url(labelled), SPLIT, format="json").json()
    change = {
        "arms": [{"version": 1, "weight": 50}, {"version": 2, "weight": 50}],
        "sticky": "conversation",
        "guard": {"max_failure_rate": 0.2, "min_turns": 20},
    }

    changed = api.put(rollout_url(labelled), change, format="json")

    assert changed.status_code == 200, changed.json()
    body = changed.json()
    assert body["id"] == first["id"] and body["status"] == "active"
    assert [(a["version"], a["weight"]) for a in body["arms"]] == [(1, 50), (2, 50)]
    assert (body["sticky"], body["guard"]) == ("conversation", {"max_failure_rate": 0.2, "min_turns": 20})
    assert LabelRollout.objects.count() == 1
    assert rollout_audit(labelled) == [("rollout.started", "promoter"), ("rollout.changed", "promoter")]
    steps = [h["rollout"] for h in history(api, labelled)[:2]]
    assert [(s["event"], s["id"], s["sticky"]) for s in steps] == [
        ("changed", first["id"], "conversation"),
        ("started", first["id"], "user"),
    ]
    assert steps[0]["arms"] == change["arms"] and steps[1]["arms"] == SPLIT["arms"]


def test_deleting_the_rollout_ends_it_once(labelled, api):
    started = api.put(rollout_url(labelled), SPLIT, format="json").json()

    ended = api.delete(rollout_url(labelled))

    assert ended.status_code == 204
    shown = api.get(rollout_url(labelled))
    assert shown.status_code == 200
    assert (shown.json()["id"], shown.json()["status"]) == (started["id"], "ended")
    assert shown.json()["ended_at_ms"] is not None
    again = api.delete(rollout_url(labelled))
    assert again.status_code == 404 and error_of(again)["field"] == "name"
    assert rollout_audit(labelled) == [("rollout.started", "promoter"), ("rollout.ended", "promoter")]
    latest = history(api, labelled)[0]
    assert (latest["from_version"], latest["to_version"]) == (1, 1)
    assert (latest["rollout"]["event"], latest["rollout"]["id"]) == ("ended", started["id"])


def test_moving_the_label_ends_its_rollout(labelled, api):
    started = api.put(rollout_url(labelled), SPLIT, format="json").json()

    moved = api.put(label_url(labelled), {"version": 2}, format="json")

    assert moved.status_code in (200, 201), moved.json()
    shown = api.get(rollout_url(labelled)).json()
    assert (shown["id"], shown["status"], shown["label_version"]) == (started["id"], "ended", 2)
    move, ended, begun = history(api, labelled)[:3]
    assert (move["from_version"], move["to_version"], move["rollout"]) == (1, 2, None)
    assert (ended["from_version"], ended["to_version"], ended["rollout"]["event"]) == (1, 1, "ended")
    assert (begun["from_version"], begun["to_version"], begun["rollout"]["event"]) == (1, 1, "started")
    assert rollout_audit(labelled)[-1] == ("rollout.ended", "promoter")


def test_removing_the_label_ends_its_rollout(labelled, api):
    started = api.put(rollout_url(labelled), SPLIT, format="json").json()

    removed = api.delete(label_url(labelled))

    assert removed.status_code == 204
    assert LabelRollout.objects.get(pk=started["id"]).status == "ended"
    assert rollout_audit(labelled)[-1] == ("rollout.ended", "promoter")


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"arms": [{"version": 1, "weight": 90}, {"version": 2, "weight": 20}]}, "arms"),
        ({"arms": [{"version": 1, "weight": 101}]}, "arms[0].weight"),
        ({"arms": [{"version": 1, "weight": 100}, {"version": 2, "weight": -1}]}, "arms[1].weight"),
        ({"arms": [{"version": 1, "weight": 98.5}, {"version": 2, "weight": 1.5}]}, "arms[0].weight"),
        ({"arms": [{"version": 1, "weight": 90}, {"version": 99, "weight": 10}]}, "arms[1].version"),
        ({"arms": [{"version": 1, "weight": 90}, {"version": 1, "weight": 10}]}, "arms[1].version"),
        ({**SPLIT, "percent": 10}, "percent"),
        ({**SPLIT, "sticky": "session"}, "sticky"),
        ({**SPLIT, "guard": {"max_failure_rate": 0.1}}, "guard.min_turns"),
        ({**SPLIT, "guard": {"max_failure_rate": 1.5, "min_turns": 10}}, "guard.max_failure_rate"),
        ({**SPLIT, "guard": {"max_errors": 3, "min_turns": 10}}, "guard.max_errors"),
    ],
)
def test_a_bad_rollout_is_refused_on_its_field(labelled, api, body, field):
    response = api.put(rollout_url(labelled), body, format="json")

    assert response.status_code == 400, response.json()
    assert error_of(response)["field"] == field
    assert not LabelRollout.objects.exists()


def test_a_reader_cannot_start_or_end_a_rollout(labelled, api):
    reader = client_for(UserFactory(username="reader"))

    refused = reader.put(rollout_url(labelled), SPLIT, format="json")
    api.put(rollout_url(labelled), SPLIT, format="json")
    not_ended = reader.delete(rollout_url(labelled))

    assert refused.status_code == not_ended.status_code == 403
    assert LabelRollout.objects.get().status == "active"


def test_a_protected_label_needs_promotion_for_a_rollout(labelled, api):
    editor = client_for(EditorFactory(username="plain-editor", perms=["profiles.change_profile"]))

    refused = editor.put(rollout_url(labelled, "production"), SPLIT, format="json")
    on_staging = editor.put(rollout_url(labelled), SPLIT, format="json")
    promoted = api.put(rollout_url(labelled, "production"), SPLIT, format="json")
    not_ended = editor.delete(rollout_url(labelled, "production"))

    assert refused.status_code == 403 and error_of(refused)["field"] == "name"
    assert on_staging.status_code == 200, on_staging.json()
    assert promoted.status_code == 200, promoted.json()
    assert not_ended.status_code == 403
    assert api.get(rollout_url(labelled, "production")).json()["status"] == "active"


def test_where_approvals_are_required_a_rollout_starts_through_an_approved_request(labelled, api):
    services.registry_update(slug=labelled.registry, required_approvals=2, approver_groups=["release"], source="import")
    root = client_for(UserFactory(username="root", is_superuser=True, is_staff=True))
    approvers = [UserFactory(username=f"approver{n}") for n in range(2)]
    for user in approvers:
        join(user, "release")

    direct = root.put(rollout_url(labelled, "production"), SPLIT, format="json")
    assert direct.status_code == 409 and error_of(direct)["code"] == "approval_required"
    requests_url = label_url(labelled, "production", "/requests")
    made = api.post(requests_url, {"rollout": SPLIT, "note": "canary at 10%"}, format="json")
    assert made.status_code == 201, made.json()
    request = made.json()
    assert (request["version"], request["rollout"]["arms"], request["status"]) == (None, SPLIT["arms"], "pending")
    for approver in approvers:
        decided = client_for(approver).post(f"{requests_url}/{request['id']}/approve")
        assert decided.status_code == 200, decided.json()

    assert decided.json()["status"] == "applied"
    shown = api.get(rollout_url(labelled, "production")).json()
    assert (shown["status"], [a["weight"] for a in shown["arms"]]) == ("active", [90, 10])
    step = history(api, labelled, "production")[0]
    assert (step["rollout"]["event"], step["request"], step["by"]) == ("started", request["id"], "approver1")
    # Ending it serves nothing new: the promoter ends it without a request.
    assert api.delete(rollout_url(labelled, "production")).status_code == 204


def test_rollout_steps_are_queued_for_the_registrys_webhooks(labelled, api, settings):
    settings.WEBHOOK_ALLOWED_HOSTS = ["127.0.0.1"]
    registrar = client_for(
        EditorFactory(username="registrar", perms=["profiles.change_registry", "profiles.change_profile"])
    )
    hooks_url = labelled.url(f"/registries/{labelled.registry}/webhooks")
    made = registrar.post(
        hooks_url, {"url": "http://127.0.0.1:9/hook", "events": ["rollout.changed", "rollout.halted"]}, format="json"
    )
    assert made.status_code == 201, made.json()

    api.put(rollout_url(labelled), SPLIT, format="json")
    api.put(rollout_url(labelled), {**SPLIT, "sticky": "conversation"}, format="json")
    api.delete(rollout_url(labelled))

    deliveries = WebhookDelivery.objects.order_by("id")
    assert [d.event for d in deliveries] == ["rollout.changed"] * 3
    bodies = [d.body for d in deliveries]
    assert [b["rollout"]["event"] for b in bodies] == ["started", "changed", "ended"]
    for body in bodies:
        assert (body["event"], body["label"], body["version"], body["actor"]) == (
            "rollout.changed",
            "staging",
            1,
            "promoter",
        )


def test_the_guard_check_leaves_a_rollout_without_guard_or_turns_alone(labelled, api):
    plain = api.put(rollout_url(labelled), SPLIT, format="json").json()
    guard = {"max_failure_rate": 0.1, "min_turns": 5}
    guarded = api.put(rollout_url(labelled, "production"), {**SPLIT, "guard": guard}, format="json").json()
    steps = [len(history(api, labelled, name)) for name in ("staging", "production")]

    assert services.rollout_guard_check(rollout_id=plain["id"]) is None
    assert services.rollout_guard_check(rollout_id=guarded["id"]) is None

    assert api.get(rollout_url(labelled)).json() == plain
    assert api.get(rollout_url(labelled, "production")).json() == guarded
    assert [len(history(api, labelled, name)) for name in ("staging", "production")] == steps


def test_the_admin_lists_rollouts_with_their_arms_and_ends_them(labelled, api, client):
    started = api.put(rollout_url(labelled), SPLIT, format="json").json()
    client.force_login(UserFactory(username="root", is_superuser=True, is_staff=True))

    listing = client.get("/admin/profiles/labelrollout/")
    page = client.get(f"/admin/profiles/labelrollout/{started['id']}/change/")

    assert listing.status_code == page.status_code == 200
    assert "v1 90%" in listing.content.decode() and "v2 10%" in listing.content.decode()
    assert 'class="arm-stats"' in page.content.decode() and "thumbs down" in page.content.decode()
    ended = client.post(
        "/admin/profiles/labelrollout/", {"action": "end", "_selected_action": [str(started["id"])]}, follow=True
    )
    assert ended.status_code == 200
    assert [m.message for m in ended.context["messages"]] == [f"rollout {started['id']} of 'staging' ended"]
    assert api.get(rollout_url(labelled)).json()["status"] == "ended"
    assert rollout_audit(labelled)[-1] == ("rollout.ended", "root")
