"""The general tools: `calculator` and `current_time` (read-only, offered on every mount)."""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from profiles.definitions import ToolDefinition

from .base import Rendered, Tool, ToolContext, ToolError
from .calculator import MAX_LENGTH, calculate

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)

# IANA keys are relative names like "Europe/Paris" or "Etc/GMT+5"; anything else (absolute paths,
# "..") is refused before it reaches zoneinfo, which looks keys up on the file system.
_ZONE_KEY = re.compile(r"^[A-Za-z][A-Za-z0-9_+-]*(?:/[A-Za-z0-9][A-Za-z0-9_+-]*)*$")

# What the offline engine recognises as a calculation or a question about the time.
_CALC_PREFIX = re.compile(
    r"^\s*(?:please\s+)?(?:calculate|compute|evaluate|what(?:'s|\s+is)|how\s+much\s+is)\s+(?P<expr>.+?)[\s?.!=]*$",
    re.I | re.S,
)
_CALC_CHARS = re.compile(r"[\d\s.,+\-*/()%^\u00d7\u00f7]+")
_CALC_OPERATOR = re.compile(r"[+\-*/%^\u00d7\u00f7]|\bof\b", re.I)
_BARE_OPERATOR = re.compile(r"[+*/%^\u00d7\u00f7]|\s-\s|\bof\b", re.I)  # "2026-02-08" is not a subtraction
_TIME = re.compile(
    r"\bwhat\s+time\s+is\s+it\b|\bcurrent\s+(?:time|date)\b|\bwhat(?:'s|\s+is)\s+the\s+(?:time|date)\b"
    r"|\btoday'?s\s+date\b|\bwhat\s+day\s+is\s+it\b|\btime\s+now\b",
    re.I,
)


def calc_expression(text: str) -> str | None:
    """The arithmetic part of "what is 17.5% of 2,340?" / "calculate (3+4)*5" / "2+2", else None."""
    match = _CALC_PREFIX.match(text)
    expr = match.group("expr") if match else text.strip().rstrip("?.!= ")
    expr = expr.strip()
    bare = re.sub(r"\b(?:of|percent)\b", " ", expr, flags=re.I)
    if not expr or not _CALC_CHARS.fullmatch(bare) or not re.search(r"\d", expr):
        return None
    operator = _CALC_OPERATOR if match else _BARE_OPERATOR
    if not operator.search(expr.lstrip("+-")):
        return None
    return expr


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
    followup = "Show the calculation step by step"
    example = "“what is 17.5% of 2,340?”"
    action = "calculate that"
    recognise_order = 70

    def run(self, args: dict[str, Any], ctx: ToolContext) -> dict[str, Any]:
        expression = args.get("expression")
        if not isinstance(expression, str) or not expression.strip():
            raise ToolError("expression must be a non-empty string")
        return {"expression": expression, "result": calculate(expression)}

    def recognise(self, text: str) -> dict[str, Any] | None:
        expression = calc_expression(text)
        return {"expression": expression} if expression else None

    def render(self, result: dict[str, Any]) -> Rendered:
        return f"{result.get('expression', '?')} = {result.get('result', '?')}", []


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
    followup = "What time is it in another time zone?"
    example = "“what time is it?”"
    action = "tell the time"
    recognise_order = 80

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

    def recognise(self, text: str) -> dict[str, Any] | None:
        return {} if _TIME.search(text) else None

    def render(self, result: dict[str, Any]) -> Rendered:
        zone = f" ({result['timezone']})" if result.get("timezone") else ""
        return f"It is {result.get('iso', '?')}{zone}.", []


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
        implementation=tool,
    )


TOOL_DEFINITIONS: list[ToolDefinition] = [_definition(calculator), _definition(current_time)]
