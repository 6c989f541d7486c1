"""JSON parsing that turns hostile input into a 400 instead of a 500: nesting too deep for the
decoder (RecursionError), the `NaN` / `Infinity` / `-Infinity` literals, which Python's decoder
accepts but JSON (RFC 8259) does not, and which no response could encode back, and an object that
names a key twice (Python keeps the last one silently; which one a client meant is anyone's guess)."""

from __future__ import annotations

import codecs
import json
from typing import Any

from rest_framework.exceptions import ParseError
from rest_framework.parsers import JSONParser, get_encoding  # type: ignore[attr-defined]  # newer than the DRF stubs

from profiles.merge_patch import MEDIA_TYPE as MERGE_PATCH_MEDIA_TYPE


class NonFiniteNumber(ValueError):
    pass


def refuse_constant(name: str) -> Any:
    """`parse_constant` hook: called for NaN, Infinity and -Infinity only."""
    raise NonFiniteNumber(f"{name} is not valid JSON: numbers must be finite")


class DuplicateKey(ValueError):
    pass


def unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """`object_pairs_hook`: an object with a key given twice is refused."""
    result: dict[str, Any] = {}
    for key, value in pairs:
        if key in result:
            raise DuplicateKey(f"the key {key!r} is given twice in one object")
        result[key] = value
    return result


class SafeJSONParser(JSONParser):
    """Refuses NaN and Infinity, and duplicate keys, whatever DRF's STRICT_JSON setting says."""

    def parse(self, stream: Any, media_type: str | None = None, parser_context: Any = None) -> Any:
        encoding = get_encoding(parser_context or {})
        try:
            return json.load(
                codecs.getreader(encoding)(stream), parse_constant=refuse_constant, object_pairs_hook=unique_keys
            )
        except RecursionError:
            raise ParseError("JSON parse error - nested too deeply") from None
        except ValueError as exc:  # JSONDecodeError, NonFiniteNumber, DuplicateKey and undecodable bytes
            raise ParseError(f"JSON parse error - {exc}") from None


class MergePatchParser(SafeJSONParser):
    """`application/merge-patch+json` (RFC 7396): JSON, parsed like any body; what it means (a merge into
    the stored document) is the PATCH's business."""

    media_type = MERGE_PATCH_MEDIA_TYPE
