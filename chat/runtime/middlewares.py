"""The registered middlewares: context_window, redact, guardrail, agent_mode, suggestions.

Each class reads its config with the same defaults its JSON schema declares, so it also works when
it is built directly (tests) with a partial config. A middleware emits `middleware.event` frames only
when it acts: a profile whose middlewares have nothing to do produces no events.
"""

from __future__ import annotations

import copy
import dataclasses
import re
from typing import Any, ClassVar

from profiles.definitions import MiddlewareDefinition

from .base import Message, Middleware, Refusal, Reply, TurnContext
from .redaction import REDACT_KINDS, redact_text

SCHEMA_DIALECT = "https://json-schema.org/draft/2020-12/schema"


class ConfiguredMiddleware(Middleware):
    """A middleware whose config follows `schema`; `setting()` falls back to the schema's defaults."""

    schema: ClassVar[dict[str, Any]]

    @classmethod
    def defaults(cls) -> dict[str, Any]:
        return {key: copy.deepcopy(sub["default"]) for key, sub in cls.schema["properties"].items() if "default" in sub}

    def setting(self, key: str) -> Any:
        if key in self.config:
            return self.config[key]
        return copy.deepcopy(self.schema["properties"][key]["default"])


def current_user_index(messages: list[Message]) -> int | None:
    """Index of the current user message (the last message with role user), if any."""
    for index in range(len(messages) - 1, -1, -1):
        if messages[index].role == "user":
            return index
    return None


def current_user_text(ctx: TurnContext) -> str:
    index = current_user_index(ctx.messages)
    return ctx.prompt if index is None else ctx.messages[index].content


# --------------------------------------------------------------------------- context_window


class ContextWindow(ConfiguredMiddleware):
    """Keeps the last `max_turns` user turns so long conversations stay within the model's context."""

    name = "context_window"
    schema: ClassVar[dict[str, Any]] = {
        "$schema": SCHEMA_DIALECT,
        "type": "object",
        "properties": {
            "max_turns": {
                "type": "integer",
                "minimum": 1,
                "maximum": 200,
                "default": 20,
                "description": "User turns kept, the current one included.",
            }
        },
        "additionalProperties": False,
    }

    def history_turns(self) -> int:
        return int(self.setting("max_turns")) - 1  # the current turn is one of them

    async def before(self, ctx: TurnContext) -> None:
        max_turns = int(self.setting("max_turns"))
        starts = [i for i, message in enumerate(ctx.messages) if message.role == "user"]
        if len(starts) <= max_turns:
            return
        first = starts[-max_turns]
        # System messages are instructions, not turns: never drop them.
        kept = [m for m in ctx.messages[:first] if m.role == "system"] + ctx.messages[first:]
        dropped = len(ctx.messages) - len(kept)
        ctx.messages = kept
        await self.event(ctx, "trimmed", {"dropped_messages": dropped, "kept_messages": len(kept)})


# --------------------------------------------------------------------------- redact


class Redact(ConfiguredMiddleware):
    """Masks e-mail addresses, phone and card numbers in the user's input before the engine sees it.

    `ctx.prompt` (the stored record) keeps the original; the event reports counts per kind, never values.
    """

    name = "redact"
    schema: ClassVar[dict[str, Any]] = {
        "$schema": SCHEMA_DIALECT,
        "type": "object",
        "properties": {
            "kinds": {
                "type": "array",
                "items": {"enum": list(REDACT_KINDS)},
                "uniqueItems": True,
                "default": list(REDACT_KINDS),
                "description": "What to mask.",
            },
            "mask": {
                "type": "string",
                "maxLength": 100,
                "default": "[redacted:{kind}]",
                "description": "Replacement text; {kind} becomes email, phone or card.",
            },
        },
        "additionalProperties": False,
    }

    async def before(self, ctx: TurnContext) -> None:
        """History is rebuilt from stored prompts each turn, so every user message is masked, not only
        the current one; the event counts what was masked in the current message."""
        index = current_user_index(ctx.messages)
        if index is None:
            return
        messages, counts = list(ctx.messages), {}
        for i, message in enumerate(messages):
            if message.role != "user":
                continue
            text, found = redact_text(message.content, self.setting("kinds"), self.setting("mask"))
            if found:
                # A new message object: the caller's history objects stay untouched.
                messages[i] = dataclasses.replace(message, content=text)
                if i == index:
                    counts = found
        ctx.messages = messages
        if counts:
            await self.event(ctx, "redacted", {"counts": counts})


# --------------------------------------------------------------------------- guardrail


def _term_pattern(term: str) -> re.Pattern[str]:
    words = [re.escape(word) for word in term.split()]
    return re.compile(r"(?<!\w)" + r"\s+".join(words) + r"(?!\w)", re.IGNORECASE)


class Guardrail(ConfiguredMiddleware):
    """Refuses prompts that contain a configured word or phrase (case-insensitive, whole words only)."""

    name = "guardrail"
    schema: ClassVar[dict[str, Any]] = {
        "$schema": SCHEMA_DIALECT,
        "type": "object",
        "properties": {
            "blocked_terms": {
                "type": "array",
                "items": {"type": "string", "minLength": 1, "maxLength": 200, "pattern": r"\S"},
                "maxItems": 500,
                "default": [],
                "description": "Words or phrases that make the turn refused.",
            },
            "message": {
                "type": "string",
                "minLength": 1,
                "maxLength": 1000,
                "default": "I can't help with that request.",
                "description": "The reply sent instead.",
            },
        },
        "additionalProperties": False,
    }

    def __init__(self, *, id: str | None = None, config: dict[str, Any] | None = None) -> None:
        super().__init__(id=id, config=config)
        terms = [term for term in self.setting("blocked_terms") if term.strip()]
        self.patterns = [(term, _term_pattern(term)) for term in terms]

    async def before(self, ctx: TurnContext) -> None:
        text = current_user_text(ctx)
        for term, pattern in self.patterns:
            if pattern.search(text):
                await self.event(ctx, "blocked", {"term": term})
                raise Refusal(self.setting("message"))


# --------------------------------------------------------------------------- agent_mode

MODE_NAME = r"^[a-z][a-z0-9_-]{0,31}$"
DEFAULT_MODES = {
    "plan": "Think step by step and outline a plan before answering.",
    "act": "Act directly: use the available tools and report results.",
    "review": "Review the previous answer critically and list issues.",
}


class AgentMode(ConfiguredMiddleware):
    """Adds the instructions of the active mode to the system prompt.

    The active mode is `ctx.state["mode"]` when it names a configured mode, else `default_mode`.
    """

    name = "agent_mode"
    schema: ClassVar[dict[str, Any]] = {
        "$schema": SCHEMA_DIALECT,
        "type": "object",
        "properties": {
            "modes": {
                "type": "object",
                "propertyNames": {"pattern": MODE_NAME},
                "additionalProperties": {"type": "string", "minLength": 1, "maxLength": 4000},
                "minProperties": 1,
                "maxProperties": 20,
                "default": DEFAULT_MODES,
                "description": "Mode name -> instructions added to the system prompt.",
            },
            "default_mode": {
                "type": "string",
                "pattern": MODE_NAME,
                "default": "plan",
                "description": "The mode used when the client does not choose one; must be one of modes.",
            },
        },
        "additionalProperties": False,
    }

    def __init__(self, *, id: str | None = None, config: dict[str, Any] | None = None) -> None:
        super().__init__(id=id, config=config)
        problems = self.validate_config(self.config)
        if problems:
            raise ValueError(f"agent_mode config: {problems[0][0]}: {problems[0][1]}")
        self.modes: dict[str, str] = dict(self.setting("modes"))
        self.default_mode: str = self.setting("default_mode")

    @classmethod
    def validate_config(cls, config: dict[str, Any]) -> list[tuple[str, str]]:
        """The check a schema cannot express: default_mode must name one of the modes."""
        modes = config.get("modes", DEFAULT_MODES)
        default_mode = config.get("default_mode", "plan")
        if isinstance(modes, dict) and default_mode not in modes:
            return [("default_mode", f"unknown mode {default_mode!r}")]
        return []

    def active_mode(self, ctx: TurnContext) -> str:
        requested = ctx.state.get("mode")
        return requested if isinstance(requested, str) and requested in self.modes else self.default_mode

    async def before(self, ctx: TurnContext) -> None:
        mode = self.active_mode(ctx)
        ctx.system_prompt += f"\n\nMode: {mode}. {self.modes[mode]}"
        await self.event(ctx, "mode", {"mode": mode})


# --------------------------------------------------------------------------- suggestions

GENERIC_FOLLOWUPS = ("Explain that in more detail", "Give me a concrete example", "What should I look at next?")


def derive_suggestions(ctx: TurnContext, reply: Reply, limit: int) -> list[str]:
    """Deterministic follow-ups from the turn: its tool calls, its reply and the question's shape.

    Reads the (possibly redacted) current user message, never `ctx.prompt`, so a suggestion cannot
    echo data another middleware masked.
    """
    items: list[str] = []
    for result in ctx.tool_results:
        name = result.call.name
        if result.error is not None:
            items.append("Try that again with different input")
        else:
            followup = result.tool.followup if result.tool is not None else None
            items.append(followup or f"Run {name.replace('_', ' ')} again with other inputs")
    text = reply.text.strip()
    if len(text) > 600:
        items.append("Summarize that in three bullet points")
    if re.search(r"\d", text) and not ctx.tool_results:
        items.append("How did you get those numbers?")
    if current_user_text(ctx).rstrip().endswith("?"):
        items.append("Why is that?")
    items.extend(GENERIC_FOLLOWUPS)
    unique = list(dict.fromkeys(items))
    return unique[:limit]


class Suggestions(ConfiguredMiddleware):
    """Emits follow-up suggestions after each reply so the user has an obvious next step."""

    name = "suggestions"
    schema: ClassVar[dict[str, Any]] = {
        "$schema": SCHEMA_DIALECT,
        "type": "object",
        "properties": {
            "max_items": {
                "type": "integer",
                "minimum": 1,
                "maximum": 10,
                "default": 3,
                "description": "How many suggestions at most.",
            }
        },
        "additionalProperties": False,
    }

    async def after(self, ctx: TurnContext, reply: Reply) -> None:
        items = derive_suggestions(ctx, reply, max(1, int(self.setting("max_items"))))
        await ctx.emit("suggestions", {"items": items})
        await self.event(ctx, "suggested", {"count": len(items)})


# --------------------------------------------------------------------------- registration


def _definition(cls: type[ConfiguredMiddleware], display_name: str, description: str) -> MiddlewareDefinition:
    return MiddlewareDefinition(
        name=cls.name, version=1, display_name=display_name, description=description, schema=cls.schema, factory=cls
    )


MIDDLEWARE_DEFINITIONS: list[MiddlewareDefinition] = [
    _definition(ContextWindow, "Context window", "Keep only the last N turns of the conversation."),
    _definition(
        Redact, "Redact personal data", "Mask e-mail addresses, phone and card numbers before the engine sees them."
    ),
    _definition(Guardrail, "Guardrail", "Refuse prompts that contain configured words or phrases."),
    _definition(AgentMode, "Agent mode", "Named modes, each adding its own instructions to the system prompt."),
    _definition(Suggestions, "Follow-up suggestions", "Suggest follow-up questions after each reply."),
]
