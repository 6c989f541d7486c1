"""The API's rules in the browser: a Python regular expression as an HTML `pattern` attribute, so that
an input refuses in the browser what the API would refuse (`LABEL_PATTERN`: every label input's)."""

from __future__ import annotations

import re
from collections.abc import Iterable

from .validation import LABEL_RE, LATEST

# Browsers compile a `pattern` attribute with the `v` flag: outside a class only these may be escaped,
# inside one these punctuation characters must be (a bare `-` after a range is a syntax error).
_SYNTAX = frozenset("^$\\.*+?()[]{}|/")
_CLASS_PUNCTUATION = _SYNTAX | frozenset("-&!#%,:;<=>@`~")
_QUANTIFIER = re.compile(r"\{\d+(?:,\d*)?\}")


def _literal(char: str, ignore_case: bool) -> str:
    if ignore_case and char.isascii() and char.isalpha():
        return f"[{char.lower()}{char.upper()}]"
    return "\\" + char if char in _SYNTAX else char


def _in_class(char: str) -> str:
    return "\\" + char if char in _CLASS_PUNCTUATION else char


def _escaped(source: str, i: int) -> tuple[str, int]:
    """The character at `source[i]` (an escape is one character) and the index after it."""
    if source[i] != "\\":
        return source[i], i + 1
    char = source[i + 1 : i + 2]
    if not char or char.isalnum():  # \d, \w, \n...: Python and JavaScript differ, and no rule needs them
        raise ValueError(f"unsupported escape in {source!r}")
    return char, i + 2


def _class(source: str, start: int, ignore_case: bool) -> tuple[str, int]:
    """The class opening at `source[start]` written for the `v` flag, and the index after its `]`."""
    i = start + 1
    negated = source.startswith("^", i)
    i += negated
    if source.startswith("]", i):  # Python reads a leading `]` as a literal, JavaScript as the end
        raise ValueError(f"a class starting with ']' in {source!r}")
    items: list[str] = []
    while i < len(source) and source[i] != "]":
        low, i = _escaped(source, i)
        high = low
        if source.startswith("-", i) and source[i + 1 : i + 2] not in ("", "]"):
            high, i = _escaped(source, i + 1)
        pairs = [(low, high)]
        if ignore_case and (low + high).isascii() and (low + high).isalpha() and low.islower() == high.islower():
            pairs.append((low.swapcase(), high.swapcase()))
        items += [_in_class(a) if a == b else f"{_in_class(a)}-{_in_class(b)}" for a, b in pairs]
    if i >= len(source):
        raise ValueError(f"unclosed class in {source!r}")
    return "[" + "^" * negated + "".join(items) + "]", i + 1


def html_pattern(
    rule: re.Pattern[str], *, ignore_case: bool = False, strip: bool = False, reserved: Iterable[str] = ()
) -> str:
    """The `pattern` attribute that accepts what a canonicalisation followed by `rule` accepts, derived
    from the rule itself so the browser's check and the API's cannot drift.

    `rule` must be anchored (`^...$`) and use literals, classes, `(?:...)` groups, alternation and
    quantifiers; anything else raises rather than emit a pattern that means something else.
    `ignore_case` (ASCII), `strip` (surrounding whitespace) and `reserved` (names refused after
    canonicalising) mirror what the canonicalisation does before matching.
    """
    source = rule.pattern
    if not (source.startswith("^") and source.endswith("$")) or source.endswith("\\$") or rule.flags & ~re.UNICODE:
        raise ValueError(f"{source!r}: only an anchored rule without flags is supported")
    out: list[str] = []
    i, body = 0, source[1:-1]
    while i < len(body):
        quantifier = _QUANTIFIER.match(body, i)
        if body[i] == "[":
            text, i = _class(body, i, ignore_case)
        elif body[i] == "\\":
            char, i = _escaped(body, i)
            text = _literal(char, ignore_case)
        elif body[i] in "^$" or (body.startswith(("(?", "{,"), i) and not body.startswith("(?:", i)):
            raise ValueError(f"{source!r}: inner anchors, special groups and {{,n}} are not supported")
        elif quantifier or body[i] in "()|.*+?":  # structure, the same in both engines
            text = quantifier.group() if quantifier else body[i]
            i += len(text)
            if text[-1] in "*+?}" and body.startswith("+", i):
                raise ValueError(f"{source!r}: possessive quantifiers are not supported")
        else:  # a literal (`{`, `}` and `]` alone are literals in Python, errors under `v`)
            text, i = _literal(body[i], ignore_case), i + 1
        out.append(text)
    space = r"\s*" if strip else ""
    refused = "|".join("".join(_literal(c, ignore_case) for c in name) for name in reserved)
    guard = f"(?!(?:{refused}){space}$)" if refused else ""
    return f"{space}{guard}(?:{''.join(out)}){space}"


# What `canonical_label` accepts (stripped, lower-cased, `LABEL_RE`, not `latest`): every label input's `pattern`.
LABEL_PATTERN = html_pattern(LABEL_RE, ignore_case=True, strip=True, reserved=[LATEST])
