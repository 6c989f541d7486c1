"""The embedded offline engine: deterministic, no network, and still a real engine.

It exercises the whole runtime path: it streams in several deltas, shows visibly that it obeys its
system prompt (persona prefix, findings/evidence structure, agent mode), asks for the offered tools
when it recognises a request, and answers only from the tool results it is given; it never invents data.
"""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

from chat.runtime.base import EngineDone, EngineEvent, Message, TextDelta, ToolCall, ToolCallsRequested, ToolSpec

WORDS_PER_CHUNK = 3
TIMES = "\u00d7"  # the multiplication sign, as in "a sale of 2 (times) A-1002"
QUOTE_CHARS = 80

_SKU = r"[A-Za-z]-\d{3,}"
_SALE = (
    re.compile(
        rf"\b(?:record(?:ed)?\s+(?:a\s+)?sales?\s+of|sell|sold)\s+(?P<qty>\d+)\s*"
        rf"(?:x\s+|\u00d7\s*|units?\s+of\s+|pcs\s+of\s+|of\s+)?(?P<sku>{_SKU})\b",
        re.I,
    ),
    re.compile(
        rf"\b(?:record(?:ed)?\s+(?:a\s+)?sales?\s+of|sell|sold)\s+(?P<sku>{_SKU})\s*(?:x|\u00d7)\s*(?P<qty>\d+)\b", re.I
    ),
)
_UPDATE = re.compile(
    rf"\b(?P<verb>add|remove|restock)\s+(?P<qty>\d+)\s*(?:units?\s+|pcs\s+)?(?:of\s+|to\s+|from\s+|for\s+)?"
    rf"(?P<sku>{_SKU})\b",
    re.I,
)
_LOW_STOCK = re.compile(
    r"\blow(?:\s+on)?[\s-]+stock\b|\brunning\s+low\b|\bstock\s+is\s+low\b|\bneeds?\s+(?:a\s+)?restock", re.I
)
_OUT_OF_STOCK = re.compile(r"\bout\s+of\s+stock\b|\bsold\s+out\b", re.I)
_THRESHOLD = re.compile(r"(?:\bthreshold(?:\s+of)?|\bbelow|\bunder|\bat\s+most|\bless\s+than|<=?)\s*(\d+)", re.I)
_REPORT = re.compile(r"\b(?:report|summary)\b", re.I)
_SINCE = re.compile(r"\bsince\s+(\d{4}-\d{2}-\d{2})\b", re.I)
_SKU_ANYWHERE = re.compile(rf"\b({_SKU})\b")
_SEARCH = re.compile(
    r"\b(?:search(?:\s+for)?|find|look\s+for|looking\s+for|do\s+you\s+have(?:\s+any)?)\s+"
    r"(?:the\s+|all\s+|any\s+|some\s+|items?\s+(?:named|called|matching)\s+)?[\"'“]?(?P<word>[A-Za-z][\w-]*)",
    re.I,
)
_SEARCH_STOPWORDS = {"a", "an", "the", "me", "it", "item", "items", "something", "anything", "stock", "out"}
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
_PERSONA = re.compile(r"\bYou\s+are\s+(?:a|an|the)\s+([^.\n]{1,60}?)\s*(?:[.\n]|$)", re.I)
_MODE = re.compile(r"\bMode:\s*([A-Za-z][\w-]*)\.?[ \t]*([^\n]*?(?:[.!?](?=\s|$)|$))", re.M)

# What the offline engine says it can do with each tool (no data in here: placeholders only).
_EXAMPLES = {
    "inventory_low_stock": "“which items are low on stock?”",
    "inventory_get_item": "“tell me about <sku>”",
    "inventory_search_items": "“search <word>”",
    "inventory_report": "“inventory report”",
    "inventory_update_qty": "“add 5 to <sku>”",
    "inventory_record_sale": "“record a sale of 2 <sku>”",
    "calculator": "“what is 17.5% of 2,340?”",
    "current_time": "“what time is it?”",
}
_ACTIONS = {
    "inventory_low_stock": "check which items are low on stock",
    "inventory_get_item": "look items up",
    "inventory_search_items": "search the inventory",
    "inventory_report": "build an inventory report",
    "inventory_update_qty": "change stock quantities",
    "inventory_record_sale": "record sales",
    "calculator": "calculate that",
    "current_time": "tell the time",
}


# --------------------------------------------------------------------------- system prompt


@dataclass(frozen=True)
class _Style:
    """What the system prompt asks for, as far as the offline engine can obey it visibly."""

    persona: str | None
    analyst: bool  # "findings first, then evidence"
    concise: bool
    mode: str | None
    mode_instructions: str  # the first sentence the agent_mode middleware added, if any

    @classmethod
    def from_prompt(cls, prompt: str) -> _Style:
        persona = _PERSONA.search(prompt)
        mode = _MODE.search(prompt)
        return cls(
            persona=" ".join(persona.group(1).split()) if persona else None,
            analyst=bool(re.search(r"\bfindings\b", prompt, re.I)),
            concise=bool(re.search(r"\bconcise\b", prompt, re.I)),
            mode=mode.group(1).lower() if mode else None,
            mode_instructions=_shorten(mode.group(2), QUOTE_CHARS) if mode else "",
        )

    @property
    def prefix(self) -> str:
        return f"(offline · {self.persona})" if self.persona else "(offline)"

    def compose(self, headline: str, details: list[str], *, evidence: str) -> str:
        """prefix + optional mode line + the body, findings-first when the prompt asks for it."""
        lines: list[str] = []
        if self.mode:
            following = f"following “{self.mode_instructions}”; " if self.mode_instructions else ""
            lines.append(
                f"Mode: {self.mode} — {following}outline: 1) read the request; 2) use an offered tool if one fits; "
                "3) answer only from what the tools return."
            )
        if self.analyst:
            lines.append(f"Findings: {headline[:-1] + '.' if headline.endswith(':') else headline}")
            if details and all(d.startswith("- ") for d in details):
                lines.append(f"Evidence ({evidence}):")
            else:
                lines.append(f"Evidence: {evidence}.")
            lines.extend(details)
        else:
            lines.append(headline)
            lines.extend(details)
        return f"{self.prefix} " + "\n".join(lines)


def _shorten(text: str, limit: int = QUOTE_CHARS) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1].rstrip() + "…"


# --------------------------------------------------------------------------- intents


@dataclass(frozen=True)
class _Intent:
    tool: str
    arguments: dict[str, Any]


def _singular(word: str) -> str:
    word = word.lower()
    if len(word) > 3 and word.endswith("s") and not word.endswith("ss"):
        return word[:-1]
    return word


def _calc_expression(text: str) -> str | None:
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


def recognise(text: str) -> _Intent | None:
    """Map a user request to a tool call (independent of which tools are offered)."""
    for pattern in _SALE:
        if match := pattern.search(text):
            return _Intent("inventory_record_sale", {"sku": match["sku"].upper(), "qty": int(match["qty"])})
    if match := _UPDATE.search(text):
        qty = int(match["qty"])
        delta = -qty if match["verb"].lower() == "remove" else qty
        return _Intent("inventory_update_qty", {"sku": match["sku"].upper(), "delta": delta})
    if _LOW_STOCK.search(text) or _OUT_OF_STOCK.search(text):
        threshold = _THRESHOLD.search(text)
        if threshold:
            return _Intent("inventory_low_stock", {"threshold": int(threshold.group(1))})
        if not _LOW_STOCK.search(text):
            return _Intent("inventory_low_stock", {"threshold": 0})
        return _Intent("inventory_low_stock", {})
    if _REPORT.search(text):
        since = _SINCE.search(text)
        return _Intent("inventory_report", {"since": since.group(1)} if since else {})
    if match := _SKU_ANYWHERE.search(text):
        return _Intent("inventory_get_item", {"sku": match.group(1).upper()})
    if (match := _SEARCH.search(text)) and match["word"].lower() not in _SEARCH_STOPWORDS:
        return _Intent("inventory_search_items", {"query": _singular(match["word"])})
    if expr := _calc_expression(text):
        return _Intent("calculator", {"expression": expr})
    if _TIME.search(text):
        return _Intent("current_time", {})
    return None


# --------------------------------------------------------------------------- tool results -> text

Rendered = tuple[str, list[str]]  # headline, detail lines


def _item_line(item: dict[str, Any]) -> str:
    return f"- {item.get('sku', '?')} {item.get('name', '')}: {item.get('qty', '?')}".replace("  ", " ")


def _plural(count: Any, word: str) -> str:
    return f"{count} {word}" if count == 1 else f"{count} {word}s"


def _render_low_stock(data: dict[str, Any]) -> Rendered:
    items = [i for i in data.get("items") or [] if isinstance(i, dict)]
    count = data.get("count", len(items))
    threshold = data.get("threshold", "?")
    if not items and not count:
        return f"No items are at or below {threshold} units.", []
    verb = "is" if count == 1 else "are"
    return f"{_plural(count, 'item')} {verb} at or below {threshold} units:", [_item_line(i) for i in items]


def _render_item(data: dict[str, Any]) -> Rendered:
    item = data["item"]
    details = [f"- qty: {item.get('qty', '?')}", f"- price: {item.get('price', '?')}"]
    if item.get("category"):
        details.append(f"- category: {item['category']}")
    if item.get("tags"):
        details.append(f"- tags: {', '.join(str(t) for t in item['tags'])}")
    return (
        f"{item.get('sku', '?')} {item.get('name', '')}: {item.get('qty', '?')} in stock at {item.get('price', '?')}.",
        details,
    )


def _render_search(data: dict[str, Any]) -> Rendered:
    items = [i for i in data.get("items") or [] if isinstance(i, dict)]
    count = data.get("count", len(items))
    query = data.get("query", "")
    if not items and not count:
        return f"No items match “{query}”.", []
    lines = [
        f"- {i.get('sku', '?')} {i.get('name', '')}: {i.get('qty', '?')} in stock, {i.get('price', '?')}" for i in items
    ]
    return f"{_plural(count, 'item')} match “{query}”:", lines


def _skus(items: Any) -> str:
    skus = [str(i.get("sku")) for i in items or [] if isinstance(i, dict) and i.get("sku")]
    return f" ({', '.join(skus)})" if skus else ""


def _render_report(data: dict[str, Any]) -> Rendered:
    since = data.get("since")
    threshold = data.get("threshold", "?")
    sales_scope = f"since {since}" if since else "all time"
    details = [
        f"- SKUs: {data.get('sku_count', '?')}",
        f"- Units: {data.get('total_units', '?')}",
        f"- Retail value: {data.get('retail_value', '?')}",
        f"- Cost basis: {data.get('cost_basis', '?')}",
        f"- Potential profit: {data.get('potential_profit', '?')}",
        f"- Low stock (≤ {threshold}): {data.get('low_stock_count', '?')}{_skus(data.get('low_stock'))}",
        f"- Out of stock: {data.get('out_of_stock_count', '?')}{_skus(data.get('out_of_stock'))}",
        f"- Sales total ({sales_scope}): {data.get('sales_total', '?')}",
    ]
    return f"Inventory report (threshold {threshold}, sales {sales_scope}):", details


def _render_sale(data: dict[str, Any]) -> Rendered:
    sale, item = data["sale"], data.get("item") or {}
    sku = sale.get("sku") or item.get("sku", "?")
    text = f"Recorded a sale of {sale.get('qty', '?')} {TIMES} {sku} (total {sale.get('total', '?')})."
    if "qty" in item:
        text += f" {item.get('sku', sku)} now has {item['qty']} left."
    return text, []


def _render_update(data: dict[str, Any]) -> Rendered:
    item = data["item"]
    applied = data.get("applied_delta")
    applied_text = f"{applied:+d}" if isinstance(applied, int) else str(applied)
    text = f"{item.get('sku', '?')} {item.get('name', '')} now has {item.get('qty', '?')} units ({applied_text})."
    if data.get("clamped"):
        text += f" Requested {data.get('requested_delta')}: clamped at 0."
    return " ".join(text.split()), []


def _render_calculator(data: dict[str, Any]) -> Rendered:
    return f"{data.get('expression', '?')} = {data.get('result', '?')}", []


def _render_time(data: dict[str, Any]) -> Rendered:
    zone = f" ({data['timezone']})" if data.get("timezone") else ""
    return f"It is {data.get('iso', '?')}{zone}.", []


# Result shapes, recognised by their keys (the tool name is only used in messages).
_RENDERERS: list[tuple[Callable[[dict[str, Any]], bool], Callable[[dict[str, Any]], Rendered]]] = [
    (lambda d: isinstance(d.get("sale"), dict), _render_sale),
    (lambda d: isinstance(d.get("item"), dict) and "applied_delta" in d, _render_update),
    (lambda d: isinstance(d.get("item"), dict), _render_item),
    (lambda d: "sku_count" in d, _render_report),
    (lambda d: isinstance(d.get("items"), list) and "threshold" in d, _render_low_stock),
    (lambda d: isinstance(d.get("items"), list), _render_search),
    (lambda d: "expression" in d and "result" in d, _render_calculator),
    (lambda d: "iso" in d, _render_time),
]


def render_tool_result(name: str, content: str) -> Rendered:
    """One tool message -> (headline, details), built only from what the tool returned."""
    try:
        data = json.loads(content)
    except ValueError:
        return f"{name} returned: {_shorten(content, 200)}", []
    if isinstance(data, dict) and isinstance(data.get("error"), str):
        return f"The {name} tool failed: {data['error']}", []
    if isinstance(data, dict):
        for matches, render in _RENDERERS:
            if matches(data):
                try:
                    return render(data)
                except (AttributeError, KeyError, TypeError, ValueError):
                    break
    compact = json.dumps(data, ensure_ascii=False, separators=(",", ":"), sort_keys=True)
    return f"{name} returned: {_shorten(compact, 300)}", []


# --------------------------------------------------------------------------- the engine


def _chunks(text: str, words: int = WORDS_PER_CHUNK) -> list[str]:
    """Split into word-ish chunks that concatenate back to `text` exactly."""
    tokens = re.findall(r"\s*\S+\s*", text) or [text]
    return ["".join(tokens[i : i + words]) for i in range(0, len(tokens), words)]


def _count_words(text: str) -> int:
    return len(text.split())


class OfflineEngine:
    """Deterministic embedded engine (see module docstring); same messages + tools -> same events."""

    provider = "offline"

    def __init__(self, model: str = "offline-v1", delay: float = 0.0) -> None:
        self.model = model
        self.delay = delay

    async def stream(self, messages: list[Message], tools: list[ToolSpec]) -> AsyncIterator[EngineEvent]:
        """One round: either a single ToolCallsRequested, or TextDelta* then EngineDone."""
        system = messages[0].content if messages and messages[0].role == "system" else ""
        style = _Style.from_prompt(system)
        offered = [t.name for t in tools]
        last = messages[-1] if messages else None

        if last is not None and last.role == "user" and tools:
            intent = recognise(last.content)
            if intent is not None and intent.tool in offered:
                if self.delay > 0:
                    await asyncio.sleep(self.delay)
                call_id = f"call_{1 + sum(len(m.tool_calls) for m in messages)}"
                yield ToolCallsRequested([ToolCall(call_id=call_id, name=intent.tool, arguments=intent.arguments)])
                return

        reply = self._reply(messages, style, offered)
        for index, chunk in enumerate(_chunks(reply)):
            if index and self.delay > 0:
                await asyncio.sleep(self.delay)
            yield TextDelta(chunk)
        prompt_tokens = sum(_count_words(m.content) for m in messages)
        completion_tokens = _count_words(reply)
        usage = {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens,
        }
        yield EngineDone(stop_reason="stop", usage=usage)

    def _reply(self, messages: list[Message], style: _Style, offered: list[str]) -> str:
        trailing_tools: list[Message] = []
        for message in reversed(messages):
            if message.role != "tool":
                break
            trailing_tools.insert(0, message)
        if trailing_tools:
            return self._answer_from_results(messages, trailing_tools, style)

        user = next((m for m in reversed(messages) if m.role == "user"), None)
        said = _shorten(user.content) if user is not None else ""
        headline = f"You said: “{said}”." if said else "You said nothing."
        intent = recognise(user.content) if user is not None else None
        if intent is not None and intent.tool not in offered:
            action = _ACTIONS.get(intent.tool, "do that")
            detail = f"No {intent.tool} tool is available in this profile, so I can't {action}; I won't guess."
            return style.compose(headline, [detail], evidence="none (no tool was available)")
        if style.concise:
            detail = "I am the offline engine: I don't answer open questions."
            if offered:
                detail += f" Tools I can use: {', '.join(offered)}."
        elif offered:
            examples = "; ".join(f"{name} ({_EXAMPLES[name]})" if name in _EXAMPLES else name for name in offered)
            detail = (
                "I am the offline engine: I don't answer open questions, but I can use this profile's tools "
                f"for requests I recognise: {examples}."
            )
        else:
            detail = (
                "I am the offline engine: I don't answer open questions and this profile offers no tools. "
                "Choose an OpenAI-compatible engine (ai-chat.ai-api-type = openai) for model answers."
            )
        return style.compose(headline, [detail], evidence="none (no tool was used)")

    def _answer_from_results(self, messages: list[Message], results: list[Message], style: _Style) -> str:
        names: dict[str, str] = {}
        for message in messages:
            for call in message.tool_calls:
                names[call.call_id] = call.name
        headlines: list[str] = []
        details: list[str] = []
        used: list[str] = []
        for result in results:
            name = result.name or names.get(result.tool_call_id or "", "") or "tool"
            headline, lines = render_tool_result(name, result.content)
            headlines.append(headline)
            details.extend(lines)
            used.append(name)
        return style.compose(" ".join(headlines), details, evidence=", ".join(dict.fromkeys(used)))
