"""API keys for the OpenAI-compatible API: made, rotated and revoked by their owner (or staff), each write
in one transaction with its audit entry. A key acts as its owner, limited to its scopes:

- `*`: every profile the owner may use;
- `slug` or `registry/slug`: every ref of that profile (`slug`, `slug@3`, `slug@production`); a scope
  without a registry names the profile in the registry of the mount the request came through (as model
  ids do: `analyst` on `/v1` is the default registry's, on `/inventory/v1` the inventory's);
- `slug@label` (or `registry/slug@label`): only that label.

Only a SHA-256 of the secret is stored (the secret is 256 random bits: a slow hash would add nothing but
latency to every request); the secret is shown once, when it is made or rotated."""

from __future__ import annotations

import hashlib
import re
import secrets
from dataclasses import dataclass
from typing import Any

from django.db import transaction
from rest_framework.authtoken.models import Token

from .audit import audit_record
from .errors import Conflict, InvalidInput, NotFound
from .models import ApiKey
from .prepared import Param, Select
from .timestamps import now_ms
from .validation import LABEL_RE, SLUG_RE, ensure_storable

SECRET_PREFIX = "sk-"
MAX_SCOPES = 100
MAX_NAME_CHARS = 100
MAX_PER_MINUTE = 1_000_000_000
SCOPE_RE = re.compile(r"^(?:(?P<registry>[^/@]+)/)?(?P<slug>[^/@]+)(?:@(?P<label>[^/@]+))?$")


@dataclass(frozen=True)
class Scope:
    registry: str | None  # None: the mount's default registry
    slug: str
    label: str | None  # None: every ref of the profile


def parse_scope(raw: Any, *, field: str) -> Scope | None:
    """A scope as written (`*` is None: everything the owner may use); 400 on its path otherwise."""
    if raw == "*":
        return None
    match = SCOPE_RE.match(raw.strip().lower()) if isinstance(raw, str) else None
    if match is None:
        raise InvalidInput('a scope is "*", "[registry/]slug" or "[registry/]slug@label"', field=field)
    registry, slug, label = match.group("registry"), match.group("slug"), match.group("label")
    for part, pattern, what in ((registry, SLUG_RE, "registry"), (slug, SLUG_RE, "slug")):
        if part is not None and not pattern.match(part):
            raise InvalidInput(f"{part!r} is not a {what} (a-z, 0-9, '.', '_', '-')", field=field)
    if label is not None and (not LABEL_RE.match(label) or label.isdigit()):
        raise InvalidInput("a scope names a profile or one of its labels (not a version)", field=field)
    return Scope(registry, slug, label)


def parse_scopes(raw: Any) -> list[str]:
    """The scopes of a new key, canonical (lower case, trimmed, each once, in the given order)."""
    if not isinstance(raw, list) or not 1 <= len(raw) <= MAX_SCOPES:
        raise InvalidInput(f'must be a list of 1 to {MAX_SCOPES} scopes (["*"]: all you may use)', field="scopes")
    canonical: list[str] = []
    for i, item in enumerate(raw):
        scope = parse_scope(item, field=f"scopes[{i}]")
        text = "*" if scope is None else item.strip().lower()
        if text not in canonical:
            canonical.append(text)
    return canonical


def scope_allows(scopes: list[str], *, registry: str, slug: str, label: str | None, default_registry: str) -> bool:
    """Whether a key with `scopes` may use `registry/slug` as addressed (`label`: the ref's label, None for
    a plain slug or a pinned version) through a mount whose default registry is `default_registry`."""
    for text in scopes:
        scope = parse_scope(text, field="scopes")
        if scope is None:
            return True
        if (scope.registry or default_registry) != registry or scope.slug != slug:
            continue
        if scope.label is None or scope.label == label:
            return True
    return False


def scope_labels(scopes: list[str], *, registry: str, slug: str, default_registry: str) -> list[str | None]:
    """What of `registry/slug` the scopes cover, for listing it as models: `[None]` for every ref of it,
    else the labels named (`[]`: nothing)."""
    labels: list[str | None] = []
    for text in scopes:
        scope = parse_scope(text, field="scopes")
        if scope is None:
            return [None]
        if (scope.registry or default_registry) == registry and scope.slug == slug:
            if scope.label is None:
                return [None]
            if scope.label not in labels:
                labels.append(scope.label)
    return labels


# --------------------------------------------------------------------------- reads


def key_list(*, user: Any, everyone: bool = False) -> list[ApiKey]:
    """The caller's keys, newest first; staff may ask for everyone's (`everyone`)."""
    keys = ApiKey.objects.select_related("owner")
    if not (everyone and user.is_staff):
        keys = keys.filter(owner=user)
    return list(keys)


def digest_of(secret: str) -> str:
    return hashlib.sha256(secret.encode("utf-8", "surrogatepass")).hexdigest()


# Every request with a key or a token reads one of these (compiled once: `profiles.prepared`).
_KEY = Select(lambda: ApiKey.objects.select_related("owner").filter(digest=Param("digest")).order_by()[:1])
_TOKEN = Select(lambda: Token.objects.select_related("user").filter(key=Param("key")).order_by()[:1])


def token_get(key: str) -> Token | None:
    """The project's (DRF's) token with that key, with its user; one query."""
    return _TOKEN.first(key=key)


def key_for_secret(secret: str) -> ApiKey | None:
    """The key a secret belongs to, with its owner, if it is usable now (not revoked, not expired, its
    owner active); one query."""
    key = _KEY.first(digest=digest_of(secret))
    if key is None or key.revoked_at_ms is not None or not key.owner.is_active:
        return None
    if key.expires_at_ms is not None and key.expires_at_ms <= now_ms():
        return None
    return key


# --------------------------------------------------------------------------- writes


def _new_secret() -> tuple[str, str, str]:
    """(secret, its display prefix, its digest)."""
    secret = SECRET_PREFIX + secrets.token_urlsafe(32)
    return secret, secret[:10], digest_of(secret)


def _optional_int(raw: Any, *, field: str, low: int, high: int) -> int | None:
    if raw is None:
        return None
    if isinstance(raw, bool) or not isinstance(raw, int) or not low <= raw <= high:
        raise InvalidInput(f"must be an integer from {low} to {high}, or null", field=field)
    return raw


def _audit(action: str, key: ApiKey, actor: Any, **changes: Any) -> None:
    audit_record(
        actor=actor,
        source="api",
        action=action,
        object_type="key",
        registry="",
        slug=str(key.pk),
        changes={"id": key.pk, "name": key.name, "owner": key.owner.get_username(), "prefix": key.prefix, **changes},
    )


@dataclass(frozen=True)
class Issued:
    key: ApiKey
    secret: str  # shown once


@transaction.atomic
def key_create(
    *,
    owner: Any,
    name: Any,
    scopes: Any,
    expires_at_ms: Any = None,
    rpm: Any = None,
    tpm: Any = None,
) -> Issued:
    """A new key of `owner` (the caller): checked with field paths, written with its audit entry."""
    if not isinstance(name, str) or not name.strip() or len(name) > MAX_NAME_CHARS:
        raise InvalidInput(f"must be a name of 1 to {MAX_NAME_CHARS} characters", field="name")
    ensure_storable(name, field="name")
    stamp = now_ms()
    expires = _optional_int(expires_at_ms, field="expires_at_ms", low=0, high=2**62)
    if expires is not None and expires <= stamp:
        raise InvalidInput("must be in the future (milliseconds since the epoch)", field="expires_at_ms")
    secret, prefix, digest = _new_secret()
    key = ApiKey.objects.create(
        owner=owner,
        name=name.strip(),
        prefix=prefix,
        digest=digest,
        scopes=parse_scopes(scopes),
        expires_at_ms=expires,
        rpm=_optional_int(rpm, field="rpm", low=1, high=MAX_PER_MINUTE),
        tpm=_optional_int(tpm, field="tpm", low=1, high=MAX_PER_MINUTE),
        created_at_ms=stamp,
    )
    _audit("key.created", key, owner, scopes=key.scopes, expires_at_ms=expires, rpm=key.rpm, tpm=key.tpm)
    return Issued(key, secret)


def _own_key(key_id: Any, actor: Any) -> ApiKey:
    """The key (locked) if it is the actor's, or the actor is staff; others get a 404 (nothing leaks)."""
    key = ApiKey.objects.select_for_update().select_related("owner").filter(pk=key_id).first()
    if key is None or (key.owner_id != actor.pk and not actor.is_staff):
        raise NotFound(f"no key {key_id}", field="key_id")
    return key


@transaction.atomic
def key_rotate(*, key_id: Any, actor: Any) -> Issued:
    """A new secret for the key; the old one stops working with this commit."""
    key = _own_key(key_id, actor)
    if key.revoked_at_ms is not None:
        raise Conflict(f"key {key.pk} is revoked: make a new one", field="key_id")
    secret, key.prefix, key.digest = _new_secret()
    key.rotated_at_ms = now_ms()
    key.save(update_fields=["prefix", "digest", "rotated_at_ms"])
    _audit("key.rotated", key, actor)
    return Issued(key, secret)


@transaction.atomic
def key_revoke(*, key_id: Any, actor: Any) -> None:
    """The key stops working with this commit; it stays listed (revoked) for the record. Revoking a
    revoked key changes nothing."""
    key = _own_key(key_id, actor)
    if key.revoked_at_ms is not None:
        return
    key.revoked_at_ms = now_ms()
    key.save(update_fields=["revoked_at_ms"])
    _audit("key.revoked", key, actor)
