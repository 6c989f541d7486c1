"""Webhooks (#19, point 5), through both mounts and a real HTTP receiver: a registry's editors subscribe
a URL to events (the secret shown once), changes write deliveries in their own transaction, the worker's
sender (`chat.webhook_sender.deliver_due`, what its loop runs) POSTs them signed, retries errors with a
doubling pause, stops after a 2xx and gives up after the last attempt; loopback and private targets are
refused unless allowed, at creation and again at delivery."""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import json
from collections.abc import Iterator

import httpx2
import pytest
from rest_framework.test import APIClient

from chat.webhook_sender import deliver_due
from profiles import services, webhooks
from profiles.models import AuditEvent, WebhookDelivery
from profiles.timestamps import now_ms
from tests.helpers import WebhookReceiver as Receiver

from .conftest import _fresh
from .factories import EditorFactory
from .support import error_of

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def receiver(settings) -> Iterator[Receiver]:
    settings.WEBHOOK_ALLOWED_HOSTS = ["127.0.0.1"]
    with Receiver() as server:
        yield server


@pytest.fixture
def registrar():
    return _fresh(EditorFactory(username="registrar", perms=["profiles.change_registry", "profiles.change_profile"]))


@pytest.fixture
def api(registrar) -> APIClient:
    client = APIClient()
    client.force_authenticate(user=registrar)
    return client


def hooks_url(mount, suffix: str = "") -> str:
    return mount.url(f"/registries/{mount.registry}/webhooks{suffix}")


async def send_due() -> int:
    async with httpx2.AsyncClient(timeout=5) as client:
        return await deliver_due(client)


def make_due() -> None:
    """Retries are due at once (the test does not wait out the pause)."""
    WebhookDelivery.objects.filter(status="pending").update(next_attempt_at_ms=0)


def test_a_subscribed_change_is_posted_signed_with_the_secret_shown_once(seeded, api, registrar, receiver, mount):
    made = api.post(hooks_url(mount), {"url": receiver.url, "events": ["label.moved"]}, format="json")
    assert made.status_code == 201, made.json()
    secret = made.json()["secret"]
    listed = api.get(hooks_url(mount)).json()
    assert [h["url"] for h in listed] == [receiver.url] and "secret" not in listed[0]

    moved = api.put(mount.url(f"/profiles/{mount.default_profile}/labels/staging"), {"version": 1}, format="json")
    assert moved.status_code in (200, 201)
    import asyncio

    assert asyncio.run(send_due()) == 1

    ((headers, raw),) = receiver.received
    body = json.loads(raw)
    assert headers["x-webhook-event"] == "label.moved" and headers["x-webhook-id"] == body["id"]
    expected = "sha256=" + hmac.new(secret.encode(), raw, hashlib.sha256).hexdigest()
    assert headers["x-webhook-signature"] == expected
    assert {k: body[k] for k in ("event", "registry", "profile", "label", "version", "actor")} == {
        "event": "label.moved",
        "registry": mount.registry,
        "profile": mount.default_profile,
        "label": "staging",
        "version": 1,
        "actor": "registrar",
    }
    deliveries = api.get(hooks_url(mount, f"/{made.json()['id']}/deliveries")).json()
    assert [(d["event"], d["status"], d["attempts"], d["last_status_code"]) for d in deliveries] == [
        ("label.moved", "delivered", 1, 204)
    ]
    assert asyncio.run(send_due()) == 0  # never twice after a 2xx
    assert len(receiver.received) == 1


def test_an_unsubscribed_event_and_a_refused_change_send_nothing(seeded, api, receiver, mount):
    api.post(hooks_url(mount), {"url": receiver.url, "events": ["version.created"]}, format="json")

    api.put(mount.url(f"/profiles/{mount.default_profile}/labels/staging"), {"version": 1}, format="json")
    stale = api.patch(
        mount.url(f"/profiles/{mount.default_profile}"), {"description": "x", "expected_version": 99}, format="json"
    )

    assert stale.status_code == 409
    assert not WebhookDelivery.objects.exists()
    edited = api.patch(mount.url(f"/profiles/{mount.default_profile}"), {"description": "v2"}, format="json")
    assert edited.status_code == 200
    (delivery,) = WebhookDelivery.objects.all()
    assert (delivery.event, delivery.body["version"]) == ("version.created", 2)


def test_errors_are_retried_with_a_doubling_pause_then_given_up(seeded, api, receiver, mount, settings):
    import asyncio

    settings.WEBHOOK_MAX_ATTEMPTS = 3
    settings.WEBHOOK_RETRY_SECONDS = 30
    api.post(hooks_url(mount), {"url": receiver.url, "events": ["label.moved"]}, format="json")
    api.put(mount.url(f"/profiles/{mount.default_profile}/labels/staging"), {"version": 1}, format="json")
    receiver.statuses = [500, 503, 500]
    pauses = []
    for attempt in range(3):
        make_due()
        sent_at = now_ms()
        asyncio.run(send_due())
        delivery = WebhookDelivery.objects.get()
        if attempt == 0:
            assert (delivery.status, delivery.attempts, delivery.last_status_code) == ("pending", 1, 500)
            assert asyncio.run(send_due()) == 0  # not due before its pause
        if delivery.status == "pending":
            pauses.append(delivery.next_attempt_at_ms - sent_at)

    assert [round(p / 1000, -1) for p in pauses] == [30, 60]  # doubling (to the nearest 10 s)
    last = WebhookDelivery.objects.get()
    assert (last.status, last.attempts, last.last_error) == ("failed", 3, "HTTP 500")
    assert len(receiver.received) == 3
    assert len({json.loads(body)["id"] for _, body in receiver.received}) == 1  # the same event each time


def test_a_timeout_or_a_closed_port_is_an_attempt_that_fails(seeded, api, receiver, mount, settings):
    import asyncio

    closed = Receiver()  # bound, then closed: nothing listens on its port
    closed.server.server_close()
    settings.WEBHOOK_ALLOWED_HOSTS = ["127.0.0.1"]
    api.post(hooks_url(mount), {"url": closed.url, "events": ["label.moved"]}, format="json")
    api.put(mount.url(f"/profiles/{mount.default_profile}/labels/staging"), {"version": 1}, format="json")

    asyncio.run(send_due())

    delivery = WebhookDelivery.objects.get()
    assert delivery.status == "pending" and delivery.attempts == 1
    assert delivery.last_status_code is None and "Connect" in delivery.last_error


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:9/x",
        "http://10.0.0.7/x",
        "http://[::1]/x",
        "http://169.254.169.254/latest",
        "ftp://example.com/x",
    ],
)
def test_loopback_private_and_odd_targets_are_refused(seeded, api, mount, url):
    response = api.post(hooks_url(mount), {"url": url, "events": ["label.moved"]}, format="json")

    assert response.status_code == 400
    assert error_of(response)["field"] == "url"


def test_a_target_that_now_resolves_inside_is_refused_at_delivery(seeded, api, receiver, mount, settings):
    import asyncio

    api.post(hooks_url(mount), {"url": receiver.url, "events": ["label.moved"]}, format="json")
    api.put(mount.url(f"/profiles/{mount.default_profile}/labels/staging"), {"version": 1}, format="json")
    settings.WEBHOOK_ALLOWED_HOSTS = []  # no longer allowed

    asyncio.run(send_due())

    delivery = WebhookDelivery.objects.get()
    assert "loopback" in delivery.last_error and delivery.last_status_code is None
    assert receiver.received == []


def test_unknown_events_and_non_editors_are_refused(seeded, receiver, mount):
    plain = APIClient()
    plain.force_authenticate(_fresh(EditorFactory(username="writer", perms=["profiles.change_profile"])))
    editor = APIClient()
    editor.force_authenticate(_fresh(EditorFactory(username="reg", perms=["profiles.change_registry"])))

    assert plain.get(hooks_url(mount)).status_code == 403
    bad = editor.post(hooks_url(mount), {"url": receiver.url, "events": ["label.eaten"]}, format="json")
    assert bad.status_code == 400 and error_of(bad)["field"].startswith("events")


def test_deleting_a_webhook_stops_it_and_is_audited(seeded, api, receiver, mount):
    made = api.post(hooks_url(mount), {"url": receiver.url, "events": ["label.moved"]}, format="json").json()

    deleted = api.delete(hooks_url(mount, f"/{made['id']}"))
    api.put(mount.url(f"/profiles/{mount.default_profile}/labels/staging"), {"version": 1}, format="json")

    assert deleted.status_code == 204
    assert not WebhookDelivery.objects.exists()
    assert list(AuditEvent.objects.filter(object_type="webhook").order_by("id").values_list("action", flat=True)) == [
        "webhook.created",
        "webhook.deleted",
    ]
    assert "secret" not in json.dumps(list(AuditEvent.objects.filter(object_type="webhook").values("changes")))


def test_the_importer_moving_a_label_notifies_too(seeded, receiver, settings):
    webhooks.webhook_create(
        registry_slug="default", url=receiver.url, events=["label.moved"], actor=EditorFactory(username="e")
    )

    services.label_set(registry_slug="default", slug="agent", name="staging", version=1, source="import")

    (delivery,) = WebhookDelivery.objects.all()
    assert delivery.body["actor"] == "system"


async def test_the_worker_sender_delivers_on_its_own(seeded, receiver, settings):
    """The loop each worker starts with its server loop (`chat.webhook_sender.sender`)."""
    import asyncio

    from chat.aio import run_db
    from chat.webhook_sender import WebhookSender

    settings.WEBHOOK_POLL_SECONDS = 0.05
    editor = await run_db(EditorFactory, username="e")
    await run_db(
        webhooks.webhook_create, registry_slug="default", url=receiver.url, events=["label.moved"], actor=editor
    )
    await run_db(services.label_set, registry_slug="default", slug="agent", name="staging", version=1, actor=editor)
    sender = WebhookSender()
    sender.bind(asyncio.get_running_loop())
    try:
        for _ in range(200):
            if receiver.received:
                break
            await asyncio.sleep(0.05)
    finally:
        assert sender.task is not None
        sender.task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await sender.task

    assert [json.loads(body)["event"] for _, body in receiver.received] == ["label.moved"]
