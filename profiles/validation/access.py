"""Who may edit and use a registry's profiles (group names, group defaults) and a profile's stack of layers."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ..errors import Errors, InvalidInput
from .names import canonical_slug, parse_version

MAX_GROUP_NAME = 150  # Django's Group.name
MAX_GROUPS = 100
# A profile's lineage holds at most this many base layers (its stack, their stacks, ...).
MAX_STACK_LAYERS = 8
STACK_ENTRY_KEYS = ("registry", "slug", "version")
GROUP_DEFAULT_KEYS = ("group", "profile")


def validate_group_names(raw: Any, *, field: str) -> tuple[list[str], Errors]:
    """A list of Django group names -> sorted, unique, trimmed names. None is the empty list."""
    if raw is None:
        return [], []
    if not isinstance(raw, list):
        return [], [(field, "must be a list of group names")]
    if len(raw) > MAX_GROUPS:
        return [], [(field, f"at most {MAX_GROUPS} groups")]
    names: set[str] = set()
    errors: Errors = []
    for i, value in enumerate(raw):
        name = value.strip() if isinstance(value, str) else None
        if not name:
            errors.append((f"{field}[{i}]", "a group name is a non-blank string"))
        elif len(name) > MAX_GROUP_NAME:
            errors.append((f"{field}[{i}]", f"at most {MAX_GROUP_NAME} characters"))
        else:
            names.add(name)
    return sorted(names), errors


def validate_stack(raw: Any, *, registry: str, field: str = "stack") -> tuple[list[dict[str, Any]], Errors]:
    """The shape of a stack: `[{registry?, slug, version?}]` -> entries with `registry` filled in (the
    profile's own when absent). Whether the layers exist, cycles and the lineage size are checked
    against the database (`profiles.selectors.stack_layers`)."""
    if raw is None:
        return [], []
    if not isinstance(raw, list):
        return [], [(field, "must be a list of {registry?, slug, version?}")]
    out: list[dict[str, Any]] = []
    errors: Errors = []
    for i, entry in enumerate(raw):
        at = f"{field}[{i}]"
        if not isinstance(entry, Mapping):
            errors.append((at, "must be an object {registry?, slug, version?}"))
            continue
        unknown = [key for key in entry if key not in STACK_ENTRY_KEYS]
        if unknown:
            errors.append((f"{at}.{unknown[0]}", f"unknown key; allowed: {', '.join(STACK_ENTRY_KEYS)}"))
            continue
        try:
            layer: dict[str, Any] = {
                "registry": canonical_slug(entry.get("registry") or registry, field=f"{at}.registry"),
                "slug": canonical_slug(entry.get("slug"), field=f"{at}.slug"),
            }
            if entry.get("version") is not None:
                if isinstance(entry["version"], bool) or not isinstance(entry["version"], (int, str)):
                    raise InvalidInput("must be a positive integer version", field=f"{at}.version")
                layer["version"] = parse_version(entry["version"], field=f"{at}.version")
        except InvalidInput as exc:
            errors.append((exc.field or at, exc.message))
            continue
        if any(layer == seen for seen in out):
            errors.append((at, "this layer is already in the stack"))
            continue
        out.append(layer)
    if len(out) > MAX_STACK_LAYERS:
        errors.append((f"{field}[{MAX_STACK_LAYERS}]", f"a lineage holds at most {MAX_STACK_LAYERS} base layers"))
    return out, errors


def validate_group_defaults(raw: Any, *, field: str = "group_defaults") -> tuple[list[dict[str, str]], Errors]:
    """`[{group, profile}]` in order (the first entry whose group a user is in wins). The profiles are
    checked against the registry by the service."""
    if raw is None:
        return [], []
    if not isinstance(raw, list):
        return [], [(field, "must be a list of {group, profile}")]
    out: list[dict[str, str]] = []
    errors: Errors = []
    seen: dict[str, int] = {}
    for i, entry in enumerate(raw):
        at = f"{field}[{i}]"
        if not isinstance(entry, Mapping):
            errors.append((at, "must be an object {group, profile}"))
            continue
        unknown = [key for key in entry if key not in GROUP_DEFAULT_KEYS]
        if unknown:
            errors.append((f"{at}.{unknown[0]}", f"unknown key; allowed: {', '.join(GROUP_DEFAULT_KEYS)}"))
            continue
        groups, found = validate_group_names([entry.get("group")], field=f"{at}.group")
        if found:
            errors.append((f"{at}.group", found[0][1]))
            continue
        group = groups[0]
        if group in seen:
            errors.append((f"{at}.group", f"group {group!r} already has a default (at [{seen[group]}])"))
            continue
        try:
            profile = canonical_slug(entry.get("profile"), field=f"{at}.profile")
        except InvalidInput as exc:
            errors.append((exc.field or f"{at}.profile", exc.message))
            continue
        seen[group] = i
        out.append({"group": group, "profile": profile})
    return out, errors
