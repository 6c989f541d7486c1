"""The chat mount's own tools: `calculator` and `current_time` (both read-only, offered on both mounts)."""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from profiles.definitions import ToolDefinition

from .base import Tool, ToolContext, ToolError
from .calculator import MAX_LENGTH, calculate

MOUNTS = frozenset({"chat", "inventory"})
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)

# IANA keys are relative names like "Europe/Paris" or "Etc/GMT+5"; anything else (absolute paths,
# "..") is refused before it reaches zoneinfo, which looks keys up on the file system.
_ZONE_KEY = re.compile(r"^[A-Za-z][A-Za-z0-9_+-]*(?:/[A-Za-z0-9][A-Za-z0-9_+-]*)*$")


class CalculatorTool(Tool):
    """Safe arithmetic (see chat.runtime.calculator): never eval, exact decimal arithmetic.

    Result: `{"expression": <the expression as given>, "result": <number>}` where `result` is an int
    when the value is whole and otherwise a float rounded to 10 significant digits.
    """

    name = "calculator"
    description = (
        "Evaluate an arithmetic expression exactly. Supports + - * / // % ** and parentheses, "
        "decimals, thousands separators (2,340), percentages ('17.5% of 2,340', '50%') and "
        "sqrt(), abs(), round(), min(), max()."
    )
    parameters = {
        "type": "object",
        "properties": {
            "expression": {
                "type": "string",
                "minLength": 1,
                "maxLength": MAX_LENGTH,
                "description": "The expression, e.g. '17.5% of 2,340' or '(3 + 4) * 2'.",
            }
        },
        "required": ["expression"],
        "additionalProperties": False,
    }

    def run(self, args: dict[str, Any], ctx: ToolContext) -> dict[str, Any]:
        expression = args.get("expression")
        if not isinstance(expression, str) or not expression.strip():
            raise ToolError("expression must be a non-empty string")
        return {"expression": expression, "result": calculate(expression)}


class CurrentTimeTool(Tool):
    """The current date and time in an IANA time zone.

    Result: `{"iso": "2026-02-08T14:03:27+01:00", "timezone": "Europe/Paris", "unix_ms": 1770555807000}`
    (`iso` to the second with the zone's UTC offset; `unix_ms` is the same instant in milliseconds).
    """

    name = "current_time"
    description = "Get the current date and time in a time zone (IANA name such as 'Europe/Paris'; default UTC)."
    parameters = {
        "type": "object",
        "properties": {
            "timezone": {
                "type": "string",
                "default": "UTC",
                "minLength": 1,
                "maxLength": 64,
                "description": "IANA time zone name, e.g. 'UTC', 'America/New_York', 'Asia/Tokyo'.",
            }
        },
        "additionalProperties": False,
    }

    def __init__(self, clock: Callable[[], datetime] | None = None) -> None:
        # Injectable so tests (and replays) can pin the instant.
        self.clock = clock or (lambda: datetime.now(UTC))

    def run(self, args: dict[str, Any], ctx: ToolContext) -> dict[str, Any]:
        key = args.get("timezone") or "UTC"
        zone = _zone(key)
        now = self.clock().astimezone(zone)
        return {
            "iso": now.isoformat(timespec="seconds"),
            "timezone": key,
            "unix_ms": (now - _EPOCH) // timedelta(milliseconds=1),
        }


def _zone(key: Any) -> ZoneInfo:
    if not isinstance(key, str) or len(key) > 64 or not _ZONE_KEY.match(key):
        raise ToolError(f"unknown time zone {key!r}: use an IANA name such as 'Europe/Paris'")
    try:
        return ZoneInfo(key)
    except (ZoneInfoNotFoundError, ValueError, OSError):
        raise ToolError(f"unknown time zone {key!r}: use an IANA name such as 'Europe/Paris'") from None


calculator = CalculatorTool()
current_time = CurrentTimeTool()


def _definition(tool: Tool) -> ToolDefinition:
    return ToolDefinition(
        name=tool.name,
        description=tool.description,
        parameters=tool.parameters,
        writes=False,
        mounts=MOUNTS,
        implementation=tool,
    )


TOOL_DEFINITIONS: list[ToolDefinition] = [_definition(calculator), _definition(current_time)]
