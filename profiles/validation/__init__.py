"""Validation and canonicalisation of everything a profile holds. Plain Python, no ORM.

Every write path (API, admin, import, seed, request overrides) goes through these functions so a
rule cannot be bypassed. Errors carry stable field paths such as `runtime.middlewares[1].id`.

The rules live by concern: `names` (slugs, labels, versions, references), `text` (what text can be
stored), `runtime`, `content` (policy, extensions, a whole profile), `access` (groups, stacks); every
name is importable from `profiles.validation`.
"""

from __future__ import annotations

from .access import (
    GROUP_DEFAULT_KEYS,
    MAX_GROUP_NAME,
    MAX_GROUPS,
    MAX_STACK_LAYERS,
    STACK_ENTRY_KEYS,
    validate_group_defaults,
    validate_group_names,
    validate_stack,
)
from .content import (
    POLICY_KEYS,
    VALUE_BOUND_KEYS,
    validate_extensions,
    validate_policy,
    validate_profile_content,
    validate_value_bounds,
)
from .names import (
    EXTENSION_KEY_RE,
    LABEL_RE,
    LATEST,
    SLUG_RE,
    ProfileRef,
    canonical_extension_key,
    canonical_label,
    canonical_override_key,
    canonical_slug,
    parse_profile_ref,
    parse_version,
)
from .runtime import (
    MAX_SYSTEM_PROMPT,
    MIDDLEWARE_ENTRY_KEYS,
    RUNTIME_KEYS,
    DefaultFillingValidator,
    schema_errors,
    validate_runtime,
    validate_step_settings,
)
from .text import SIMPLE_KEY_RE, ensure_storable, storable_errors

__all__ = [
    "EXTENSION_KEY_RE",
    "GROUP_DEFAULT_KEYS",
    "LABEL_RE",
    "LATEST",
    "MAX_GROUPS",
    "MAX_GROUP_NAME",
    "MAX_STACK_LAYERS",
    "MAX_SYSTEM_PROMPT",
    "MIDDLEWARE_ENTRY_KEYS",
    "POLICY_KEYS",
    "RUNTIME_KEYS",
    "SIMPLE_KEY_RE",
    "SLUG_RE",
    "STACK_ENTRY_KEYS",
    "VALUE_BOUND_KEYS",
    "DefaultFillingValidator",
    "ProfileRef",
    "canonical_extension_key",
    "canonical_label",
    "canonical_override_key",
    "canonical_slug",
    "ensure_storable",
    "parse_profile_ref",
    "parse_version",
    "schema_errors",
    "storable_errors",
    "validate_extensions",
    "validate_group_defaults",
    "validate_group_names",
    "validate_policy",
    "validate_profile_content",
    "validate_runtime",
    "validate_stack",
    "validate_step_settings",
    "validate_value_bounds",
]
