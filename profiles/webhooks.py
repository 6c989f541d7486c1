"""Signed webhooks for a registry's release events.

A change (a new version, a label moved or removed, a label request) writes one delivery per subscribed
webhook into an outbox, in the change's own transaction (`webhooks_emit`): a change that rolls back
sends nothing, and a change that commits is sent even if the worker stops right after. Each worker's
sender (`chat.webhook_sender`, on the server's loop) claims due deliveries with a conditional UPDATE
(two workers never send one together), POSTs `{id, event, registry, profile, label?, version?,
from_version?, actor, at_ms}` signed with the webhook's secret, and retries errors and timeouts with a
doubling pause (`WEBHOOK_RETRY_SECONDS`, `WEBHOOK_MAX_ATTEMPTS`: by default 8 attempts over about an
hour). A 2xx ends it; it is never sent again.

Targets are http(s) and must not be loopback, private, link-local or otherwise reserved addresses unless
named in `WEBHOOK_ALLOWED_HOSTS`: checked when the webhook is made and again before each delivery,
after DNS resolution (a name that later resolves inside is refused then).
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import ipaddress
import json
import logging
import secrets
import socket
import uuid
from typing import Any
from urllib.parse import urlsplit

from django.conf import settings
from django.db import transaction

from .access import require_editor
from .audit import audit_record
from .errors import InvalidInput, NotFound
from .models import Registry, Webhook, WebhookDelivery
from .timestamps import now_ms
from .validation import ensure_storable

log = logging.getLogger(__name__)

EVENTS = (
    "version.created",
    "label.moved",
    "label.removed",
    "rollout.changed",
    "rollout.halted",
    "request.created",
    "request.approved",
    "request.applied",
    "request.rejected",
)
MAX_ERROR_CHARS = 300
CLAIM_SECONDS = 60  # a claimed delivery is due again after this, should its sender die mid-send
SEND_TIMEOUT_SECONDS = 10.0
BATCH = 50


# --------------------------------------------------------------------------- targets


def _allowed_hosts(setting: str) -> set[str]:
    return {h.strip().lower() for h in getattr(settings, setting) if h.strip()}


def _refused_address(address: str) -> bool:
    ip = ipaddress.ip_address(address.split("%")[0])
    return not ip.is_global or ip.is_multicast


def check_target(url: str, *, addresses: list[str] | None = None, setting: str = "WEBHOOK_ALLOWED_HOSTS") -> str | None:
    """Why the server may not send requests to `url` (None: it may): a host that is not in the allow-list
    `setting` and resolves to a loopback, private or reserved address is refused (webhooks; MCP servers,
    with MCP_ALLOWED_HOSTS). `addresses`: what its host resolves to (looked up here when not given)."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return "must be an http(s) URL with a host"
    host = parts.hostname.lower()
    allowed = _allowed_hosts(setting)
    if host in allowed:
        return None
    if addresses is None:
        try:
            addresses = sorted({str(info[4][0]) for info in socket.getaddrinfo(host, parts.port or 443)})
        except (OSError, UnicodeError):
            return f"host {host!r} does not resolve"
    refused = [a for a in addresses if a not in allowed and _refused_address(a)]
    if refused:
        return (
            f"host {host!r} resolves to {refused[0]}, a loopback, private or reserved address "
            f"(list it in {setting} to allow it)"
        )
    return None


# --------------------------------------------------------------------------- writes


def _registry(slug: str) -> Registry:
    registry = Registry.objects.select_for_update().filter(slug=slug).first()
    if registry is None:
        raise NotFound(f"registry {slug!r} not found", field="registry")
    return registry


@transaction.atomic
def webhook_create(*, registry_slug: str, url: Any, events: Any, actor: Any) -> Webhook:
    """A webhook of the registry, with a new secret (the caller shows it once). The target is checked
    (a DNS lookup) before the registry is locked."""
    if not isinstance(url, str) or len(url) > 2000:
        raise InvalidInput("must be a URL of at most 2000 characters", field="url")
    ensure_storable(url, field="url")
    why = check_target(url)
    if why:
        raise InvalidInput(why, field="url")
    if not isinstance(events, list) or not events:
        raise InvalidInput(f"must be a non-empty list of: {', '.join(EVENTS)}", field="events")
    for i, event in enumerate(events):
        if event not in EVENTS:
            raise InvalidInput(f"unknown event {str(event)[:64]!r} (one of: {', '.join(EVENTS)})", field=f"events[{i}]")
    registry = _registry(registry_slug)
    require_editor(actor, registry)
    webhook = Webhook.objects.create(
        registry=registry,
        url=url,
        events=sorted(set(events)),
        secret=secrets.token_hex(32),
        created_by=actor.get_username() if actor is not None else "",
        created_at_ms=now_ms(),
    )
    audit_record(
        actor=actor,
        source="api",
        action="webhook.created",
        object_type="webhook",
        registry=registry.slug,
        changes={"id": webhook.pk, "url": url, "events": webhook.events},
    )
    return webhook


def webhook_list(*, registry_slug: str, actor: Any) -> list[Webhook]:
    """The registry's webhooks (for its editors: the URLs are theirs to see)."""
    registry = Registry.objects.filter(slug=registry_slug).first()
    if registry is None:
        raise NotFound(f"registry {registry_slug!r} not found", field="registry")
    require_editor(actor, registry)
    return list(registry.webhooks.order_by("id"))


def delivery_list(*, registry_slug: str, webhook_id: Any, actor: Any, limit: int = 100) -> list[WebhookDelivery]:
    """The webhook's latest deliveries, newest first."""
    webhook = next((w for w in webhook_list(registry_slug=registry_slug, actor=actor) if w.pk == webhook_id), None)
    if webhook is None:
        raise NotFound(f"registry {registry_slug!r} has no webhook {webhook_id}", field="webhook_id")
    return list(webhook.deliveries.order_by("-id")[:limit])


@transaction.atomic
def webhook_delete(*, registry_slug: str, webhook_id: Any, actor: Any) -> None:
    registry = _registry(registry_slug)
    require_editor(actor, registry)
    webhook = Webhook.objects.filter(registry=registry, pk=webhook_id).first()
    if webhook is None:
        raise NotFound(f"registry {registry.slug!r} has no webhook {webhook_id}", field="webhook_id")
    audit_record(
        actor=actor,
        source="api",
        action="webhook.deleted",
        object_type="webhook",
        registry=registry.slug,
        changes={"id": webhook.pk, "url": webhook.url},
    )
    webhook.delete()


def webhooks_emit(*, registry: Registry, event: str, actor: Any, **fields: Any) -> None:
    """Queue `event` for the registry's webhooks that take it (call it inside the change's transaction)."""
    hooks = [h for h in Webhook.objects.filter(registry=registry) if event in h.events]
    if not hooks:
        return
    stamp = now_ms()
    who = actor.get_username() if actor is not None and getattr(actor, "is_authenticated", False) else "system"
    deliveries = []
    for hook in hooks:
        event_id = uuid.uuid4()
        body = {
            "id": str(event_id),
            "event": event,
            "registry": registry.slug,
            **{k: v for k, v in fields.items() if v is not None},
            "actor": who,
            "at_ms": stamp,
        }
        deliveries.append(
            WebhookDelivery(
                webhook=hook, event_id=event_id, event=event, body=body, next_attempt_at_ms=stamp, created_at_ms=stamp
            )
        )
    WebhookDelivery.objects.bulk_create(deliveries)


# --------------------------------------------------------------------------- delivery


def signature(secret: str, body: bytes) -> str:
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def claim_due(now: int) -> list[tuple[int, str, str, dict[str, Any], int]]:
    """Due deliveries this sender takes: (id, url, secret, body, attempts). The conditional UPDATE is the
    claim: a delivery another sender claimed meanwhile is left to it."""
    due = list(
        WebhookDelivery.objects.filter(status=WebhookDelivery.Status.PENDING, next_attempt_at_ms__lte=now)
        .select_related("webhook")
        .order_by("next_attempt_at_ms")[:BATCH]
    )
    claimed = []
    for item in due:
        if WebhookDelivery.objects.filter(pk=item.pk, next_attempt_at_ms=item.next_attempt_at_ms).update(
            next_attempt_at_ms=now + CLAIM_SECONDS * 1000
        ):
            claimed.append((item.pk, item.webhook.url, item.webhook.secret, item.body, item.attempts))
    return claimed


def record_attempt(delivery_id: int, attempts: int, *, status_code: int | None, error: str) -> None:
    """One attempt's outcome: delivered on a 2xx; else due again after a doubling pause, or failed."""
    ok = status_code is not None and 200 <= status_code < 300
    attempts += 1
    fields: dict[str, Any] = {
        "attempts": attempts,
        "last_status_code": status_code,
        "last_error": error[:MAX_ERROR_CHARS],
    }
    if ok:
        fields["status"] = WebhookDelivery.Status.DELIVERED
    elif attempts >= settings.WEBHOOK_MAX_ATTEMPTS:
        fields["status"] = WebhookDelivery.Status.FAILED
    else:
        pause = settings.WEBHOOK_RETRY_SECONDS * 2 ** (attempts - 1)
        fields["next_attempt_at_ms"] = now_ms() + int(pause * 1000)
    WebhookDelivery.objects.filter(pk=delivery_id).update(**fields)


async def send(client: Any, url: str, secret: str, body: dict[str, Any]) -> tuple[int | None, str]:
    raw = json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode()
    parts = urlsplit(url)
    try:
        infos = await asyncio.get_running_loop().getaddrinfo(parts.hostname, parts.port or 443)
    except OSError as exc:
        return None, f"DNS: {exc}"
    why = check_target(url, addresses=sorted({str(info[4][0]) for info in infos}))
    if why:
        return None, why
    headers = {
        "Content-Type": "application/json",
        "X-Webhook-Event": body["event"],
        "X-Webhook-Id": body["id"],
        "X-Webhook-Signature": signature(secret, raw),
    }
    try:
        response = await client.post(url, content=raw, headers=headers)
    except Exception as exc:  # a timeout, a refused connection, a bad response: tried again later
        return None, f"{type(exc).__name__}: {exc}"
    return response.status_code, "" if response.is_success else f"HTTP {response.status_code}"
