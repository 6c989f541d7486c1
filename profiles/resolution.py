"""Resolution of a profile plus request overrides into an effective runtime, and its fingerprint.

Plain Python: the selector in `profiles.selectors` loads the rows and calls `resolve_runtime`.
"""

from __future__ import annotations

import copy
import hashlib
import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from .definitions import Definitions, ToolDefinition
from .definitions import definitions as default_definitions
from .errors import InvalidInput, PolicyViolation, StackError
from .validation import canonical_override_key, validate_runtime

OVERRIDE_KEYS = ("middlewares", "step_settings_patch", "system_prompt", "tools")
ANY = "*"  # in an allowed list of OverrideBounds: any value


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


def canonical_overrides(raw: Any) -> dict[str, Any]:
    if raw is None:
        return {}
    if not isinstance(raw, Mapping):
        raise InvalidInput("request_overrides must be an object", field="request_overrides")
    out: dict[str, Any] = {}
    origin: dict[str, str] = {}
    for raw_key, value in raw.items():
        key = canonical_override_key(str(raw_key))
        if key in origin:
            raise InvalidInput(
                f"override keys {origin[key]!r} and {raw_key!r} both mean {key!r}", field=f"request_overrides.{raw_key}"
            )
        origin[key] = str(raw_key)
        out[key] = value
    return out


def check_policy(policy: Mapping[str, Any], keys: list[str]) -> None:
    """Keys are checked in sorted order so the first violation reported is deterministic."""
    allowed = set(policy.get("allowed_override_keys") or [])
    denied = set(policy.get("denied_override_keys") or [])
    for key in sorted(keys):
        path = f"request_overrides.{key}"
        if not policy.get("allow_overrides"):
            raise PolicyViolation("this profile does not allow request overrides", field=path)
        if key in denied:
            raise PolicyViolation(f"override of {key!r} is denied by the profile policy", field=path)
        if allowed and key not in allowed:
            raise PolicyViolation(f"override of {key!r} is not in the profile's allow-list", field=path)


def _merge_middlewares(base: list[dict[str, Any]], overrides: Any) -> tuple[list[dict[str, Any]], dict[int, int]]:
    """The merged chain, and for each merged position the request entry that last changed it."""
    if not isinstance(overrides, list):
        raise InvalidInput("must be a list", field="request_overrides.middlewares")
    merged = copy.deepcopy(base)
    origin: dict[int, int] = {}
    for i, entry in enumerate(overrides):
        at = f"request_overrides.middlewares[{i}]"
        if not isinstance(entry, Mapping) or not isinstance(entry.get("name"), str):
            raise InvalidInput("must be an object with a name", field=at)
        name, mid = entry["name"].strip(), entry.get("id")
        if mid is not None:
            matches = [m for m in merged if m["name"] == name and m.get("id") == mid]
        else:
            matches = [m for m in merged if m["name"] == name and "id" not in m]
            if len(matches) > 1:
                raise InvalidInput(f"override of {name!r} without id matches several entries: add an id", field=at)
        if not matches:
            origin[len(merged)] = i
            merged.append(dict(entry))
            continue
        target = matches[0]
        origin[next(k for k, m in enumerate(merged) if m is target)] = i
        if "enabled" in entry:
            target["enabled"] = entry["enabled"]
        if entry.get("config") is not None:
            if not isinstance(entry["config"], Mapping):
                raise InvalidInput("must be an object", field=f"{at}.config")
            target["config"] = {**target.get("config", {}), **entry["config"]}
    return merged, origin


def _request_path(field: str, origin: dict[int, int]) -> str:
    """`request_overrides.middlewares[<merged>]…` -> the index the request used."""
    match = re.match(r"request_overrides\.middlewares\[(\d+)\](.*)", field)
    if match and int(match.group(1)) in origin:
        return f"request_overrides.middlewares[{origin[int(match.group(1))]}]{match.group(2)}"
    return field


def apply_overrides(
    runtime: Mapping[str, Any], policy: Mapping[str, Any], raw_overrides: Any, *, defs: Definitions | None = None
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Return (effective runtime, overrides applied). No overrides: the policy is not consulted."""
    overrides = canonical_overrides(raw_overrides)
    effective = copy.deepcopy(dict(runtime))
    if not overrides:
        return effective, {}
    check_policy(policy, list(overrides))
    origin: dict[int, int] = {}
    for key in sorted(overrides):
        value = overrides[key]
        if key not in OVERRIDE_KEYS:
            raise InvalidInput(
                f"unknown override key; allowed: {', '.join(OVERRIDE_KEYS)}", field=f"request_overrides.{key}"
            )
        if key in ("system_prompt", "tools"):
            effective[key] = value
        elif key == "middlewares":
            effective["middlewares"], origin = _merge_middlewares(effective.get("middlewares", []), value)
        else:
            if not isinstance(value, Mapping):
                raise InvalidInput("must be an object: section -> field -> value", field=f"request_overrides.{key}")
            patch = copy.deepcopy(effective.get("step_settings_patch", {}))
            for section, fields in value.items():
                if not isinstance(fields, Mapping):
                    raise InvalidInput("must be an object", field=f"request_overrides.{key}.{section}")
                for name in fields:
                    setting = (defs or default_definitions).step_settings.get((section, name))
                    if setting is not None and not setting.request_overridable:
                        raise PolicyViolation(
                            f"{section}.{name} is set by the profile or the server, never per request",
                            field=f"request_overrides.{key}.{section}.{name}",
                        )
                patch.setdefault(section, {}).update(fields)
            effective["step_settings_patch"] = patch
    validated, errors = validate_runtime(effective, prefix="request_overrides", defs=defs, check_sources=False)
    if errors:
        raise InvalidInput.from_errors([(_request_path(field, origin), message) for field, message in errors])
    return validated, overrides


@dataclass(frozen=True)
class OverrideBounds:
    """Bounds on the engine-setting values a request override may choose: the server's (registered with
    the engine choice, see `Definitions.engine`), each replaced by the profile's `policy.value_bounds`
    where it sets one.

    The policy allows keys; these bound values, so a request cannot spend the server's key unchecked.
    They only refuse requests (403 `policy_violation`, like a refused key): they never change an
    effective runtime, so they are not part of the fingerprint. A request may always keep or restate
    what the profile (or the server default) already uses, and lower a limit the profile set higher.
    """

    api_types: tuple[str, ...]  # engines a request may switch to; "*" = any
    models: tuple[str, ...]  # effective model a request may switch to; "" = the engine's default; "*" = any
    max_timeout_seconds: float  # highest timeout a request may set
    max_response_tokens: int  # highest response token limit a request may set
    # The bounds the profile's policy set (the others are the server's), for messages.
    from_policy: frozenset[str] = frozenset()

    def with_policy(self, value_bounds: Mapping[str, Any] | None) -> OverrideBounds:
        """These bounds with the profile's `policy.value_bounds` (validated) replacing them field by field."""
        chosen = {key: value for key, value in (value_bounds or {}).items() if key in BOUNDS}
        if not chosen:
            return self
        changes: dict[str, Any] = {k: tuple(v) if isinstance(v, list) else v for k, v in chosen.items()}
        return replace(self, **changes, from_policy=self.from_policy | set(chosen))

    def source(self, key: str, *, defs: Definitions | None = None) -> str:
        """Where the bound on `key` comes from, as an admin would look it up."""
        if key in self.from_policy:
            return f"the profile's override bound policy.value_bounds.{key}"
        names = (defs or default_definitions).engine.bound_names
        return f"the server's override bound {names.get(key, key)}"

    @classmethod
    def server(cls, *, defs: Definitions | None = None) -> OverrideBounds:
        """The server's bounds, as the app that runs engines registered them."""
        bounds = (defs or default_definitions).engine.override_bounds()
        return cls(**{key: bounds[key] for key in BOUNDS})


# The bounds (keys of policy.value_bounds).
BOUNDS = ("api_types", "models", "max_timeout_seconds", "max_response_tokens")


def _model_allowed(models: tuple[str, ...], provider: str, model: str, defs: Definitions) -> bool:
    if ANY in models or model in models:
        return True
    return "" in models and model == defs.default_models.get(provider, "")


def check_bounds(
    request_patch: Mapping[str, Any] | None,
    before: Mapping[str, Mapping[str, Any]],
    after: Mapping[str, Mapping[str, Any]],
    bounds: OverrideBounds | None,
    *,
    defs: Definitions | None = None,
) -> None:
    """Refuse engine-setting values a request chose outside the server's bounds.

    `before`/`after` are the engine settings without/with the request. Only what the request touched
    and changed is checked, in sorted field order so the first violation reported is deterministic.
    """
    defs = defs or default_definitions
    choice = defs.engine
    section = choice.section
    touched = {name for name in ((request_patch or {}).get(section) or {}) if name in choice.bounded_fields()}
    if not touched:
        return
    bounds = bounds or OverrideBounds.server(defs=defs)
    old, new = before.get(section, {}), after.get(section, {})
    old_engine, new_engine = engine_summary(before, defs=defs), engine_summary(after, defs=defs)

    def path(name: str) -> str:
        return f"request_overrides.step_settings_patch.{section}.{name}"

    def source(key: str) -> str:
        return bounds.source(key, defs=defs)

    provider, model = new_engine["provider"], new_engine["model"]
    type_changed = choice.api_type in touched and provider != old_engine["provider"]
    if type_changed and ANY not in bounds.api_types and provider not in bounds.api_types:
        raise PolicyViolation(
            f"{section}.{choice.api_type} {provider!r} is outside {source('api_types')} ({', '.join(bounds.api_types)})",
            field=path(choice.api_type),
        )
    model_changed = (provider, model) != (old_engine["provider"], old_engine["model"])
    if (
        touched & {choice.api_type, choice.model}
        and model_changed
        and not _model_allowed(bounds.models, provider, model, defs)
    ):
        shown = ", ".join(m or "(the engine's default)" for m in bounds.models)
        raise PolicyViolation(
            f"model {model!r} ({provider}) is outside {source('models')} ({shown})",
            field=path(choice.model if choice.model in touched else choice.api_type),
        )
    for name, bound, key in (
        (choice.max_response_tokens, bounds.max_response_tokens, "max_response_tokens"),
        (choice.timeout_seconds, bounds.max_timeout_seconds, "max_timeout_seconds"),
    ):
        value, previous = new.get(name), old.get(name)
        if name not in touched or value == previous:
            continue
        if value is None:  # cleared: the profile's limit would be lifted
            raise PolicyViolation(
                f"{section}.{name} cannot be cleared by a request ({source(key)}: {bound:g})",
                field=path(name),
            )
        if value > bound and (previous is None or value > previous):
            raise PolicyViolation(
                f"{section}.{name} {value:g} is above {source(key)} ({bound:g})",
                field=path(name),
            )


def engine_settings(
    server_defaults: Mapping[str, Mapping[str, Any]],
    profile_patch: Mapping[str, Mapping[str, Any]] | None,
    *,
    defs: Definitions | None = None,
) -> dict[str, dict[str, Any]]:
    """Field defaults < server defaults < the effective patch (profile + request). Secrets never enter."""
    defs = defs or default_definitions
    merged: dict[str, dict[str, Any]] = {}
    for (section, name), setting in sorted(defs.step_settings.items()):
        if setting.secret:
            continue
        value = (server_defaults.get(section) or {}).get(name, setting.default)
        value = ((profile_patch or {}).get(section) or {}).get(name, value)
        if value is not None and value != "":
            merged.setdefault(section, {})[name] = value
    return merged


def engine_summary(settings: Mapping[str, Mapping[str, Any]], *, defs: Definitions | None = None) -> dict[str, Any]:
    defs = defs or default_definitions
    choice = defs.engine
    chosen = settings.get(choice.section, {})
    provider = chosen.get(choice.api_type, choice.fallback_api_type)
    model = chosen.get(choice.model) or defs.default_models.get(provider, "")
    return {"provider": provider, "model": model, "settings": settings}


# --------------------------------------------------------------------------- stacked profiles


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
