"""The embedded offline engine: deterministic, no network, and still a real engine.

It exercises the whole runtime path: it streams in several deltas, shows visibly that it obeys its
system prompt (persona prefix, findings/evidence structure, agent mode), asks for the offered tools
when it recognises a request (or is told: `use <tool> with <json arguments>` calls any offered tool with
exactly those arguments), and answers only from the tool results it is given; it never invents data.
"""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass
from typing import Any

from chat.runtime.base import (
    EngineDone,
    EngineEvent,
    Message,
    Rendered,
    TextDelta,
    Tool,
    ToolCall,
    ToolCallsRequested,
    ToolSpec,
)
from profiles.definitions import definitions

WORDS_PER_CHUNK = 3
QUOTE_CHARS = 80

_PERSONA = re.compile(r"\bYou\s+are\s+(?:a|an|the)\s+([^.\n]{1,60}?)\s*(?:[.\n]|$)", re.I)
_MODE = re.compile(r"\bMode:\s*([A-Za-z][\w-]*)\.?[ \t]*([^\n]*?(?:[.!?](?=\s|$)|$))", re.M)

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


Catalog = Callable[[], Mapping[str, Tool]]


# "use <tool> with <json object>": a call of any offered tool with exactly these arguments (demos, tests).
_EXPLICIT = re.compile(r"^\s*use\s+(?P<tool>[^\s]+)\s+with\s+(?P<arguments>\{.*\})\s*$", re.I | re.S)


@dataclass(frozen=True)
class _Refused:
    """An explicit request whose arguments are not JSON: said, never guessed."""

    tool: str
    reason: str


def explicit_call(text: str) -> _Intent | _Refused | None:
    """`use <tool> with <json object>` as a call of that tool with those arguments, whichever tool it is."""
    match = _EXPLICIT.match(text)
    if match is None:
        return None
    tool = match.group("tool")
    try:
        arguments = json.loads(match.group("arguments"))  # braces around it: an object when it parses
    except json.JSONDecodeError as exc:
        return _Refused(tool, f"the arguments after 'with' are not JSON ({exc.msg})")
    return _Intent(tool, arguments)


def registered_tools() -> Mapping[str, Tool]:
    """Every registered tool's implementation, by name (what the apps registered at start-up)."""
    return {name: d.implementation for name, d in definitions.tools.items() if isinstance(d.implementation, Tool)}


def recognise(text: str, tools: Mapping[str, Tool] | None = None) -> _Intent | None:
    """Map a user request to a tool call, whichever tools are offered; each tool recognises its own
    requests, the most specific (lowest `recognise_order`) first."""
    catalog = registered_tools() if tools is None else tools
    for tool in sorted(catalog.values(), key=lambda t: (t.recognise_order, t.name)):
        arguments = tool.recognise(text)
        if arguments is not None:
            return _Intent(tool.name, arguments)
    return None


# --------------------------------------------------------------------------- tool results -> text


def render_tool_result(name: str, content: str, tool: Tool | None = None) -> Rendered:
    """One tool message -> (headline, details), built only from what the tool returned."""
    try:
        data = json.loads(content)
    except ValueError:
        return f"{name} returned: {_shorten(content, 200)}", []
    if isinstance(data, dict) and isinstance(data.get("error"), str):
        return f"The {name} tool failed: {data['error']}", []
    if isinstance(data, dict) and tool is not None:
        try:
            rendered = tool.render(data)
        except (AttributeError, KeyError, TypeError, ValueError):
            rendered = None
        if rendered is not None:
            return rendered
    compact = json.dumps(data, ensure_ascii=False, separators=(",", ":"), sort_keys=True)
    return f"{name} returned: {_shorten(compact, 300)}", []


# --------------------------------------------------------------------------- the engine


def _with_example(name: str, tool: Tool | None) -> str:
    return f"{name} ({tool.example})" if tool is not None and tool.example else name


def _chunks(text: str, words: int = WORDS_PER_CHUNK) -> list[str]:
    """Split into word-ish chunks that concatenate back to `text` exactly."""
    tokens = re.findall(r"\s*\S+\s*", text) or [text]
    return ["".join(tokens[i : i + words]) for i in range(0, len(tokens), words)]


def _count_words(text: str) -> int:
    return len(text.split())


class OfflineEngine:
    """Deterministic embedded engine (see module docstring); same messages + tools -> same events."""

    provider = "offline"

    def __init__(self, model: str = "offline-v1", delay: float = 0.0, tools: Catalog = registered_tools) -> None:
        self.model = model
        self.delay = delay
        # Every tool it knows (not only the offered ones, so it can say which tool a request needs).
        self.tools = tools

    async def stream(self, messages: list[Message], tools: list[ToolSpec]) -> AsyncIterator[EngineEvent]:
        """One round: either a single ToolCallsRequested, or TextDelta* then EngineDone."""
        system = messages[0].content if messages and messages[0].role == "system" else ""
        style = _Style.from_prompt(system)
        offered = [t.name for t in tools]
        last = messages[-1] if messages else None

        if last is not None and last.role == "user" and tools:
            asked = explicit_call(last.content)
            intent = asked if isinstance(asked, _Intent) else None
            if asked is None:
                intent = recognise(last.content, self.tools())
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
        asked = explicit_call(user.content) if user is not None else None
        if isinstance(asked, _Refused):
            return style.compose(headline, [f"I can't call {asked.tool}: {asked.reason}."], evidence="none")
        if isinstance(asked, _Intent) and asked.tool not in offered:
            detail = f"No {asked.tool} tool is available in this profile, so I can't call it; I won't guess."
            return style.compose(headline, [detail], evidence="none (no tool was available)")
        catalog = self.tools()
        intent = recognise(user.content, catalog) if user is not None else None
        if intent is not None and intent.tool not in offered:
            action = catalog[intent.tool].action or "do that"
            detail = f"No {intent.tool} tool is available in this profile, so I can't {action}; I won't guess."
            return style.compose(headline, [detail], evidence="none (no tool was available)")
        if style.concise:
            detail = "I am the offline engine: I don't answer open questions."
            if offered:
                detail += f" Tools I can use: {', '.join(offered)}."
        elif offered:
            examples = "; ".join(_with_example(name, catalog.get(name)) for name in offered)
            detail = (
                "I am the offline engine: I don't answer open questions, but I can use this profile's tools "
                f"for requests I recognise: {examples}."
            )
        else:
            detail = (
                "I am the offline engine: I don't answer open questions and this profile offers no tools. "
                "Choose a model engine (ai-chat.ai-api-type = openai or anthropic) for model answers."
            )
        return style.compose(headline, [detail], evidence="none (no tool was used)")

    def _answer_from_results(self, messages: list[Message], results: list[Message], style: _Style) -> str:
        catalog = self.tools()
        names: dict[str, str] = {}
        for message in messages:
            for call in message.tool_calls:
                names[call.call_id] = call.name
        headlines: list[str] = []
        details: list[str] = []
        used: list[str] = []
        for result in results:
            name = result.name or names.get(result.tool_call_id or "", "") or "tool"
            headline, lines = render_tool_result(name, result.content, catalog.get(name))
            headlines.append(headline)
            details.extend(lines)
            used.append(name)
        return style.compose(" ".join(headlines), details, evidence=", ".join(dict.fromkeys(used)))
