"""Resolution of a profile plus request overrides into an effective runtime, and its fingerprint.

Plain Python: the selector in `profiles.selectors` loads the rows and calls `resolve_runtime`.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from .definitions import Definitions, ToolDefinition
from .definitions import definitions as default_definitions
from .errors import StackError
from .overrides import OverrideBounds, apply_overrides, check_bounds, engine_settings, engine_summary
from .stacking import Layer, stack_merge, trace_overrides
from .validation import validate_runtime


def public_url(url: str) -> str:
    """A URL without user-info, query or fragment: safe to show, store and fingerprint."""
    if not url:
        return ""
    parts = urlsplit(url)
    host = parts.hostname or ""
    netloc = f"[{host}]" if ":" in host else host
    if parts.port:
        netloc += f":{parts.port}"
    return urlunsplit((parts.scheme, netloc, parts.path.rstrip("/"), "", ""))


@dataclass(frozen=True)
class Resolution:
    registry: str
    profile: str
    profile_version: int
    effective_runtime: dict[str, Any]
    engine: dict[str, Any]
    overrides_applied: dict[str, Any]
    fingerprint: str
    extensions: dict[str, Any] = field(default_factory=dict)
    # The selection as given (`agent`, `agent@3`, `agent@production`) and the label it followed, if any
    # (a `@label` ref, or the registry's serving label for a plain slug).
    ref: str = ""
    label: str | None = None
    # Every layer applied, bases first and the profile last: `[{registry, slug, version}]`.
    lineage: tuple[dict[str, Any], ...] = ()
    # For each effective field path, the layer that set it and the earlier values it replaced.
    provenance: dict[str, Any] = field(default_factory=dict)
    # Why this is not what was chosen, when the chosen profile fell back: "access_revoked" (the user may
    # no longer use it). Set by callers that resolve for a user's selection.
    fallback: str | None = None
    # The lineage of the runtime this one replaces, when the caller knows it (a conversation whose
    # fingerprint changed): a switch then names the layer that changed.
    previous_lineage: tuple[dict[str, Any], ...] | None = None
    # The rollout arm that chose this version, `{id, label, version, weight}`; None outside a rollout.
    rollout: dict[str, Any] | None = None
    # The followed label's rollout, `{id, status, ...}`, served or not (halted): says why a conversation
    # left its arm (`runtime.switched` reason `rollout_halted` or `rollout_ended`).
    label_rollout: dict[str, Any] | None = None
    # Each allowed tool from outside the process (`mcp:<server>/<tool>`) and the hash of the schema it is
    # offered with (None: gone from its server): part of the fingerprint, so a changed tool switches.
    tool_schemas: dict[str, str | None] = field(default_factory=dict)
    # Their definitions, as found when resolving (the composer offers these).
    source_tools: dict[str, ToolDefinition] = field(default_factory=dict, compare=False, repr=False)
    # The tool schemas of the runtime this one replaces, when the caller knows it (like `previous_lineage`).
    previous_tool_schemas: dict[str, str | None] | None = None

    @property
    def runtime_key(self) -> str:
        return self.profile

    def as_dict(self) -> dict[str, Any]:
        return {
            "registry": self.registry,
            "profile": self.profile,
            "profile_version": self.profile_version,
            "ref": self.ref or self.profile,
            "label": self.label,
            "rollout": self.rollout,
            "runtime_key": self.runtime_key,
            "effective_runtime": self.effective_runtime,
            "engine": self.engine,
            "overrides_applied": self.overrides_applied,
            "fingerprint": self.fingerprint,
            "lineage": [dict(layer) for layer in self.lineage],
            "provenance": self.provenance,
        }

    def trace(self) -> dict[str, Any]:
        """What a turn's runtime record keeps of how its runtime was built: the lineage and, for each
        field, who set it and what it replaced (the values themselves are the record's own); and the schema
        hash of each tool from outside the process, when it allows any."""
        trace: dict[str, Any] = {
            "lineage": [dict(layer) for layer in self.lineage],
            "provenance": {
                path: {k: v for k, v in entry.items() if k != "value"} for path, entry in self.provenance.items()
            },
        }
        if self.tool_schemas:
            trace["tool_schemas"] = dict(self.tool_schemas)
        return trace


def canonical_json(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def fingerprint(
    *,
    registry: str,
    profile: str,
    profile_version: int,
    effective_runtime: Mapping,
    engine_settings: Mapping,
    lineage: list[Mapping[str, Any]] | None = None,
    tool_schemas: Mapping[str, str | None] | None = None,
) -> str:
    """`lineage`: the layers of a stacked profile (bases first, with their versions), so saving a base
    layer changes every dependent's fingerprint. A profile without a stack has none (its fingerprint
    is what it always was). `tool_schemas`: the schema hash of each tool from outside the process, so a
    server that changes a tool changes the fingerprint (absent when the runtime allows none)."""
    payload = {
        "registry": registry,
        "profile": profile,
        "profile_version": profile_version,
        "runtime": effective_runtime,
        "engine": engine_settings,
    }
    if lineage:
        payload["lineage"] = [dict(layer) for layer in lineage]
    if tool_schemas:
        payload["tool_schemas"] = dict(tool_schemas)
    return "sha256:" + hashlib.sha256(canonical_json(payload).encode("utf-8")).hexdigest()


def resolve_runtime(
    *,
    registry: str,
    profile: str,
    profile_version: int,
    runtime: Mapping[str, Any],
    policy: Mapping[str, Any],
    extensions: Mapping[str, Any] | None = None,
    request_overrides: Any = None,
    server_defaults: Mapping[str, Mapping[str, Any]] | None = None,
    defs: Definitions | None = None,
    bounds: OverrideBounds | None = None,
    ref: str = "",
    label: str | None = None,
    base_layers: list[Layer] | tuple[Layer, ...] = (),
    rollout: dict[str, Any] | None = None,
    label_rollout: dict[str, Any] | None = None,
) -> Resolution:
    """`bounds`: the override value bounds; None = the server's (`OverrideBounds.server`).
    `ref`/`label`/`rollout`: how the version was chosen (recorded, not part of the fingerprint: the same
    version's runtime is the same whichever way it was reached). `base_layers`: the lineage of a stacked profile
    before the profile itself (`stack_merge`); its versions are part of the fingerprint."""
    own = Layer(registry, profile, profile_version, runtime or {}, policy or {}, extensions or {})
    lineage = [*base_layers, own]
    merged_runtime, merged_policy, merged_extensions, trace = stack_merge(lineage)
    if base_layers:
        runtime = merge_validated(merged_runtime, defs=defs, check_sources=False)
        policy, extensions = merged_policy, merged_extensions
    effective, applied = apply_overrides(runtime, policy, request_overrides, defs=defs)
    trace_overrides(trace, applied)
    settings = engine_settings(server_defaults or {}, effective.get("step_settings_patch"), defs=defs)
    if applied.get("step_settings_patch"):
        before = engine_settings(server_defaults or {}, runtime.get("step_settings_patch"), defs=defs)
        bounds = (bounds or OverrideBounds.server(defs=defs)).with_policy(policy.get("value_bounds"))
        check_bounds(applied["step_settings_patch"], before, settings, bounds, defs=defs)
    refs = [layer.ref for layer in lineage]
    source_tools, tool_schemas = _source_tools(effective.get("tools") or (), defs or default_definitions)
    return Resolution(
        registry=registry,
        profile=profile,
        profile_version=profile_version,
        effective_runtime=effective,
        engine=engine_summary(settings, defs=defs),
        overrides_applied=applied,
        fingerprint=fingerprint(
            registry=registry,
            profile=profile,
            profile_version=profile_version,
            effective_runtime=effective,
            engine_settings=settings,
            lineage=refs if base_layers else None,
            tool_schemas=tool_schemas,
        ),
        extensions=dict(extensions or {}),
        ref=ref or profile,
        label=label,
        lineage=tuple(refs),
        provenance=trace.as_dict(),
        rollout=rollout,
        label_rollout=label_rollout,
        tool_schemas=tool_schemas,
        source_tools=source_tools,
    )


def _source_tools(names: Sequence[str], defs: Definitions) -> tuple[dict[str, ToolDefinition], dict[str, str | None]]:
    """The allowed tools that live outside the process, as their sources have them now (one lookup, none
    when the runtime allows only the process's own tools), and their schema hashes (None: gone)."""
    wanted = [name for name in names if name not in defs.tools and defs.tool_source(name) is not None]
    if not wanted:
        return {}, {}
    found = defs.source_tools(wanted)
    tools = {name: tool for name, tool in found.items() if isinstance(tool, ToolDefinition)}
    return tools, {name: tools[name].schema_hash if name in tools else None for name in wanted}


def merge_validated(
    runtime: Mapping[str, Any], *, defs: Definitions | None = None, check_sources: bool = True
) -> dict[str, Any]:
    """A merged runtime checked like a profile's own (its paths are the merged chain's): two layers may
    give one middleware name with and without an id. 400 on `stack` (`StackError`), naming the merged path."""
    validated, errors = validate_runtime(runtime, defs=defs, check_sources=check_sources)
    if errors:
        raise StackError.from_errors([("stack", f"the merged runtime is invalid: {p}: {m}") for p, m in errors])
    return validated
