"""Runs one turn on a composed runtime: middlewares, engine rounds, the tool loop. Plain Python.

It emits frames through `ctx.emit`; the Django side numbers, stores and fans them out.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from jsonschema import Draft202012Validator, FormatChecker

from .base import (
    EngineDone,
    EngineError,
    Message,
    Refusal,
    Reply,
    TextDelta,
    ToolCall,
    ToolCallsRequested,
    ToolContext,
    ToolError,
    ToolResult,
    TurnContext,
)
from .composer import Runtime
from .text import StreamText, clean_text, clean_value

MAX_ROUNDS = 5


@dataclass
class TurnOutcome:
    """Filled in as the turn runs, so a cancelled or failed turn still keeps its partial text."""

    text: str = ""
    stop_reason: str = ""
    usage: dict[str, Any] = field(default_factory=dict)  # token counts (and, once priced, cost_usd)
    tool_calls: list[dict[str, Any]] = field(default_factory=list)
    error: dict[str, str] | None = None

    def add_usage(self, usage: dict[str, int]) -> None:
        for key, value in usage.items():
            if isinstance(value, int):
                self.usage[key] = self.usage.get(key, 0) + value


class DeltaCoalescer:
    """Sends at most one `llm.delta` per message every `interval()` seconds (the first one at once).

    A delta frame carries only the new text; the message's text is kept as a list of parts and joined
    once, so nothing grows with the square of the answer. `interval` is a callable so the worker can
    widen it under load."""

    def __init__(self, ctx: TurnContext, message_id: str, interval: Callable[[], float]) -> None:
        self.ctx, self.message_id, self.interval = ctx, message_id, interval
        self.parts: list[str] = []
        self.pending: list[str] = []
        self.last_flush = 0.0

    @property
    def text(self) -> str:
        return "".join(self.parts)

    def add(self, text: str) -> None:
        if text:
            self.pending.append(text)

    def due_in(self) -> float | None:
        if not self.pending:
            return None
        return max(0.0, self.last_flush + self.interval() - time.monotonic())

    async def flush(self) -> None:
        if not self.pending:
            return
        delta = "".join(self.pending)
        self.pending = []
        self.parts.append(delta)
        self.last_flush = time.monotonic()
        await self.ctx.emit("llm.delta", {"message_id": self.message_id, "delta": delta})


async def _stream_round(runtime: Runtime, ctx: TurnContext, messages: list[Message], coalescer: DeltaCoalescer):
    """Consume one engine round, flushing held-back deltas on time even while the engine is quiet.

    The engine is awaited directly; while deltas are held back, a timer flushes them at their time if the
    engine has said nothing by then (a task of its own, awaited before the next event is handled, so
    deltas go out in order). A task and an `asyncio.wait` per event cost more than the event."""
    stream = runtime.engine.stream(messages, runtime.tool_specs()).__aiter__()
    result: ToolCallsRequested | EngineDone | None = None
    text = StreamText()  # provider text is made storable here, before it is streamed or stored
    loop = asyncio.get_running_loop()
    timer: asyncio.TimerHandle | None = None
    flushing: asyncio.Future | None = None  # the flush the timer started

    def on_time() -> None:
        nonlocal timer, flushing
        timer, flushing = None, asyncio.ensure_future(coalescer.flush())

    try:
        while True:
            due_in = coalescer.due_in()
            if due_in is not None and flushing is None:
                timer = loop.call_later(due_in, on_time)
            try:
                event = await stream.__anext__()
            except StopAsyncIteration:
                break
            finally:
                if timer is not None:
                    timer.cancel()
                    timer = None
            if flushing is not None:  # what the engine was quiet about goes out first
                done, flushing = flushing, None
                await done
            if isinstance(event, TextDelta):
                coalescer.add(text.feed(event.text))
                if coalescer.due_in() == 0:
                    await coalescer.flush()
            elif isinstance(event, ToolCallsRequested):
                calls = [ToolCall(c.call_id, clean_text(c.name), clean_value(c.arguments)) for c in event.calls]
                result = ToolCallsRequested(calls, usage=event.usage)
            else:
                result = event
    finally:
        if timer is not None:
            timer.cancel()
        if flushing is not None:
            await asyncio.gather(flushing, return_exceptions=True)
        coalescer.add(text.flush())
        await coalescer.flush()
        aclose = getattr(stream, "aclose", None)
        if aclose is not None:
            with contextlib.suppress(RuntimeError, EngineError):
                await aclose()
    return result


# Compiled argument validators by schema identity (the schema object is kept to pin the id), the most
# recently used ones only: schemas of tools from outside (MCP) are new objects with each new runtime.
_validators: OrderedDict[int, tuple[dict[str, Any], Draft202012Validator]] = OrderedDict()
MAX_VALIDATORS = 512


def _validator(schema: dict[str, Any]) -> Draft202012Validator:
    cached = _validators.get(id(schema))
    if cached is None or cached[0] is not schema:
        cached = _validators[id(schema)] = (schema, Draft202012Validator(schema, format_checker=FormatChecker()))
        while len(_validators) > MAX_VALIDATORS:
            _validators.popitem(last=False)
    else:
        _validators.move_to_end(id(schema))
    return cached[1]


def _validate_args(schema: dict[str, Any], args: Any) -> str | None:
    """The one check of a tool call's arguments against the tool's schema (tools trust it)."""
    errors = sorted(_validator(schema).iter_errors(args), key=lambda e: list(e.absolute_path))
    if not errors:
        return None
    first = errors[0]
    where = ".".join(str(p) for p in first.absolute_path)
    return f"invalid arguments{f' at {where}' if where else ''}: {first.message}"


async def run_tool(
    runtime: Runtime, call: ToolCall, tool_ctx: ToolContext, *, run_sync: Any, timeout: float
) -> ToolResult:
    """Refuse what the runtime does not allow; validate; check permissions; run with a timeout."""
    allowed = {t.name: t for t in runtime.tools}
    definition = allowed.get(call.name)
    if definition is None:
        return ToolResult(call, error=f"tool {call.name!r} is not allowed by this runtime")
    problem = _validate_args(definition.parameters, call.arguments)
    if problem:
        return ToolResult(call, error=problem)
    if definition.writes and definition.permission and not await run_sync(tool_ctx.has_perm, definition.permission):
        return ToolResult(call, error=f"permission denied: {definition.permission} required")
    tool = definition.implementation
    try:
        result = await asyncio.wait_for(run_sync(tool.run, call.arguments, tool_ctx), timeout)
    except TimeoutError:
        return ToolResult(call, error=f"tool {call.name!r} timed out after {timeout:g}s", tool=tool)
    except ToolError as exc:
        return ToolResult(call, error=str(exc), tool=tool)
    return ToolResult(call, result=result, tool=tool)


async def run_turn(
    runtime: Runtime,
    ctx: TurnContext,
    outcome: TurnOutcome,
    *,
    tool_ctx: ToolContext,
    run_sync: Any,
    tool_timeout: float = 30.0,
    coalesce_seconds: float | Callable[[], float] = 0.03,
    max_rounds: int = MAX_ROUNDS,
) -> TurnOutcome:
    """Raises EngineError on provider failure (outcome keeps the partial text) and CancelledError on cancel."""
    interval = coalesce_seconds if callable(coalesce_seconds) else (lambda: coalesce_seconds)
    try:
        for middleware in runtime.middlewares:
            await middleware.before(ctx)
    except Refusal as refusal:
        message_id = f"{ctx.turn_id}:1"
        await ctx.emit("llm.start", {"message_id": message_id})
        outcome.text, outcome.stop_reason = refusal.message, "refused"
        await ctx.emit(
            "llm.final", {"message_id": message_id, "text": refusal.message, "usage": {}, "stop_reason": "refused"}
        )
        return outcome

    messages = [Message("system", ctx.system_prompt), *ctx.messages]
    texts: list[str] = []
    for round_no in range(1, max_rounds + 1):
        message_id = f"{ctx.turn_id}:{round_no}"
        await ctx.emit("llm.start", {"message_id": message_id})
        coalescer = DeltaCoalescer(ctx, message_id, interval)
        try:
            result = await _stream_round(runtime, ctx, messages, coalescer)
        finally:
            outcome.text = "".join([*texts, coalescer.text])
        if result is None:
            raise EngineError("malformed_stream", "the engine ended its reply without a finish reason")
        texts.append(coalescer.text)
        if isinstance(result, EngineDone):
            outcome.add_usage(result.usage)
            outcome.stop_reason = result.stop_reason
            await ctx.emit(
                "llm.final",
                {
                    "message_id": message_id,
                    "text": coalescer.text,
                    "usage": result.usage,
                    "stop_reason": result.stop_reason,
                },
            )
            break
        outcome.add_usage(result.usage)
        await ctx.emit(
            "llm.final",
            {
                "message_id": message_id,
                "text": coalescer.text,
                "usage": result.usage,
                "stop_reason": "tool_calls",
            },
        )
        messages.append(Message("assistant", coalescer.text, tool_calls=list(result.calls)))
        for call in result.calls:
            await ctx.emit("tool.start", {"call_id": call.call_id, "name": call.name, "input": call.arguments})
            tool_result = await run_tool(runtime, call, tool_ctx, run_sync=run_sync, timeout=tool_timeout)
            payload = {"error": tool_result.error} if tool_result.error else {"result": tool_result.result}
            await ctx.emit("tool.result", {"call_id": call.call_id, "name": call.name, **payload})
            await ctx.emit("tool.done", {"call_id": call.call_id, "name": call.name})
            outcome.tool_calls.append({"call_id": call.call_id, "name": call.name, "input": call.arguments, **payload})
            ctx.tool_results.append(tool_result)
            for middleware in runtime.middlewares:
                await middleware.on_tool_result(ctx, tool_result)
            content = json.dumps(payload.get("result") if not tool_result.error else payload, default=str)
            messages.append(Message("tool", content, tool_call_id=call.call_id, name=call.name))
    else:
        outcome.stop_reason = "max_rounds"
        texts.append(f"\n\n(Stopped after {max_rounds} tool rounds.)")

    reply = Reply("".join(texts).strip(), outcome.stop_reason)
    for middleware in reversed(runtime.middlewares):
        await middleware.after(ctx, reply)
    outcome.text, outcome.stop_reason = reply.text, reply.stop_reason
    return outcome
