"""Text from outside (providers, clients) made storable and encodable at the boundary. Plain Python.

JSON allows what PostgreSQL and UTF-8 encoders refuse: lone UTF-16 surrogates ("\\ud800", or an emoji
whose surrogate pair a provider split across two stream chunks) and NUL. Pairs are joined; a lone
surrogate or NUL becomes U+FFFD.
"""

from __future__ import annotations

import math
from typing import Any

REPLACEMENT = "\ufffd"


def _is_high_surrogate(char: str) -> bool:
    return "\ud800" <= char <= "\udbff"


def clean_text(text: str) -> str:
    """Join surrogate pairs, replace lone surrogates and NUL with U+FFFD."""
    if text.isascii():
        return text.replace("\x00", REPLACEMENT)
    joined = text.encode("utf-16-le", "surrogatepass").decode("utf-16-le", "replace")
    return joined.replace("\x00", REPLACEMENT)


def clean_value(value: Any) -> Any:
    """`clean_text` on every string of a JSON-like value (keys included); NaN and infinities, which
    JSON columns refuse, become null."""
    if isinstance(value, str):
        return clean_text(value)
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {clean_value(k): clean_value(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [clean_value(v) for v in value]
    return value


class StreamText:
    """`clean_text` over a stream of chunks: a high surrogate at the end of a chunk waits for the next."""

    def __init__(self) -> None:
        self.held = ""

    def feed(self, chunk: str) -> str:
        text = self.held + chunk
        self.held = ""
        if text and _is_high_surrogate(text[-1]):
            text, self.held = text[:-1], text[-1]
        return clean_text(text)

    def flush(self) -> str:
        text, self.held = self.held, ""
        return clean_text(text)
