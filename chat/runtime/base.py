"""Contracts of the framework-free chat runtime: messages, engines, middlewares and tools.

Nothing here imports Django. The turn runner (`chat.runtime.runner`) drives these objects; the
Django side (`chat.services`) only persists what the runner emits and fans it out to sockets.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, ClassVar, Protocol

# emit(frame_type, data): sends one server frame for the current turn (persisted, numbered, fanned out).
Emit = Callable[[str, dict[str, Any]], Awaitable[None]]
# run_sync(fn, *args): runs blocking code (database, CPU) off the event loop.
RunSync = Callable[..., Awaitable[Any]]


# --------------------------------------------------------------------------- messages


@dataclass(frozen=True)
class ToolCall:
    call_id: str
    name: str
    arguments: dict[str, Any]


@dataclass
class Message:
    role: str  # "system" | "user" | "assistant" | "tool"
    content: str = ""
    tool_calls: list[ToolCall] = field(default_factory=list)  # assistant messages that call tools
    tool_call_id: str | None = None  # tool messages: the call they answer
    name: str | None = None  # tool messages: the tool's name


@dataclass(frozen=True)
class ToolSpec:
    """What an engine is offered: only tools the runtime allows ever become a ToolSpec."""

    name: str
    description: str
    parameters: dict[str, Any]


# --------------------------------------------------------------------------- engines


@dataclass(frozen=True)
class TextDelta:
    text: str


@dataclass(frozen=True)
class ToolCallsRequested:
    """The engine ends this round asking for these calls; the runner runs them and calls it again."""

    calls: list[ToolCall]
    usage: dict[str, int] = field(default_factory=dict)  # of this round; the turn's usage is the sum


@dataclass(frozen=True)
class EngineDone:
    stop_reason: str  # "stop" | "length" | "tool_calls" | ...
    usage: dict[str, int] = field(default_factory=dict)  # prompt_tokens, completion_tokens, total_tokens


EngineEvent = TextDelta | ToolCallsRequested | EngineDone


class EngineError(Exception):
    """A provider failure. `code`: provider_error | timeout | malformed_stream | connection_error."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


class Engine(Protocol):
    @property
    def provider(self) -> str: ...

    @property
    def model(self) -> str: ...

    def stream(self, messages: list[Message], tools: list[ToolSpec]) -> AsyncIterator[EngineEvent]:
        """One model round. Yields TextDelta*, then either ToolCallsRequested or EngineDone last.

        `messages` starts with the system message. Raises EngineError on provider failures.
        """
        ...


# --------------------------------------------------------------------------- tools


class ToolError(Exception):
    """A tool failure the model and the user may see (bad input, not found, not permitted)."""


@dataclass(frozen=True)
class ToolContext:
    user_id: int | None
    username: str
    mount: str
    has_perm: Callable[[str], bool]  # synchronous, like User.has_perm
    emit: Emit


# What a tool's result reads as in plain text: a headline and detail lines.
Rendered = tuple[str, list[str]]


class Tool:
    """A callable tool. `run` is synchronous (it may use the ORM); the runner calls it off the loop.

    Besides running, a tool describes itself to the generic runtime, so the runtime never names an
    app's tools: `followup` is the suggestion offered after it succeeded, `example` and `action`
    are what the offline engine says it can do with it, `recognise` maps a request to its
    arguments and `render` turns its result into text (both used only by the offline engine).
    """

    name: ClassVar[str]
    description: ClassVar[str]
    parameters: ClassVar[dict[str, Any]]  # JSON schema of the arguments
    writes: ClassVar[bool] = False
    permission: ClassVar[str | None] = None  # checked by the runner before run() for writing tools
    followup: ClassVar[str | None] = None  # e.g. "Show the calculation step by step"
    example: ClassVar[str | None] = None  # e.g. "“what is 17.5% of 2,340?”"
    action: ClassVar[str | None] = None  # e.g. "calculate that" (as in "I can't calculate that")
    # Recognisers run in this order (lower first): a specific request ("sell 2 A-1") wins over a loose one.
    recognise_order: ClassVar[int] = 100

    def run(self, args: dict[str, Any], ctx: ToolContext) -> Any:
        raise ToolError(f"tool {self.name} has no implementation")

    def recognise(self, text: str) -> dict[str, Any] | None:
        """The arguments of a call this request asks for, or None (offline engine only)."""
        return None

    def render(self, result: dict[str, Any]) -> Rendered | None:
        """The result as (headline, detail lines), or None for the generic rendering (offline engine only)."""
        return None


@dataclass
class ToolResult:
    call: ToolCall
    result: Any = None
    error: str | None = None
    tool: Tool | None = None  # the tool that ran, when the runtime allowed it


# --------------------------------------------------------------------------- middlewares


class Refusal(Exception):
    """Raised by a middleware to refuse the turn; the message becomes the reply."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


@dataclass
class Reply:
    text: str
    stop_reason: str = "stop"


@dataclass
class TurnContext:
    conv_id: str
    turn_id: str
    prompt: str  # the user's prompt as sent (the stored record keeps it)
    messages: list[Message]  # history + the current user message; `before` may edit it
    system_prompt: str  # `before` may extend it
    emit: Emit
    tool_results: list[ToolResult] = field(default_factory=list)
    state: dict[str, Any] = field(default_factory=dict)


class Middleware:
    """Acts around the engine. Subclasses set `name` and override the hooks they need."""

    name: ClassVar[str]

    def __init__(self, *, id: str | None = None, config: dict[str, Any] | None = None) -> None:
        self.id = id
        self.config = dict(config or {})

    def history_turns(self) -> int | None:
        """How many earlier turns this middleware keeps at most (None: no limit of its own). The
        worker loads no more than that from the database."""
        return None

    async def before(self, ctx: TurnContext) -> None:
        """Edit the context before the engine runs; raise Refusal to refuse the turn."""

    async def on_tool_result(self, ctx: TurnContext, result: ToolResult) -> None:
        """Called after each tool call of the turn."""

    async def after(self, ctx: TurnContext, reply: Reply) -> None:
        """Edit or check the reply; emit follow-ups."""

    async def event(self, ctx: TurnContext, event: str, detail: dict[str, Any]) -> None:
        await ctx.emit("middleware.event", {"middleware": self.name, "id": self.id, "event": event, "detail": detail})
