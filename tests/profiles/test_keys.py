"""API keys over REST (#20, point 1): `POST /api/keys` shows the secret once and stores only its hash,
`GET` lists the caller's keys (staff: `?all=1`) without it, `DELETE` revokes, `POST …/rotate` replaces
the secret; bad bodies are 400 with the field path; another user's key is a 404; every step is in the
audit log, never the secret. How a key is used is in tests/chat/test_gateway_keys.py."""

from __future__ import annotations

import json

import pytest

from profiles.models import ApiKey, AuditEvent
from profiles.timestamps import now_ms

from .conftest import client_for
from .factories import UserFactory
from .support import error_of

pytestmark = pytest.mark.django_db


@pytest.fixture
def owner():
    return UserFactory(username="owner")


def make(api, **body):
    body.setdefault("name", "ci")
    body.setdefault("scopes", ["*"])
    return api.post("/api/keys", body, format="json")


def test_a_new_key_is_shown_once_and_stored_only_as_a_hash(owner):
    api = client_for(owner)

    made = make(api, name="deploy bot", scopes=["analyst", "inventory/default@production"], rpm=60, tpm=10_000)

    assert made.status_code == 201, made.json()
    body = made.json()
    secret = body.pop("key")
    assert secret.startswith("sk-") and len(secret) > 40
    assert body["prefix"] == secret[:10] and body["status"] == "active" and body["owner"] == "owner"
    assert (body["scopes"], body["rpm"], body["tpm"]) == (["analyst", "inventory/default@production"], 60, 10_000)
    stored = ApiKey.objects.get(pk=body["id"])
    assert secret not in json.dumps([stored.digest, stored.prefix, stored.name, stored.scopes])
    listed = api.get("/api/keys").json()
    assert [k["id"] for k in listed] == [body["id"]] and "key" not in listed[0]


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"scopes": []}, "scopes"),
        ({"scopes": ["analyst", "no/such/thing"]}, "scopes[1]"),
        ({"scopes": ["analyst@3"]}, "scopes[0]"),
        ({"scopes": ["Bad Slug!"]}, "scopes[0]"),
        ({"name": ""}, "name"),
        ({"expires_at_ms": 1}, "expires_at_ms"),
        ({"rpm": 0}, "rpm"),
        ({"budget": 5}, "budget"),
    ],
)
def test_a_bad_key_is_refused_on_its_field(owner, body, field):
    response = make(client_for(owner), **body)

    assert response.status_code == 400, response.json()
    assert error_of(response)["field"] == field
    assert ApiKey.objects.count() == 0


def test_a_key_expires_when_it_says(owner):
    later = now_ms() + 3_600_000
    body = make(client_for(owner), expires_at_ms=later).json()

    ApiKey.objects.filter(pk=body["id"]).update(expires_at_ms=now_ms() - 1)

    assert body["expires_at_ms"] == later
    assert client_for(owner).get("/api/keys").json()[0]["status"] == "expired"


def test_rotate_gives_a_new_secret_and_revoke_keeps_the_key_listed(owner):
    api = client_for(owner)
    made = make(api).json()

    rotated = api.post(f"/api/keys/{made['id']}/rotate")
    revoked = api.delete(f"/api/keys/{made['id']}")
    again = api.delete(f"/api/keys/{made['id']}")
    rotate_revoked = api.post(f"/api/keys/{made['id']}/rotate")

    assert rotated.status_code == 200 and rotated.json()["key"] != made["key"]
    assert rotated.json()["id"] == made["id"] and rotated.json()["rotated_at_ms"] is not None
    assert (revoked.status_code, again.status_code) == (204, 204)
    assert rotate_revoked.status_code == 409
    assert api.get("/api/keys").json()[0]["status"] == "revoked"


def test_another_users_key_is_a_404_and_staff_see_every_key(owner):
    made = make(client_for(owner)).json()
    stranger = client_for(UserFactory(username="stranger"))
    staff = client_for(UserFactory(username="ops", is_staff=True))
    make(staff, name="ops key")

    assert stranger.delete(f"/api/keys/{made['id']}").status_code == 404
    assert stranger.post(f"/api/keys/{made['id']}/rotate").status_code == 404
    assert stranger.get("/api/keys?all=1").json() == []
    assert {k["owner"] for k in staff.get("/api/keys?all=1").json()} == {"owner", "ops"}
    assert [k["owner"] for k in staff.get("/api/keys").json()] == ["ops"]
    assert ApiKey.objects.get(pk=made["id"]).revoked_at_ms is None


def test_making_rotating_and_revoking_are_audited_without_the_secret(owner):
    api = client_for(owner)
    made = make(api, scopes=["analyst"]).json()
    rotated = api.post(f"/api/keys/{made['id']}/rotate").json()
    api.delete(f"/api/keys/{made['id']}")

    events = list(AuditEvent.objects.filter(object_type="key").order_by("id"))

    assert [e.action for e in events] == ["key.created", "key.rotated", "key.revoked"]
    assert {e.actor_username for e in events} == {"owner"}
    assert events[0].changes["scopes"] == ["analyst"] and events[0].changes["id"] == made["id"]
    text = json.dumps([e.changes for e in events])
    assert made["key"] not in text and rotated["key"] not in text


def test_anonymous_callers_get_401(client):
    assert client.get("/api/keys").status_code in (401, 403)


def test_the_admin_lists_keys_without_secrets_and_revokes_them(owner, client):
    made = make(client_for(owner), name="deploy bot").json()
    root = UserFactory(username="root", is_superuser=True, is_staff=True)
    client.force_login(root)

    page = client.get("/admin/profiles/apikey/")
    revoked = client.post(
        "/admin/profiles/apikey/", {"action": "revoke", "_selected_action": [made["id"]]}, follow=True
    )

    assert page.status_code == 200 and "deploy bot" in page.content.decode()
    assert made["key"] not in page.content.decode() and made["prefix"] in page.content.decode()
    assert "revoked" in revoked.content.decode()
    assert ApiKey.objects.get(pk=made["id"]).revoked_at_ms is not None
    assert AuditEvent.objects.filter(action="key.revoked", actor_username="root").count() == 1
