"""The turn runner (`chat.runtime.runner`): middleware order, refusals, the tool loop, delta coalescing, failures.

No database and no Django: runtimes are built directly. A scripted in-memory engine stands in for a
provider where the test needs exact control of the event stream; the real OfflineEngine is used
where its deterministic behaviour is enough.
"""

from __future__ import annotations

import asyncio
import threading
from typing import Any, ClassVar

import pytest

from chat.runtime.base import (
    EngineDone,
    EngineError,
    Message,
    Middleware,
    Refusal,
    Reply,
    TextDelta,
    Tool,
    ToolCall,
    ToolCallsRequested,
    ToolContext,
    ToolError,
    TurnContext,
)
from chat.runtime.composer import Runtime, compose
from chat.runtime.engines import OfflineEngine
from chat.runtime.runner import MAX_ROUNDS, DeltaCoalescer, TurnOutcome, run_tool, run_turn
from profiles.definitions import ToolDefinition, definitions
from profiles.resolution import resolve_runtime

# --------------------------------------------------------------------------- doubles


class ScriptedEngine:
    """Plays one scripted round per call (the last round repeats). A float in a round sleeps that long,
    an exception is raised where it stands; every call records the messages and tools it was given."""

    provider = "fake"
    model = "scripted"

    def __init__(self, *rounds: list[Any], log: list | None = None) -> None:
        self.rounds = list(rounds)
        self.calls: list[tuple[list[Message], list[str]]] = []
        self.log = log

    async def stream(self, messages, tools):
        self.calls.append((list(messages), [t.name for t in tools]))
        if self.log is not None:
            self.log.append(("engine", len(self.calls)))
        for event in self.rounds[min(len(self.calls), len(self.rounds)) - 1]:
            if isinstance(event, Exception):
                raise event
            if isinstance(event, float):
                await asyncio.sleep(event)
                continue
            yield event


def text_round(*chunks: str, stop: str = "stop") -> list[Any]:
    return [*(TextDelta(c) for c in chunks), EngineDone(stop_reason=stop, usage={"total_tokens": len(chunks)})]


def call_round(name: str, arguments: dict[str, Any], call_id: str = "call_1") -> list[Any]:
    return [ToolCallsRequested([ToolCall(call_id=call_id, name=name, arguments=arguments)])]


class RecordingTool(Tool):
    """A tool that records each run; `gate` makes it wait until the test opens it, `fail` makes it raise."""

    parameters: ClassVar[dict[str, Any]] = {
        "type": "object",
        "properties": {"n": {"type": "integer"}},
        "required": ["n"],
        "additionalProperties": False,
    }

    def __init__(self, name: str, *, gate: threading.Event | None = None, fail: str | None = None) -> None:
        self.name = name
        self.description = f"the {name} tool"
        self.gate, self.fail = gate, fail
        self.finished = threading.Event()
        self.runs: list[dict[str, Any]] = []

    def run(self, args: dict[str, Any], ctx: ToolContext) -> Any:
        self.runs.append(args)
        try:
            if self.gate is not None:
                self.gate.wait(timeout=30)
            if self.fail:
                raise ToolError(self.fail)
            return {"doubled": args["n"] * 2, "user": ctx.username}
        finally:
            self.finished.set()


def tool_def(tool: RecordingTool, *, writes: bool = False, permission: str | None = None) -> ToolDefinition:
    return ToolDefinition(
        name=tool.name,
        description=tool.description,
        parameters=tool.parameters,
        writes=writes,
        mounts=frozenset({"chat"}),
        permission=permission,
        implementation=tool,
    )


class Tracing(Middleware):
    name = "tracing"

    def __init__(self, label: str, log: list) -> None:
        super().__init__(id=label)
        self.log = log

    async def before(self, ctx: TurnContext) -> None:
        self.log.append(("before", self.id))
        ctx.system_prompt += f" [{self.id}]"

    async def on_tool_result(self, ctx, result) -> None:
        self.log.append(("tool_result", self.id, result.call.name))

    async def after(self, ctx: TurnContext, reply: Reply) -> None:
        self.log.append(("after", self.id))
        reply.text += f" <{self.id}>"


class Refusing(Middleware):
    name = "refusing"

    async def before(self, ctx: TurnContext) -> None:
        raise Refusal("I won't do that.")


def make_runtime(engine, *, middlewares=(), tools=()) -> Runtime:
    return Runtime(
        registry="r",
        profile="p",
        profile_version=1,
        fingerprint="sha256:test",
        system_prompt="You are a test assistant.",
        engine=engine,
        engine_info={"provider": engine.provider, "model": engine.model},
        middlewares=tuple(middlewares),
        tools=tuple(tools),
    )


async def run_sync(fn, *args):
    return await asyncio.to_thread(fn, *args)


@pytest.fixture
def tool_ctx(recording_emit):
    def make(perms: frozenset[str] = frozenset()) -> ToolContext:
        return ToolContext(
            user_id=1, username="alice", mount="chat", has_perm=lambda perm: perm in perms, emit=recording_emit
        )

    return make


async def run(runtime, ctx, tool_ctx, **kwargs) -> TurnOutcome:
    outcome = TurnOutcome()
    kwargs.setdefault("coalesce_seconds", 0.0)
    return await run_turn(runtime, ctx, outcome, tool_ctx=tool_ctx, run_sync=run_sync, **kwargs)


def kinds(recording_emit) -> list[str]:
    return [kind for kind, _ in recording_emit.frames]


# --------------------------------------------------------------------------- middlewares


async def test_middlewares_run_before_in_order_and_after_in_reverse_order(turn_context, tool_ctx):
    log: list = []
    engine = ScriptedEngine(text_round("Hi"), log=log)
    runtime = make_runtime(engine, middlewares=[Tracing("a", log), Tracing("b", log), Tracing("c", log)])

    outcome = await run(runtime, turn_context(system_prompt="You are a test assistant."), tool_ctx())

    assert log == [
        ("before", "a"),
        ("before", "b"),
        ("before", "c"),
        ("engine", 1),
        ("after", "c"),
        ("after", "b"),
        ("after", "a"),
    ]
    system = engine.calls[0][0][0]
    assert system.role == "system"
    assert system.content == "You are a test assistant. [a] [b] [c]"
    assert outcome.text == "Hi <c> <b> <a>"


async def test_refusal_becomes_the_reply_and_the_engine_is_never_called(turn_context, tool_ctx, recording_emit):
    log: list = []
    engine = ScriptedEngine(text_round("should not be said"), log=log)
    runtime = make_runtime(engine, middlewares=[Tracing("a", log), Refusing(), Tracing("c", log)])

    outcome = await run(runtime, turn_context("do something bad"), tool_ctx())

    assert engine.calls == []
    assert ("engine", 1) not in log
    assert ("before", "c") not in log
    assert outcome.text == "I won't do that."
    assert outcome.stop_reason == "refused"
    assert kinds(recording_emit) == ["llm.start", "llm.final"]
    final = recording_emit.of_type("llm.final")[0]
    assert final["text"] == "I won't do that."
    assert final["stop_reason"] == "refused"


# --------------------------------------------------------------------------- the tool loop


async def test_tool_round_trip_runs_the_allowed_tool_and_feeds_the_result_back(turn_context, tool_ctx, recording_emit):
    log: list = []
    doubler = RecordingTool("doubler")
    engine = ScriptedEngine(call_round("doubler", {"n": 21}), text_round("It is ", "42."))
    runtime = make_runtime(engine, middlewares=[Tracing("a", log)], tools=[tool_def(doubler)])

    outcome = await run(runtime, turn_context("double 21"), tool_ctx())

    assert doubler.runs == [{"n": 21}]
    assert engine.calls[0][1] == ["doubler"]  # offered
    tool_message = engine.calls[1][0][-1]
    assert tool_message.role == "tool"
    assert tool_message.tool_call_id == "call_1"
    assert '"doubled": 42' in tool_message.content
    assert outcome.tool_calls == [
        {"call_id": "call_1", "name": "doubler", "input": {"n": 21}, "result": {"doubled": 42, "user": "alice"}}
    ]
    assert outcome.text == "It is 42. <a>"
    assert ("tool_result", "a", "doubler") in log
    assert kinds(recording_emit)[:5] == ["llm.start", "llm.final", "tool.start", "tool.result", "tool.done"]
    assert recording_emit.of_type("tool.result")[0]["result"] == {"doubled": 42, "user": "alice"}


async def test_tool_not_allowed_is_refused_with_an_error_and_never_run(turn_context, tool_ctx, recording_emit):
    allowed, forbidden = RecordingTool("allowed"), RecordingTool("forbidden")
    engine = ScriptedEngine(call_round("forbidden", {"n": 1}), text_round("ok"))
    runtime = make_runtime(engine, tools=[tool_def(allowed)])

    outcome = await run(runtime, turn_context(), tool_ctx())

    assert engine.calls[0][1] == ["allowed"]  # never offered
    assert forbidden.runs == [] and allowed.runs == []
    error = outcome.tool_calls[0]["error"]
    assert "not allowed" in error
    assert "result" not in outcome.tool_calls[0]
    assert recording_emit.of_type("tool.result")[0] == {"call_id": "call_1", "name": "forbidden", "error": error}
    assert "not allowed" in engine.calls[1][0][-1].content  # the model sees the refusal


async def test_run_tool_refuses_a_registered_tool_the_runtime_does_not_allow(tool_ctx):
    runtime = make_runtime(ScriptedEngine(text_round("x")), tools=[])
    calculator = definitions.tools["calculator"]
    assert calculator.implementation is not None

    result = await run_tool(
        runtime, ToolCall("c1", "calculator", {"expression": "1+1"}), tool_ctx(), run_sync=run_sync, timeout=1
    )

    assert result.result is None
    assert result.error == "tool 'calculator' is not allowed by this runtime"


@pytest.mark.parametrize(
    ("arguments", "where"),
    [({"n": "seven"}, "at n"), ({}, "'n' is a required property"), ({"n": 1, "extra": True}, "extra")],
)
async def test_invalid_arguments_give_an_error_and_the_tool_is_not_run(tool_ctx, arguments, where):
    tool = RecordingTool("doubler")
    runtime = make_runtime(ScriptedEngine(text_round("x")), tools=[tool_def(tool)])

    result = await run_tool(runtime, ToolCall("c1", "doubler", arguments), tool_ctx(), run_sync=run_sync, timeout=1)

    assert result.error is not None
    assert result.error.startswith("invalid arguments")
    assert where in result.error
    assert tool.runs == []


async def test_writing_tool_without_permission_is_denied(tool_ctx):
    tool = RecordingTool("writer")
    runtime = make_runtime(
        ScriptedEngine(text_round("x")), tools=[tool_def(tool, writes=True, permission="inventory.change_item")]
    )

    denied = await run_tool(runtime, ToolCall("c1", "writer", {"n": 1}), tool_ctx(), run_sync=run_sync, timeout=1)
    allowed = await run_tool(
        runtime,
        ToolCall("c2", "writer", {"n": 2}),
        tool_ctx(frozenset({"inventory.change_item"})),
        run_sync=run_sync,
        timeout=1,
    )

    assert denied.error is not None and "permission denied" in denied.error
    assert "inventory.change_item" in denied.error
    assert allowed.error is None and allowed.result == {"doubled": 4, "user": "alice"}
    assert tool.runs == [{"n": 2}]


async def test_tool_that_takes_too_long_times_out_with_an_error(turn_context, tool_ctx):
    gate = threading.Event()  # the tool runs until the test opens this: it never finishes on its own
    slow = RecordingTool("slow", gate=gate)
    engine = ScriptedEngine(call_round("slow", {"n": 1}), text_round("done"))
    runtime = make_runtime(engine, tools=[tool_def(slow)])

    try:
        outcome = await run(runtime, turn_context(), tool_ctx(), tool_timeout=0.05)
        # The turn ended while the tool was still running: the runner did not wait for it.
        assert not slow.finished.is_set()
    finally:
        gate.set()
    assert "timed out" in outcome.tool_calls[0]["error"]
    assert outcome.text == "done"


async def test_tool_error_is_reported_not_raised(turn_context, tool_ctx):
    broken = RecordingTool("broken", fail="item X-1 not found")
    engine = ScriptedEngine(call_round("broken", {"n": 1}), text_round("sorry"))
    runtime = make_runtime(engine, tools=[tool_def(broken)])

    outcome = await run(runtime, turn_context(), tool_ctx())

    assert outcome.tool_calls[0]["error"] == "item X-1 not found"
    assert outcome.stop_reason == "stop"


async def test_tool_loop_stops_after_max_rounds(turn_context, tool_ctx, recording_emit):
    tool = RecordingTool("doubler")
    engine = ScriptedEngine(call_round("doubler", {"n": 1}))  # asks for a tool forever
    runtime = make_runtime(engine, tools=[tool_def(tool)])

    outcome = await run(runtime, turn_context(), tool_ctx())

    assert MAX_ROUNDS == 5
    assert len(engine.calls) == 5
    assert len(tool.runs) == 5
    assert len(outcome.tool_calls) == 5
    assert outcome.stop_reason == "max_rounds"
    assert "Stopped after 5 tool rounds" in outcome.text
    assert len(recording_emit.of_type("llm.start")) == 5


# --------------------------------------------------------------------------- deltas


async def test_instant_tiny_deltas_are_coalesced_into_few_frames(turn_context, tool_ctx, recording_emit):
    chunks = [f"w{i} " for i in range(50)]
    engine = ScriptedEngine(text_round(*chunks))
    runtime = make_runtime(engine)

    outcome = await run(runtime, turn_context(), tool_ctx(), coalesce_seconds=0.03)

    deltas = recording_emit.of_type("llm.delta")
    full = "".join(chunks)
    assert 1 <= len(deltas) <= 5
    assert "".join(d["delta"] for d in deltas) == full
    assert all(set(d) == {"message_id", "delta"} and d["delta"] for d in deltas)  # never the text so far
    assert recording_emit.of_type("llm.final")[0]["text"] == full
    assert outcome.text == full.strip()


async def test_an_engine_round_starts_no_task_per_event_while_the_engine_keeps_talking(
    turn_context, tool_ctx, recording_emit, monkeypatch
):
    """Deltas held back by the coalescer are flushed by a timer only if the engine goes quiet: a round
    whose events come faster than the interval starts no task (a task and an `asyncio.wait` per event
    cost more than the event)."""
    started: list[object] = []
    real = asyncio.ensure_future
    monkeypatch.setattr(asyncio, "ensure_future", lambda coro, **kw: started.append(coro) or real(coro, **kw))
    runtime = make_runtime(ScriptedEngine(text_round(*[f"w{i} " for i in range(50)])))

    await run(runtime, turn_context(), tool_ctx(), coalesce_seconds=0.03)

    assert len(recording_emit.of_type("llm.delta")) >= 2  # deltas were held back meanwhile
    assert started == []


async def test_pending_text_is_flushed_on_time_while_the_engine_is_quiet(turn_context, tool_ctx, recording_emit):
    engine = ScriptedEngine([TextDelta("a"), TextDelta("b"), 0.15, TextDelta("c"), EngineDone("stop")])
    runtime = make_runtime(engine)

    await run(runtime, turn_context(), tool_ctx(), coalesce_seconds=0.03)

    # "a" at once, "b" when its window ends (during the pause), "c" at the end.
    assert [d["delta"] for d in recording_emit.of_type("llm.delta")] == ["a", "b", "c"]


async def test_coalescer_sends_the_first_delta_at_once_and_then_waits_for_its_interval(turn_context):
    ctx = turn_context()
    coalescer = DeltaCoalescer(ctx, "m1", interval=lambda: 10.0)
    assert coalescer.due_in() is None
    coalescer.add("x")
    assert coalescer.due_in() == 0
    await coalescer.flush()
    coalescer.add("y")
    assert coalescer.due_in() > 9
    await coalescer.flush()
    assert [d["delta"] for d in ctx.emit.of_type("llm.delta")] == ["x", "y"]
    assert coalescer.text == "xy"


async def test_the_coalescing_interval_is_asked_at_every_delta_so_it_can_widen_under_load(turn_context):
    ctx = turn_context()
    widths = iter([0.0, 0.0, 10.0, 10.0])
    coalescer = DeltaCoalescer(ctx, "m1", interval=lambda: next(widths))
    coalescer.add("a")
    assert coalescer.due_in() == 0
    await coalescer.flush()
    coalescer.add("b")
    assert coalescer.due_in() == 0  # narrow: due at once
    await coalescer.flush()
    coalescer.add("c")
    assert coalescer.due_in() > 9  # widened: waits


# --------------------------------------------------------------------------- failures


async def test_engine_error_mid_stream_keeps_the_partial_text(turn_context, tool_ctx, recording_emit):
    engine = ScriptedEngine([TextDelta("Hello "), TextDelta("wor"), EngineError("provider_error", "HTTP 500")])
    runtime = make_runtime(engine)
    outcome = TurnOutcome()

    with pytest.raises(EngineError) as raised:
        await run_turn(runtime, turn_context(), outcome, tool_ctx=tool_ctx(), run_sync=run_sync, coalesce_seconds=0)

    assert raised.value.code == "provider_error"
    assert outcome.text == "Hello wor"
    assert "".join(d["delta"] for d in recording_emit.of_type("llm.delta")) == "Hello wor"
    assert recording_emit.of_type("llm.final") == []


async def test_engine_error_in_a_later_round_keeps_the_earlier_rounds_text(turn_context, tool_ctx):
    tool = RecordingTool("doubler")
    engine = ScriptedEngine(
        [TextDelta("Let me check. "), *call_round("doubler", {"n": 1})],
        [TextDelta("The answer"), EngineError("timeout", "read timed out")],
    )
    runtime = make_runtime(engine, tools=[tool_def(tool)])
    outcome = TurnOutcome()

    with pytest.raises(EngineError):
        await run_turn(runtime, turn_context(), outcome, tool_ctx=tool_ctx(), run_sync=run_sync, coalesce_seconds=0)

    assert outcome.text == "Let me check. The answer"
    assert len(outcome.tool_calls) == 1


async def test_stream_without_a_finish_event_is_a_malformed_stream(turn_context, tool_ctx):
    runtime = make_runtime(ScriptedEngine([TextDelta("cut off")]))
    outcome = TurnOutcome()

    with pytest.raises(EngineError) as raised:
        await run_turn(runtime, turn_context(), outcome, tool_ctx=tool_ctx(), run_sync=run_sync, coalesce_seconds=0)

    assert raised.value.code == "malformed_stream"
    assert outcome.text == "cut off"


# --------------------------------------------------------------------------- with the real offline engine


def offline_runtime(runtime: dict[str, Any]) -> Runtime:
    resolution = resolve_runtime(registry="default", profile="agent", profile_version=1, runtime=runtime, policy={})
    return compose(
        resolution,
        mount_tools=frozenset({"calculator", "current_time"}),
        defs=definitions,
        make_engine=lambda settings: OfflineEngine(delay=0.0),
    )


async def test_offline_engine_calls_the_calculator_and_answers_from_its_result(turn_context, tool_ctx, recording_emit):
    runtime = offline_runtime(
        {
            "system_prompt": "You are a careful agent.",
            "middlewares": [{"name": "agent_mode", "config": {"default_mode": "plan"}}],
            "tools": ["calculator"],
        }
    )

    outcome = await run(runtime, turn_context("what is 17.5% of 2,340?"), tool_ctx())

    assert [c["name"] for c in outcome.tool_calls] == ["calculator"]
    assert outcome.tool_calls[0]["result"]["result"] == 409.5
    assert "409.5" in outcome.text
    assert "Mode: plan" in outcome.text  # the middleware's instructions reached the engine
    assert outcome.stop_reason == "stop"
    assert [e["event"] for e in recording_emit.events] == ["mode"]


async def test_offline_engine_is_not_offered_a_tool_outside_the_runtime(turn_context, tool_ctx, recording_emit):
    runtime = offline_runtime({"system_prompt": "You are a concise assistant."})

    outcome = await run(runtime, turn_context("what is 2+2"), tool_ctx())

    assert outcome.tool_calls == []
    assert recording_emit.of_type("tool.start") == []
    assert "No calculator tool is available" in outcome.text
