"""A mount: one app's use of the shared platform. Only options differ between mounts, never code."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .definitions import ToolDefinition, definitions


@dataclass(frozen=True)
class Panel:
    """An app's own panel next to the chat on its page: what the page includes and loads for it."""

    template: str  # included in the page, e.g. "inventory/panel.html"
    stylesheet: str  # static path
    module: str  # static path of an ES module exporting `Panel` (new Panel({root, ...options}))
    options: tuple[tuple[str, Any], ...] = ()  # JSON values handed to the module


@dataclass(frozen=True)
class Mount:
    name: str  # "chat" | "inventory": stored on conversations, names the URL namespace
    prefix: str  # URL prefix: "" or "inventory/"
    default_registry: str
    title: str = ""
    empty_state: str = "Start a conversation"  # the heading of an empty conversation
    panel: Panel | None = None

    @property
    def path(self) -> str:
        return "/" + self.prefix

    def tools(self) -> list[ToolDefinition]:
        return definitions.tools_for_mount(self.name)

    def tool_names(self) -> frozenset[str]:
        return frozenset(t.name for t in self.tools())


# The process-wide table of mounts. Each app registers its own in `AppConfig.ready()`, so it is full as
# soon as `django.setup()` has run (shell, management commands, workers), not only once URLs are loaded.
_mounts: dict[str, Mount] = {}


def register_mount(mount: Mount) -> Mount:
    """Idempotent: registering an equal mount again is a no-op; different options under one name fail."""
    existing = _mounts.setdefault(mount.name, mount)
    if existing != mount:
        raise ValueError(f"mount {mount.name!r} is registered twice with different options")
    return existing


def get_mount(name: str) -> Mount:
    try:
        return _mounts[name]
    except KeyError:
        known = ", ".join(sorted(_mounts)) or "none"
        raise KeyError(
            f"no mount {name!r} (registered: {known}); apps register their mount in AppConfig.ready(), "
            "so call django.setup() first and check the app is in INSTALLED_APPS"
        ) from None


def registered_mounts() -> dict[str, Mount]:
    """A copy of the registered mounts, by name."""
    return dict(_mounts)
