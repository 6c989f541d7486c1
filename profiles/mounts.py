"""A mount: one app's use of the shared platform. Only options differ between mounts, never code."""

from __future__ import annotations

from dataclasses import dataclass

from .definitions import ToolDefinition, definitions


@dataclass(frozen=True)
class Mount:
    name: str  # "chat" | "inventory": stored on conversations, names the URL namespace
    prefix: str  # URL prefix: "" or "inventory/"
    default_registry: str
    title: str = ""

    @property
    def path(self) -> str:
        return "/" + self.prefix

    def tools(self) -> list[ToolDefinition]:
        return definitions.tools_for_mount(self.name)

    def tool_names(self) -> frozenset[str]:
        return frozenset(t.name for t in self.tools())


_mounts: dict[str, Mount] = {}


def register_mount(mount: Mount) -> Mount:
    existing = _mounts.setdefault(mount.name, mount)
    if existing != mount:
        raise ValueError(f"mount {mount.name!r} is registered twice with different options")
    return mount


def get_mount(name: str) -> Mount:
    return _mounts[name]
