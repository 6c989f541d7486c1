"""Storable text: what cannot be stored (lone surrogates, NUL, NaN and infinity) found with the field path
that holds it, at the boundary where text from outside comes in."""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from decimal import Decimal
from typing import Any

from ..errors import Errors, InvalidInput

SIMPLE_KEY_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_-]*$")  # a key shown as `.key` in a path (else `[key]`)


def _text_problem(text: str) -> str | None:
    """Why `text` cannot be stored or sent as UTF-8 JSON, or None."""
    nul = text.find("\x00")
    if text.isascii():
        return None if nul < 0 else f"contains a NUL character (U+0000) at position {nul}, which cannot be stored"
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:  # only lone surrogates fail: every other code point has a UTF-8 form
        if nul < 0 or exc.start < nul:
            return (
                f"contains an unpaired UTF-16 surrogate (U+{ord(text[exc.start]):04X}) at position {exc.start}: "
                "text must be valid Unicode"
            )
    if nul >= 0:
        return f"contains a NUL character (U+0000) at position {nul}, which cannot be stored"
    return None


def _printable_key(key: str) -> str:
    """A dict key as it may appear in an error path: NUL, surrogates and other controls escaped."""
    return "".join(c if c.isprintable() else c.encode("unicode_escape").decode("ascii") for c in key)


def _key_path(path: str, key: Any) -> str:
    key = _printable_key(str(key))
    if SIMPLE_KEY_RE.match(key):
        return f"{path}.{key}" if path else key
    return f"{path}[{key}]"


def storable_errors(value: Any, *, field: str) -> Errors:
    """The first (path, message) that makes `value` unstorable, as a list (empty when it is fine).

    Walks str, dict (keys and values), list and tuple values, iteratively (any depth). Refused: lone
    UTF-16 surrogates (no UTF-8 form: the JSON encoder and every database driver fail on them), NUL
    (PostgreSQL text and jsonb refuse it) and non-finite floats and decimals (NaN and Infinity are not
    JSON). Anything else (numbers, booleans, None) passes; types are the other validators' business.
    """
    stack: list[tuple[str, Any]] = [(field, value)]
    while stack:
        path, node = stack.pop()
        if isinstance(node, str):
            problem = _text_problem(node)
            if problem:
                return [(path, problem)]
        elif isinstance(node, float):
            if not math.isfinite(node):
                return [(path, f"must be a finite number, not {node!r}: JSON has no NaN or Infinity")]
        elif isinstance(node, Decimal):
            if not node.is_finite():
                return [(path, f"must be a finite number, not {node}: JSON has no NaN or Infinity")]
        elif isinstance(node, Mapping):
            children = []
            for key, item in node.items():
                at = _key_path(path, key)
                if isinstance(key, str):
                    problem = _text_problem(key)
                    if problem:
                        return [(at, f"key {problem}")]
                children.append((at, item))
            stack.extend(reversed(children))  # depth first, in document order
        elif isinstance(node, (list, tuple)):
            stack.extend((f"{path}[{i}]", item) for i, item in reversed(list(enumerate(node))))
    return []


def ensure_storable(value: Any, *, field: str) -> Any:
    """Return `value` if every string, key and number in it can be stored and sent as JSON.

    The one check for "storable text" on every write path (profiles, inventory, and any app that
    stores client JSON). Raises InvalidInput with the dotted path of the first offending part, e.g.
    `runtime.system_prompt`, `extensions[acme.notes@v1].items[2]`; `field=""` makes a dict's keys the
    top-level field names.
    """
    errors = storable_errors(value, field=field)
    if errors:
        raise InvalidInput.from_errors(errors)
    return value
