"""PATCH bodies as JSON Merge Patches (RFC 7396, `merge_patch`): what a patch of a profile or a registry
changes, as the arguments of the write services, which validate the merged result like any other write.

A `null` removes a key: an optional field goes back to its empty value, a required one is a 400 on its
path; inside `runtime`, `policy` and `extensions` objects merge key by key and arrays replace.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from .errors import InvalidInput
from .merge_patch import merge_patch
from .validation import canonical_extension_key

# What an optional part of a profile is once a patch removes it (`null`).
PROFILE_EMPTY: dict[str, Any] = {
    "description": "",
    "runtime": {},
    "policy": {},
    "extensions": {},
    "stack": [],
    "visible_to_groups": [],
}
PROFILE_REQUIRED = ("display_name",)

# The fields a registry patch may name: the registry document's key -> `registry_update`'s argument.
REGISTRY_FIELDS = {
    "display_name": "display_name",
    "description": "description",
    "default_profile_slug": "default_profile",
    "protected_labels": "protected_labels",
    "serve_label": "serve_label",
    "editor_groups": "editor_groups",
    "group_defaults": "group_defaults",
    "required_approvals": "required_approvals",
    "approver_groups": "approver_groups",
}
REGISTRY_EMPTY: dict[str, Any] = {
    "description": "",
    "protected_labels": [],
    "serve_label": "",
    "editor_groups": [],
    "group_defaults": [],
    "required_approvals": 0,
    "approver_groups": [],
}
REGISTRY_REQUIRED = {
    "display_name": "a registry always has a display name",
    "default_profile_slug": "a registry with profiles always has a default: name another profile instead",
}


def _required(field: str, why: str = "") -> InvalidInput:
    return InvalidInput(f"{field} is required: null would remove it{f' ({why})' if why else ''}", field=field)


def _canonical_extension_keys(extensions: Mapping[str, Any]) -> Mapping[str, Any]:
    """Extension keys are stored canonical (`namespace.feature@vN`, lower case): a patch names them as a
    create would, so its keys are canonicalised first. Keys that collide (or are invalid) are left as
    sent, for validation to name them."""
    keys = [canonical_extension_key(key) or key for key in extensions]
    if len(set(keys)) < len(keys):
        return extensions
    return dict(zip(keys, extensions.values(), strict=True))


def profile_changes(current: Mapping[str, Any], patch: Mapping[str, Any]) -> dict[str, Any]:
    """`profile_update`'s `changes` for `patch` applied to `current` (the stored fields it names): each
    named field merged, a removed optional one empty. 400 when it removes a required field."""
    if isinstance(patch.get("extensions"), Mapping):
        patch = {**patch, "extensions": _canonical_extension_keys(patch["extensions"])}
    merged = merge_patch({field: current[field] for field in patch}, patch)
    changes: dict[str, Any] = {}
    for field in patch:
        if field in merged:
            changes[field] = merged[field]
        elif field in PROFILE_REQUIRED:
            raise _required(field)
        else:
            changes[field] = PROFILE_EMPTY[field]
    return changes


def registry_changes(patch: Mapping[str, Any]) -> dict[str, Any]:
    """`registry_update`'s arguments for `patch`. A registry's fields are flat (strings and arrays), so
    a merge replaces each one named; `null` empties an optional one and is a 400 on a required one."""
    merged = merge_patch({}, patch)
    changes: dict[str, Any] = {}
    for field in patch:
        if field in merged:
            changes[REGISTRY_FIELDS[field]] = merged[field]
        elif field in REGISTRY_REQUIRED:
            raise _required(field, REGISTRY_REQUIRED[field])
        else:
            changes[REGISTRY_FIELDS[field]] = REGISTRY_EMPTY[field]
    return changes
