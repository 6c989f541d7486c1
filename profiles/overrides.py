"""Request overrides: their policy (which keys a profile lets a request change), how they apply to a
runtime, the value bounds on the engine settings they choose, and the engine settings themselves.

Plain Python, used by `profiles.resolution.resolve_runtime`.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any

from .definitions import Definitions
from .definitions import definitions as default_definitions
from .errors import InvalidInput, PolicyViolation
from .validation import canonical_override_key, validate_runtime

OVERRIDE_KEYS = ("middlewares", "step_settings_patch", "system_prompt", "tools")
ANY = "*"  # in an allowed list of OverrideBounds: any value


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
