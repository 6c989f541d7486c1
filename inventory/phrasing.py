"""How the offline engine recognises an inventory request (each tool's `recognise`) and how a tool's
result is worded (its `render`): the phrase patterns and the wording helpers of `inventory.tools`."""

from __future__ import annotations

import re
from typing import Any

TIMES = "\u00d7"  # the multiplication sign, as in "a sale of 2 (times) A-1002"

# What the offline engine recognises as a request for each tool (see Tool.recognise).
_SKU = r"[A-Za-z]-\d{3,}"
SALE = (
    re.compile(
        rf"\b(?:record(?:ed)?\s+(?:a\s+)?sales?\s+of|sell|sold)\s+(?P<qty>\d+)\s*"
        rf"(?:x\s+|\u00d7\s*|units?\s+of\s+|pcs\s+of\s+|of\s+)?(?P<sku>{_SKU})\b",
        re.I,
    ),
    re.compile(
        rf"\b(?:record(?:ed)?\s+(?:a\s+)?sales?\s+of|sell|sold)\s+(?P<sku>{_SKU})\s*(?:x|\u00d7)\s*(?P<qty>\d+)\b", re.I
    ),
)
UPDATE = re.compile(
    rf"\b(?P<verb>add|remove|restock)\s+(?P<qty>\d+)\s*(?:units?\s+|pcs\s+)?(?:of\s+|to\s+|from\s+|for\s+)?"
    rf"(?P<sku>{_SKU})\b",
    re.I,
)
LOW_STOCK = re.compile(
    r"\blow(?:\s+on)?[\s-]+stock\b|\brunning\s+low\b|\bstock\s+is\s+low\b|\bneeds?\s+(?:a\s+)?restock", re.I
)
OUT_OF_STOCK = re.compile(r"\bout\s+of\s+stock\b|\bsold\s+out\b", re.I)
THRESHOLD = re.compile(r"(?:\bthreshold(?:\s+of)?|\bbelow|\bunder|\bat\s+most|\bless\s+than|<=?)\s*(\d+)", re.I)
REPORT = re.compile(r"\b(?:report|summary)\b", re.I)
SINCE = re.compile(r"\bsince\s+(\d{4}-\d{2}-\d{2})\b", re.I)
SKU_ANYWHERE = re.compile(rf"\b({_SKU})\b")
SEARCH = re.compile(
    r"\b(?:search(?:\s+for)?|find|look\s+for|looking\s+for|do\s+you\s+have(?:\s+any)?)\s+"
    r"(?:the\s+|all\s+|any\s+|some\s+|items?\s+(?:named|called|matching)\s+)?[\"'\u201c]?(?P<word>[A-Za-z][\w-]*)",
    re.I,
)
SEARCH_STOPWORDS = {"a", "an", "the", "me", "it", "item", "items", "something", "anything", "stock", "out"}


def singular(word: str) -> str:
    word = word.lower()
    if len(word) > 3 and word.endswith("s") and not word.endswith("ss"):
        return word[:-1]
    return word


def plural(count: Any, word: str) -> str:
    return f"{count} {word}" if count == 1 else f"{count} {word}s"


def item_line(item: dict[str, Any]) -> str:
    return f"- {item.get('sku', '?')} {item.get('name', '')}: {item.get('qty', '?')}".replace("  ", " ")


def items_of(data: dict[str, Any]) -> list[dict[str, Any]]:
    return [i for i in data.get("items") or [] if isinstance(i, dict)]


def skus(items: Any) -> str:
    skus = [str(i.get("sku")) for i in items or [] if isinstance(i, dict) and i.get("sku")]
    return f" ({', '.join(skus)})" if skus else ""
