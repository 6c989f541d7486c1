"""The composer: the ONLY place a runtime is built, for every mount. Plain Python.

A runtime is a pure function of a resolution (profiles.resolution.Resolution) and the tools the
mount offers, so it is cached by fingerprint: an unchanged profile costs no rebuild.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from profiles.definitions import Definitions, ToolDefinition
from profiles.resolution import Resolution

from .base import Engine, Middleware, ToolSpec


@dataclass(frozen=True)
class Runtime:
    registry: str
    profile: str
    profile_version: int
    fingerprint: str
    system_prompt: str
    engine: Engine
    engine_info: dict[str, Any]
    middlewares: tuple[Middleware, ...]
    tools: tuple[ToolDefinition, ...]
    overrides_applied: dict[str, Any] = field(default_factory=dict)
    # Earlier turns sent to the engine: the profile's context window, else the server's default.
    history_turns: int = 20
    # How the version was chosen: the ref as given (`agent@production`) and the label it followed.
    ref: str = ""
    label: str | None = None
    # The rollout arm that chose the version, `{id, label, version, weight}` (None outside a rollout).
    rollout: dict[str, Any] | None = None

    @property
    def runtime_key(self) -> str:
        return self.profile

    @property
    def tool_names(self) -> list[str]:
        return [t.name for t in self.tools]

    def tool_specs(self) -> list[ToolSpec]:
        """Only allowed tools are ever offered to the engine."""
        return [ToolSpec(t.name, t.description, t.parameters) for t in self.tools]

    def middleware_summary(self) -> list[dict[str, Any]]:
        return [{"name": m.name, "id": m.id} for m in self.middlewares]

    def marker(self) -> dict[str, Any]:
        """What identifies this runtime in frames and turn records."""
        return {
            "runtime_key": self.runtime_key,
            "fingerprint": self.fingerprint,
            "profile_version": self.profile_version,
        }

    def record(self) -> dict[str, Any]:
        return {
            "registry": self.registry,
            "profile_slug": self.profile,
            "profile_version": self.profile_version,
            "profile_ref": self.ref or self.profile,
            "rollout": self.rollout,
            "runtime_key": self.runtime_key,
            "fingerprint": self.fingerprint,
            "engine": {
                "provider": self.engine_info["provider"],
                "model": self.engine_info["model"],
                "history_turns": self.history_turns,
            },
            "overrides_applied": self.overrides_applied,
            "middlewares": self.middleware_summary(),
            "tools": self.tool_names,
        }


EngineFactory = Callable[[dict[str, dict[str, Any]]], Engine]


def compose(
    resolution: Resolution,
    *,
    mount_tools: frozenset[str],
    defs: Definitions,
    make_engine: EngineFactory,
    default_history_turns: int = 20,
) -> Runtime:
    """Deterministic: the chain follows the profile's order; `enabled: false` entries are skipped;
    tools are the profile's allow-list (in its order) intersected with the mount's tools, plus those of
    tool sources (MCP servers) the resolution found (one gone from its server is not offered); the history
    sent is bounded by the smallest context window of the chain, else by `default_history_turns`."""
    effective = resolution.effective_runtime
    middlewares = []
    for entry in effective.get("middlewares", []):
        if entry.get("enabled") is False:
            continue
        definition = defs.middlewares[entry["name"]]
        if definition.factory is None:
            raise LookupError(f"middleware {entry['name']!r} has no implementation registered")
        middlewares.append(definition.factory(id=entry.get("id"), config=entry.get("config") or {}))
    tools = tuple(
        resolution.source_tools[name] if name in resolution.source_tools else defs.tools[name]
        for name in effective.get("tools", [])
        if name in mount_tools or name in resolution.source_tools  # a source's tools serve every mount
    )
    return Runtime(
        registry=resolution.registry,
        profile=resolution.profile,
        profile_version=resolution.profile_version,
        fingerprint=resolution.fingerprint,
        system_prompt=effective.get("system_prompt", ""),
        engine=make_engine(resolution.engine["settings"]),
        engine_info=resolution.engine,
        middlewares=tuple(middlewares),
        tools=tools,
        overrides_applied=resolution.overrides_applied,
        history_turns=min(
            (n for n in (m.history_turns() for m in middlewares) if n is not None), default=default_history_turns
        ),
        ref=resolution.ref,
        label=resolution.label,
        rollout=resolution.rollout,
    )


class RuntimeCache:
    """LRU of built runtimes keyed by (mount, fingerprint). Counts builds so tests can assert reuse."""

    def __init__(self, max_size: int = 256) -> None:
        self.max_size = max_size
        self._items: OrderedDict[tuple[str, str], Runtime] = OrderedDict()
        self._lock = threading.Lock()
        self.builds = 0
        self.hits = 0

    def get_or_build(self, mount: str, resolution: Resolution, build: Callable[[], Runtime]) -> Runtime:
        key = (mount, resolution.fingerprint)
        with self._lock:
            runtime = self._items.get(key)
            if runtime is not None:
                self._items.move_to_end(key)
                self.hits += 1
                return runtime
        runtime = build()
        with self._lock:
            self.builds += 1
            self._items[key] = runtime
            while len(self._items) > self.max_size:
                self._items.popitem(last=False)
        return runtime

    def clear(self) -> None:
        with self._lock:
            self._items.clear()
            self.builds = self.hits = 0

    def __len__(self) -> int:
        return len(self._items)
