"""A profile's policy (override keys, value bounds) and extensions, and its whole content checked at once."""

from __future__ import annotations

import copy
import math
from collections.abc import Mapping
from typing import Any

from ..definitions import Definitions
from ..definitions import definitions as default_definitions
from ..errors import Errors, InvalidInput
from .names import canonical_extension_key, canonical_override_key
from .runtime import schema_errors, validate_runtime
from .text import storable_errors

POLICY_KEYS = ("allow_overrides", "allowed_override_keys", "denied_override_keys", "read_only", "value_bounds")
# policy.value_bounds: bounds on the engine-setting values a request override may choose (unset: the server's).
VALUE_BOUND_KEYS = ("api_types", "models", "max_timeout_seconds", "max_response_tokens")


def validate_policy(raw: Any, *, prefix: str = "policy") -> tuple[dict[str, Any], Errors]:
    errors: Errors = []
    if raw is None:
        raw = {}
    if not isinstance(raw, Mapping):
        return {}, [(prefix, "must be an object")]
    unstorable = storable_errors(raw, field=prefix)
    if unstorable:
        return {}, unstorable
    for key in raw:
        if key not in POLICY_KEYS:
            errors.append((f"{prefix}.{key}", f"unknown policy key; allowed: {', '.join(POLICY_KEYS)}"))
    policy: dict[str, Any] = {}
    for flag in ("allow_overrides", "read_only"):
        value = raw.get(flag, False)
        if value is None:
            value = False
        if not isinstance(value, bool):
            errors.append((f"{prefix}.{flag}", "must be true or false"))
        policy[flag] = bool(value)
    for list_key in ("allowed_override_keys", "denied_override_keys"):
        value = raw.get(list_key) or []
        if not isinstance(value, list) or not all(isinstance(v, str) and v.strip() for v in value):
            errors.append((f"{prefix}.{list_key}", "must be a list of non-blank strings"))
            value = []
        policy[list_key] = sorted({canonical_override_key(v) for v in value})
    both = set(policy["allowed_override_keys"]) & set(policy["denied_override_keys"])
    if both:
        errors.append((f"{prefix}.override_keys", f"keys both allowed and denied: {', '.join(sorted(both))}"))
    bounds, bound_errors = validate_value_bounds(raw.get("value_bounds"), prefix=f"{prefix}.value_bounds")
    errors += bound_errors
    if bounds:  # stored only when set, so a profile without bounds keeps its stored shape
        policy["value_bounds"] = bounds
    return policy, errors


def validate_value_bounds(raw: Any, *, prefix: str) -> tuple[dict[str, Any], Errors]:
    """`{api_types?: [str], models?: [str], max_timeout_seconds?: number > 0, max_response_tokens?: int >= 1}`.

    Lists name the values a request may switch to ("*" = any; "" in models = the engine's default)."""
    if raw is None:
        return {}, []
    if not isinstance(raw, Mapping):
        return {}, [(prefix, "must be an object")]
    errors: Errors = [
        (f"{prefix}.{key}", f"unknown value bound; allowed: {', '.join(VALUE_BOUND_KEYS)}")
        for key in raw
        if key not in VALUE_BOUND_KEYS
    ]
    bounds: dict[str, Any] = {}
    for key in ("api_types", "models"):
        value = raw.get(key)
        if value is None:
            continue
        if not isinstance(value, list) or not all(isinstance(v, str) and len(v) <= 200 for v in value):
            errors.append((f"{prefix}.{key}", "must be a list of strings"))
            continue
        cleaned = [v.strip().lower() if key == "api_types" else v.strip() for v in value]
        if key == "api_types" and not all(cleaned):
            errors.append((f"{prefix}.{key}", "must be a list of non-blank strings"))
            continue
        bounds[key] = sorted(set(cleaned))
    limits = (
        ("max_timeout_seconds", (int, float), lambda v: v > 0, "a number above 0"),
        ("max_response_tokens", (int,), lambda v: v >= 1, "an integer of at least 1"),
    )
    for key, kind, valid, what in limits:
        value = raw.get(key)
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, kind) or not math.isfinite(value) or not valid(value):
            errors.append((f"{prefix}.{key}", f"must be {what}"))
            continue
        bounds[key] = value
    return bounds, errors


def validate_extensions(
    raw: Any, *, prefix: str = "extensions", defs: Definitions | None = None
) -> tuple[dict[str, Any], Errors]:
    """Canonicalise keys; validate known keys with their codec; keep unknown keys byte-for-byte.

    Storability (NUL, surrogates, NaN) is not checked here: the write services check it with
    `ensure_storable` before they call this."""
    defs = defs or default_definitions
    if raw is None:
        return {}, []
    if not isinstance(raw, Mapping):
        return {}, [(prefix, "must be an object: extension key -> value")]
    errors: Errors = []
    out: dict[str, Any] = {}
    origin: dict[str, str] = {}
    for raw_key, value in raw.items():
        key = canonical_extension_key(raw_key)
        if key is None:
            errors.append((f"{prefix}[{raw_key}]", "invalid extension key: use namespace.feature@vN"))
            continue
        if key in origin:
            errors.append((f"{prefix}[{raw_key}]", f"collides with {origin[key]!r} (both are {key!r})"))
            continue
        origin[key] = raw_key
        codec = defs.extensions.get(key)
        if codec is None:
            out[key] = value
            continue
        value = copy.deepcopy(value)
        found = schema_errors(codec.schema, value, f"{prefix}[{key}]", fill_defaults=True)
        if found:
            errors.extend(found)
            continue
        out[key] = codec.normalise(value) if codec.normalise else value
    return out, errors


def validate_profile_content(
    *, runtime: Any = None, policy: Any = None, extensions: Any = None, defs: Definitions | None = None
) -> dict[str, Any]:
    """Validate the three JSON parts together so one error report lists every problem."""
    rt, errors = validate_runtime(runtime, defs=defs)
    pol, perr = validate_policy(policy)
    ext, eerr = validate_extensions(extensions, defs=defs)
    errors = errors + perr + eerr
    if errors:
        raise InvalidInput.from_errors(errors)
    return {"runtime": rt, "policy": pol, "extensions": ext}
