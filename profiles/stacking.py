"""Stacked profiles: a profile's lineage of layers merged in order (bases first), with the provenance
of every effective field, and what request overrides add to it.

Plain Python, used by `profiles.resolution.resolve_runtime` and the services that check a stack.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from .overrides import ANY


@dataclass(frozen=True)
class Layer:
    """One layer of a profile's lineage: a profile at one version, with that version's content."""

    registry: str
    slug: str
    version: int
    runtime: Mapping[str, Any]
    policy: Mapping[str, Any]
    extensions: Mapping[str, Any]

    @property
    def ref(self) -> dict[str, Any]:
        return {"registry": self.registry, "slug": self.slug, "version": self.version}


# The pseudo-layer of what request overrides set, in provenance.
REQUEST_LAYER: dict[str, Any] = {"request": True}


def middleware_identity(entry: Mapping[str, Any]) -> str:
    """`name#id`, or `name` for an entry without an id: how diffs and provenance name a middleware."""
    name, ident = str(entry.get("name", "")).strip(), entry.get("id")
    return f"{name}#{ident}" if ident else name


class Provenance:
    """Field path -> `{layer, value, replaced: [{layer, value}], rule?, overruled?}` while layers apply.

    `replace` fields (prompt, tools, a middleware, a config key, a step setting, an extension): the last
    layer that sets one is its origin and the earlier values are `replaced`. Restrictive policy fields
    (`rule`: and, or, intersect, union, min): the origin is the last layer that changed the result; a
    later layer whose value lost is `overruled`."""

    def __init__(self) -> None:
        self.paths: dict[str, dict[str, Any]] = {}

    def set(self, path: str, layer: Mapping[str, Any], value: Any) -> None:
        previous = self.paths.get(path)
        replaced = [] if previous is None else [*previous["replaced"], _was(previous)]
        self.paths[path] = {"layer": dict(layer), "value": copy.deepcopy(value), "replaced": replaced}

    def combine(self, path: str, layer: Mapping[str, Any], stated: Any, result: Any, rule: str) -> None:
        previous = self.paths.get(path)
        if previous is None:
            self.paths[path] = {"layer": dict(layer), "value": copy.deepcopy(result), "replaced": [], "rule": rule}
        elif result == previous["value"]:
            if stated != result:
                previous.setdefault("overruled", []).append({"layer": dict(layer), "value": copy.deepcopy(stated)})
        else:
            entry = {
                "layer": dict(layer),
                "value": copy.deepcopy(result),
                "replaced": [*previous["replaced"], _was(previous)],
                "rule": rule,
            }
            if previous.get("overruled"):
                entry["overruled"] = previous["overruled"]
            self.paths[path] = entry

    def drop(self, prefix: str) -> None:
        for path in [p for p in self.paths if p == prefix or p.startswith((prefix + ".", prefix + "["))]:
            del self.paths[path]

    def as_dict(self) -> dict[str, Any]:
        return {path: self.paths[path] for path in sorted(self.paths)}


def _was(entry: Mapping[str, Any]) -> dict[str, Any]:
    return {"layer": entry["layer"], "value": entry["value"]}


def _trace_middleware(trace: Provenance, layer: Mapping[str, Any], entry: Mapping[str, Any]) -> None:
    path = f"runtime.middlewares[{middleware_identity(entry)}]"
    trace.set(path, layer, {k: v for k, v in entry.items() if k != "config"})
    for key, value in (entry.get("config") or {}).items():
        trace.set(f"{path}.config.{key}", layer, value)


def _stack_middlewares(
    merged: list[dict[str, Any]], entries: list[Mapping[str, Any]], layer: Mapping[str, Any], trace: Provenance
) -> None:
    """A layer's chain merged into the chain so far by `name`+`id`: a match is replaced in place by the
    layer's entry (its `enabled`, its config over the earlier one's), the rest is appended; order kept."""
    for entry in entries:
        name, ident = entry["name"], entry.get("id")
        target = next((m for m in merged if m["name"] == name and m.get("id") == ident), None)
        if target is None:
            merged.append(copy.deepcopy(dict(entry)))
        else:
            config = {**(target.get("config") or {}), **copy.deepcopy(entry.get("config") or {})}
            target.clear()
            target.update({k: copy.deepcopy(v) for k, v in entry.items() if k != "config"})
            target["config"] = config
        _trace_middleware(trace, layer, entry)


def _bound_lists(a: list[str] | None, b: list[str]) -> list[str]:
    """Two value-bound lists, the more restrictive way (`*` allows anything)."""
    if a is None or ANY in b:
        return sorted(b) if a is None else a
    if ANY in a:
        return sorted(b)
    return sorted(set(a) & set(b))


def _stack_policy(policy: dict[str, Any], own: Mapping[str, Any], layer: Mapping[str, Any], trace: Provenance) -> None:
    """Merge one layer's policy restrictively: `allow_overrides` AND, `read_only` OR, allowed keys
    intersect (an empty list sets no allow-list), denied keys union, value bounds the tighter."""
    flags = (("allow_overrides", "and", all), ("read_only", "or", any))
    for key, rule, combine in flags:
        stated = bool(own.get(key, False))
        allowed_now = stated if key not in policy else combine((policy[key], stated))
        policy[key] = allowed_now
        trace.combine(f"policy.{key}", layer, stated, allowed_now, rule)
    allowed = list(own.get("allowed_override_keys") or [])
    if allowed:
        before = policy.get("allowed_override_keys") or []
        result = sorted(set(before) & set(allowed)) if policy.get("_allow_list") else sorted(set(allowed))
        policy["_allow_list"] = True
        policy["allowed_override_keys"] = result
        trace.combine("policy.allowed_override_keys", layer, allowed, result, "intersect")
    denied = list(own.get("denied_override_keys") or [])
    if denied:
        result = sorted(set(policy.get("denied_override_keys") or []) | set(denied))
        policy["denied_override_keys"] = result
        trace.combine("policy.denied_override_keys", layer, denied, result, "union")
    bounds = dict(policy.get("value_bounds") or {})
    for key, value in (own.get("value_bounds") or {}).items():
        if isinstance(value, list):
            result, rule = _bound_lists(bounds.get(key), value), "intersect"
        else:
            result, rule = (value if key not in bounds else min(bounds[key], value)), "min"
        bounds[key] = result
        trace.combine(f"policy.value_bounds.{key}", layer, value, result, rule)
    if bounds:
        policy["value_bounds"] = bounds


def stack_merge(layers: list[Layer]) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any], Provenance]:
    """Apply `layers` in order (bases first, the profile last): (runtime, policy, extensions, provenance).

    `system_prompt`: the last non-empty one; `tools`: the last layer that sets them (`[]` included)
    replaces; `middlewares`: merged by `name`+`id` keeping order; `step_settings_patch` and `extensions`:
    per field; `policy`: restrictively (`_stack_policy`). The runtime is not validated here: the caller
    validates the merged chain (two layers may give one middleware name with and without an id)."""
    runtime: dict[str, Any] = {}
    policy: dict[str, Any] = {}
    extensions: dict[str, Any] = {}
    trace = Provenance()
    for layer in layers:
        ref, own = layer.ref, layer.runtime or {}
        prompt = own.get("system_prompt")
        if isinstance(prompt, str) and prompt:
            runtime["system_prompt"] = prompt
            trace.set("runtime.system_prompt", ref, prompt)
        if own.get("tools") is not None:
            runtime["tools"] = list(own["tools"])
            trace.set("runtime.tools", ref, own["tools"])
        if own.get("middlewares"):
            _stack_middlewares(runtime.setdefault("middlewares", []), own["middlewares"], ref, trace)
        for section, fields in (own.get("step_settings_patch") or {}).items():
            for name, value in fields.items():
                runtime.setdefault("step_settings_patch", {}).setdefault(section, {})[name] = copy.deepcopy(value)
                trace.set(f"runtime.step_settings_patch.{section}.{name}", ref, value)
        for key, value in (layer.extensions or {}).items():
            extensions[key] = copy.deepcopy(value)
            trace.set(f"extensions[{key}]", ref, value)
        _stack_policy(policy, layer.policy or {}, ref, trace)
    if policy.pop("_allow_list", False):
        allowed = sorted(set(policy["allowed_override_keys"]) - set(policy.get("denied_override_keys") or []))
        policy["allowed_override_keys"] = allowed
        if not allowed and policy.get("allow_overrides"):
            # The layers' allow-lists have nothing in common: an empty list would mean "any key".
            policy["allow_overrides"] = False
            origin = trace.paths["policy.allowed_override_keys"]["layer"]
            trace.combine("policy.allow_overrides", origin, False, False, "and")
        trace.paths["policy.allowed_override_keys"]["value"] = allowed
    policy.setdefault("allowed_override_keys", [])
    policy.setdefault("denied_override_keys", [])
    return runtime, policy, extensions, trace


def lineage_changes(
    before: Sequence[Mapping[str, Any]] | None, after: Sequence[Mapping[str, Any]]
) -> list[dict[str, Any]]:
    """The layers whose version differs between two lineages (added: `from_version` None; removed:
    `to_version` None), in the order of `after` then the removed ones: `[{registry, slug, from_version,
    to_version}]`. `before` None (unknown): none."""
    if before is None:
        return []
    old = {(layer["registry"], layer["slug"]): layer.get("version") for layer in before}
    new = {(layer["registry"], layer["slug"]): layer.get("version") for layer in after}
    changes = [
        {"registry": reg, "slug": slug, "from_version": old.get((reg, slug)), "to_version": version}
        for (reg, slug), version in new.items()
        if old.get((reg, slug)) != version
    ]
    changes += [
        {"registry": reg, "slug": slug, "from_version": version, "to_version": None}
        for (reg, slug), version in old.items()
        if (reg, slug) not in new
    ]
    return changes


def trace_overrides(trace: Provenance, applied: Mapping[str, Any]) -> None:
    """Record what request overrides set (the last layer of every resolution that has them)."""
    for key, value in applied.items():
        if key in ("system_prompt", "tools"):
            trace.set(f"runtime.{key}", REQUEST_LAYER, value)
        elif key == "step_settings_patch":
            for section, fields in value.items():
                for name, setting in fields.items():
                    trace.set(f"runtime.step_settings_patch.{section}.{name}", REQUEST_LAYER, setting)
        elif key == "middlewares":
            for entry in value:
                _trace_middleware(trace, REQUEST_LAYER, entry)
