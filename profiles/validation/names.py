"""Slugs, labels, versions, profile references and extension and override keys: how a name is
canonicalised, or why it is refused."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from ..errors import InvalidInput

SLUG_RE = re.compile(r"^[a-z0-9](?:[a-z0-9._-]{0,126}[a-z0-9])?$")
EXTENSION_KEY_RE = re.compile(
    r"^(?P<ns>[a-z0-9](?:[a-z0-9_-]{0,62}[a-z0-9])?)\.(?P<feature>[a-z0-9](?:[a-z0-9_-]{0,62}[a-z0-9])?)@v(?P<n>[1-9][0-9]*)$"
)


LABEL_RE = re.compile(r"^[a-z][a-z0-9_-]{0,63}$")
LATEST = "latest"  # the reserved label: always the newest version


def canonical_label(raw: Any, *, field: str = "name") -> str:
    """A label name a user may set: `[a-z][a-z0-9_-]{0,63}`, not the reserved `latest`."""
    name = raw.strip().lower() if isinstance(raw, str) else None
    if not name or not LABEL_RE.match(name):
        raise InvalidInput("a label is 1-64 characters of a-z, 0-9, '_', '-', starting with a letter", field=field)
    if name == LATEST:
        raise InvalidInput("'latest' is reserved: it always means the newest version", field=field)
    return name


@dataclass(frozen=True)
class ProfileRef:
    """How a profile is chosen: `slug` (follow the serving label or the latest), `slug@3` (pinned to a
    version) or `slug@production` (follow a label; `slug@latest` follows the newest version)."""

    slug: str
    version: int | None = None
    label: str | None = None

    @property
    def at(self) -> str:
        """What follows `@` ("" for a plain slug): what selections store next to the slug."""
        return str(self.version) if self.version is not None else (self.label or "")

    @property
    def mode(self) -> str:
        """`pinned` (a version), `label` (a label) or `follow` (a plain slug)."""
        return "pinned" if self.version is not None else "label" if self.label else "follow"

    def __str__(self) -> str:
        return f"{self.slug}@{self.at}" if self.at else self.slug


def parse_profile_ref(raw: Any, *, field: str = "profile", at: str = "") -> ProfileRef:
    """`agent`, `agent@3`, `agent@production` (or a slug and a stored `at`) -> ProfileRef; 400 otherwise."""
    if not isinstance(raw, str):
        raise InvalidInput("must be a profile slug, slug@version or slug@label", field=field)
    slug_part, sep, selector = raw.partition("@")
    slug = canonical_slug(slug_part, field=field)
    if not sep:
        selector = at
    elif at:
        raise InvalidInput("the ref already names a version or label", field=field)
    selector = selector.strip().lower()
    if sep and not selector:
        raise InvalidInput("expected a version number or a label name after '@'", field=field)
    if not selector:
        return ProfileRef(slug)
    if selector.isdigit():
        return ProfileRef(slug, version=parse_version(selector, field=field))
    if not LABEL_RE.match(selector):
        raise InvalidInput(f"{selector!r} after '@' is neither a version number nor a label name", field=field)
    return ProfileRef(slug, label=selector)


def parse_version(value: Any, *, field: str) -> int:
    """A profile or registry version as a client sends it (an int, "3", or an ETag's `"3"`/`W/"3"`)."""
    text = value.strip().removeprefix("W/").strip('"') if isinstance(value, str) else value
    try:
        version = int(text)
    except (TypeError, ValueError):
        raise InvalidInput("must be a positive integer version", field=field) from None
    if version < 1 or isinstance(value, bool):
        raise InvalidInput("must be a positive integer version", field=field)
    return version


def canonical_slug(raw: Any, *, field: str = "slug") -> str:
    """Trim and lower-case; reject anything that is not 1-128 chars of [a-z0-9._-] with alnum ends."""
    if not isinstance(raw, str):
        raise InvalidInput("slug must be a string", field=field)
    slug = raw.strip().lower()
    if not slug:
        raise InvalidInput("slug is required", field=field)
    if not SLUG_RE.match(slug):
        raise InvalidInput(
            f"invalid slug {raw!r}: use 1-128 characters of a-z, 0-9, '.', '_', '-', starting and ending "
            "with a letter or digit",
            field=field,
        )
    return slug


def canonical_extension_key(raw: str) -> str | None:
    key = raw.strip().lower() if isinstance(raw, str) else ""
    return key if EXTENSION_KEY_RE.match(key) else None


def canonical_override_key(raw: str) -> str:
    """`systemPrompt`, `system-prompt`, ` System_Prompt ` -> `system_prompt`."""
    key = re.sub(r"(?<=[a-z0-9])([A-Z])", r"_\1", raw.strip())
    return key.replace("-", "_").lower()
