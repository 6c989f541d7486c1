"""Every write to registries and profiles: API, admin, import and seed all call these functions.

Each service runs in one transaction that locks the registry row first (one lock order, so no
deadlocks), then guards the profile version with a conditional UPDATE: on SQLite, where
`select_for_update()` does nothing, the conditional UPDATE is what enforces the version.

The services live in `common` (what they share), `registries`, `labels`, `rollouts` and `profiles`;
callers import them from here.
"""

from .common import (
    CONTENT_FIELDS,
    EDITABLE_FIELDS,
    FILE_SOURCES,
    PROMOTE_PERMISSION,
    STACK_LOCK,
    check_version,
    profile_document,
    stack_check,
    validate_access,
)
from .labels import check_version_exists, label_delete, label_set
from .profiles import profile_create, profile_delete, profile_restore, profile_select, profile_update
from .registries import MAX_APPROVALS, registry_create, registry_patch, registry_set_default, registry_update
from .rollouts import rollout_end, rollout_guard_check, rollout_set

__all__ = [
    "CONTENT_FIELDS",
    "EDITABLE_FIELDS",
    "FILE_SOURCES",
    "MAX_APPROVALS",
    "PROMOTE_PERMISSION",
    "STACK_LOCK",
    "check_version",
    "check_version_exists",
    "label_delete",
    "label_set",
    "profile_create",
    "profile_delete",
    "profile_document",
    "profile_restore",
    "profile_select",
    "profile_update",
    "registry_create",
    "registry_patch",
    "registry_set_default",
    "registry_update",
    "rollout_end",
    "rollout_guard_check",
    "rollout_set",
    "stack_check",
    "validate_access",
]
