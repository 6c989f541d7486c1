"""JSON Merge Patch (RFC 7396): what a PATCH of a profile or a registry does to the stored document.

Plain Python, no framework: objects merge key by key, `null` removes a key, anything else (arrays,
strings, numbers) replaces. The caller validates the merged result like any other write.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any

MEDIA_TYPE = "application/merge-patch+json"


def merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7396's `MergePatch(Target, Patch)`. Neither argument is changed, and the result shares nothing
    mutable with them (what is stored is never aliased by what is written)."""
    return _merge(copy.deepcopy(target), patch)


def _merge(target: Any, patch: Any) -> Any:
    """The RFC's algorithm (Section 2), on a `target` it may change in place."""
    if not isinstance(patch, Mapping):
        return copy.deepcopy(patch)
    if not isinstance(target, dict):
        target = {}
    for name, value in patch.items():
        if value is None:
            target.pop(name, None)
        else:
            target[name] = _merge(target.get(name), value)
    return target
