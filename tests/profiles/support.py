"""Plain helpers shared by the profile tests (fixtures live in conftest.py)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from django.conf import settings

SEED_FILE = settings.PROFILES_SEED_FILE

# The seed's profiles per registry, in slug order.
SEED_PROFILES = {
    "default": ["agent", "analyst", "default"],
    "inventory": ["analyst", "default", "inventory"],
}


@dataclass(frozen=True)
class MountCase:
    """One app's mount of the shared profile API: only the options differ."""

    name: str
    prefix: str  # URL prefix of the profile API, e.g. "/api/chat"
    registry: str  # the mount's default registry
    other_registry: str  # the other mount's default registry (for `?registry=`)
    default_profile: str  # the seed's default profile of `registry`

    def url(self, path: str = "") -> str:
        return f"{self.prefix}{path}"


CHAT = MountCase(
    name="chat", prefix="/api/chat", registry="default", other_registry="inventory", default_profile="default"
)
INVENTORY = MountCase(
    name="inventory",
    prefix="/inventory/api/chat",
    registry="inventory",
    other_registry="default",
    default_profile="inventory",
)
MOUNTS = [CHAT, INVENTORY]


def error_of(response) -> dict[str, Any]:
    """The `error` object of a JSON error response (asserting the documented shape)."""
    body = response.json()
    assert set(body) == {"error"}, body
    assert {"code", "message"} <= set(body["error"]), body
    return body["error"]


def canonical(value: Any) -> str:
    """Canonical JSON: equal strings mean equal values with equal types (1 != 1.0 != True)."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


# The resolution result of profiles.md section 6 (`POST .../resolve` returns exactly these keys).
RESOLUTION_KEYS = {
    "registry",
    "profile",
    "profile_version",
    "ref",  # the profile as addressed (`slug`, `slug@3`, `slug@label`) and the label it followed
    "label",
    "rollout",  # the rollout arm that chose the version, else null
    "runtime_key",
    "effective_runtime",
    "engine",
    "overrides_applied",
    "fingerprint",
    "lineage",  # every layer applied (bases first) and, per effective field, the layer that set it
    "provenance",
}
