"""Structured differences between two profile documents, in the validation error path grammar.

`document_diff(a, b)` -> `[{op: add|remove|change, path, from?, to?}]`, in a stable order. Paths are the
ones validation errors use, so an editor reads both the same way: `runtime.system_prompt`,
`runtime.tools[1]`, `extensions[webchat.starter_suggestions@v1].items[0]`, and middlewares by their
identity rather than their position: `runtime.middlewares[guardrail#g1].config.blocked_terms`
(`[name]` for an entry without an id). A reordered chain is one `change` of `runtime.middlewares`
with the identities before and after. Plain Python: no database.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

# The parts of a profile document that a version changes (metadata is not content).
CONTENT_PARTS = ("display_name", "description", "runtime", "policy", "extensions", "stack", "visible_to_groups")
# Parts a document may leave out when empty (and older versions never had).
LIST_PARTS = ("stack", "visible_to_groups")
Change = dict[str, Any]


def document_diff(a: Mapping[str, Any], b: Mapping[str, Any]) -> list[Change]:
    """What changes from document `a` to document `b`; `[]` when their content is the same."""
    changes: list[Change] = []
    for part in CONTENT_PARTS:
        before: Any = a.get(part)
        after: Any = b.get(part)
        if part in ("runtime", "policy", "extensions"):
            before, after = before or {}, after or {}
        elif part in LIST_PARTS:
            before, after = before or [], after or []
        if part == "extensions":
            _keyed(changes, "extensions", before, after, lambda key: f"extensions[{key}]")
        elif part == "runtime":
            _runtime(changes, before, after)
        else:
            _value(changes, part, before, after)
    return changes


def _runtime(changes: list[Change], a: Mapping[str, Any], b: Mapping[str, Any]) -> None:
    for key in sorted(set(a) | set(b)):
        path = f"runtime.{key}"
        if key == "middlewares" and key in a and key in b:
            _middlewares(changes, a[key] or [], b[key] or [])
        else:
            _member(changes, path, a, b, key)


def _identity(entry: Any, index: int) -> str:
    if not isinstance(entry, Mapping):
        return str(index)
    name, ident = entry.get("name", index), entry.get("id")
    return f"{name}#{ident}" if ident else str(name)


def _middlewares(changes: list[Change], a: list[Any], b: list[Any]) -> None:
    keyed_a = {_identity(e, i): e for i, e in enumerate(a)}
    keyed_b = {_identity(e, i): e for i, e in enumerate(b)}
    if len(keyed_a) != len(a) or len(keyed_b) != len(b):  # identities not unique: compare by position
        _value(changes, "runtime.middlewares", a, b)
        return
    _keyed(changes, "runtime.middlewares", keyed_a, keyed_b, lambda key: f"runtime.middlewares[{key}]")
    common_a = [k for k in keyed_a if k in keyed_b]
    common_b = [k for k in keyed_b if k in keyed_a]
    if common_a != common_b:
        changes.append({"op": "change", "path": "runtime.middlewares", "from": list(keyed_a), "to": list(keyed_b)})


def _keyed(changes: list[Change], path: str, a: Any, b: Any, item_path: Any) -> None:
    """A mapping whose keys are shown in brackets (extension keys, middleware identities)."""
    if not isinstance(a, Mapping) or not isinstance(b, Mapping):
        _value(changes, path, a, b)
        return
    for key in sorted(set(a) | set(b)):
        if key not in b:
            changes.append({"op": "remove", "path": item_path(key), "from": a[key]})
        elif key not in a:
            changes.append({"op": "add", "path": item_path(key), "to": b[key]})
        else:
            _value(changes, item_path(key), a[key], b[key])


def _member(changes: list[Change], path: str, a: Mapping[str, Any], b: Mapping[str, Any], key: str) -> None:
    if key not in b:
        changes.append({"op": "remove", "path": path, "from": a[key]})
    elif key not in a:
        changes.append({"op": "add", "path": path, "to": b[key]})
    else:
        _value(changes, path, a[key], b[key])


def _value(changes: list[Change], path: str, a: Any, b: Any) -> None:
    if isinstance(a, Mapping) and isinstance(b, Mapping):
        for key in sorted(set(a) | set(b)):
            _member(changes, f"{path}.{key}", a, b, key)
    elif isinstance(a, list) and isinstance(b, list):
        for index in range(max(len(a), len(b))):
            item = f"{path}[{index}]"
            if index >= len(b):
                changes.append({"op": "remove", "path": item, "from": a[index]})
            elif index >= len(a):
                changes.append({"op": "add", "path": item, "to": b[index]})
            else:
                _value(changes, item, a[index], b[index])
    elif a != b or type(a) is not type(b):
        changes.append({"op": "change", "path": path, "from": a, "to": b})
