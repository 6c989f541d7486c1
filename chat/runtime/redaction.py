"""Personal data in text: e-mail addresses, phone numbers and card numbers found (a pattern, then a
check that tells them from dates, IP addresses, SKUs and digit runs that fail the Luhn check) and
masked. Plain Python, used by the `redact` middleware."""

from __future__ import annotations

import re
from typing import Any

_EMAIL = re.compile(
    r"(?<![\w.%+-])[A-Za-z0-9._%+-]+@[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}\b"
)
# 13-19 digits, optionally grouped by single spaces or dashes; the Luhn check decides.
_CARD = re.compile(r"(?<![\w.,+-])(?<!\d[ -])\d(?:[ -]?\d){12,18}(?![\w]|[ .,-]?\d)")
_PHONE = re.compile(
    r"""
    (?<![\w.,+-])(?<!\d[ ])
    (?:
        \+\d{7,15}                                          # +14155550134
      | (?:\+\d{1,3}[ .-]?(?:\(\d{1,4}\)[ .-]?)?            # +1 (415) / +44
          | \(\d{2,4}\)[ ]?                                 # (415)
        )?
        \d{2,4}(?:[ .-]\d{2,4}){1,4}                        # 555-0134 / 20 7946 0958
    )
    (?![\w]|[.,-]?\d)
    """,
    re.VERBOSE,
)


def _luhn(digits: str) -> bool:
    total = 0
    for position, char in enumerate(reversed(digits)):
        value = int(char)
        if position % 2:
            value = value * 2 - 9 if value > 4 else value * 2
        total += value
    return total % 10 == 0


def _is_card(text: str) -> bool:
    digits = re.sub(r"\D", "", text)
    return 13 <= len(digits) <= 19 and len(set(digits)) > 1 and _luhn(digits)


def _is_phone(text: str) -> bool:
    """Tell phone numbers from other digit groups (dates, IP addresses, ranges, SKUs)."""
    digits = re.sub(r"\D", "", text)
    if not 7 <= len(digits) <= 15:
        return False
    if text.startswith(("+", "(")) or "(" in text:
        return True
    separators = set(re.findall(r"[ .-]", text))
    groups = re.split(r"[ .-]", text)
    if len(separators) != 1:
        return False
    if len(groups) == 2:  # a local number: 555-0134
        return separators == {"-"} and [len(g) for g in groups] == [3, 4]
    if all(len(g) == 2 for g in groups):  # 01 23 45 67 89
        return len(groups) == 5
    # 415-555-0134, 020 7946 0958, 030 1234 5678: subscriber part of 4 digits (not 192.168.100.200).
    return len(groups[-1]) == 4 and len(groups[0]) >= 2


_DETECTORS: dict[str, tuple[re.Pattern[str], Any]] = {
    # Order matters: e-mail addresses may contain digits, cards are longer runs than phones.
    "email": (_EMAIL, None),
    "card": (_CARD, _is_card),
    "phone": (_PHONE, _is_phone),
}
REDACT_KINDS = ("email", "phone", "card")  # as profiles list them; detection follows _DETECTORS


def redact_text(text: str, kinds: list[str] | tuple[str, ...], mask: str) -> tuple[str, dict[str, int]]:
    """Mask the personal data of `kinds` in `text`; return the new text and how many of each kind."""
    counts: dict[str, int] = {}
    for kind, (pattern, accept) in _DETECTORS.items():
        if kind not in kinds:
            continue
        replacement = mask.replace("{kind}", kind)
        found = 0

        def substitute(match: re.Match[str], accept: Any = accept, replacement: str = replacement) -> str:
            nonlocal found
            if accept is not None and not accept(match.group()):
                return match.group()
            found += 1
            return replacement

        text = pattern.sub(substitute, text)
        if found:
            counts[kind] = found
    return text, counts
