"""The offline engine: deterministic streaming, visible obedience to the system prompt, tool calls for
recognised requests (only when offered) and answers built only from tool results."""

from __future__ import annotations

import json
import re
import time
from typing import Any

import pytest

from chat.runtime.base import (
    EngineDone,
    EngineEvent,
    Message,
    TextDelta,
    ToolCall,
    ToolCallsRequested,
    ToolSpec,
)
from chat.runtime.engines.offline import OfflineEngine, recognise
from inventory.seed import ITEMS

CONCISE = "You are a concise assistant."
ANALYST = "You are an analyst assistant. Answer with findings first, then evidence."
AGENT = "You are a careful agent. Use tools when they help."
INVENTORY = "You are an inventory assistant."

SKU_RE = re.compile(r"\b[A-Za-z]-\d{3,}\b")

INVENTORY_TOOLS = [
    "inventory_search_items",
    "inventory_get_item",
    "inventory_low_stock",
    "inventory_report",
    "inventory_update_qty",
    "inventory_record_sale",
]
ALL_TOOLS = [*INVENTORY_TOOLS, "calculator", "current_time"]

# The seed of inventory.md (sku, name, category, qty, price, cost, tags), the same rows the demo seeds.
SEED = ITEMS


def item(sku: str, **changes: Any) -> dict[str, Any]:
    row = next(r for r in SEED if r[0] == sku)
    data = dict(zip(("sku", "name", "category", "qty", "price", "cost", "tags"), row, strict=True))
    return {**data, **changes}


def low_stock_items(threshold: int = 3) -> list[dict[str, Any]]:
    rows = sorted((r for r in SEED if r[3] <= threshold), key=lambda r: (r[3], r[0]))
    return [item(r[0]) for r in rows]


def specs(*names: str) -> list[ToolSpec]:
    return [ToolSpec(name=n, description=f"{n} tool", parameters={"type": "object"}) for n in names]


def conversation(system: str, prompt: str) -> list[Message]:
    return [Message("system", system), Message("user", prompt)]


def after_tool(system: str, prompt: str, call: ToolCall, result: Any) -> list[Message]:
    """The messages the runner sends after one tool round."""
    return [
        *conversation(system, prompt),
        Message("assistant", "", tool_calls=[call]),
        Message("tool", json.dumps(result), tool_call_id=call.call_id, name=call.name),
    ]


async def run(engine: OfflineEngine, messages: list[Message], tools: list[ToolSpec]) -> list[EngineEvent]:
    return [event async for event in engine.stream(messages, tools)]


def text_of(events: list[EngineEvent]) -> str:
    return "".join(e.text for e in events if isinstance(e, TextDelta))


async def reply(system: str, prompt: str, tools: list[ToolSpec] | None = None) -> str:
    events = await run(OfflineEngine(), conversation(system, prompt), tools or [])
    assert isinstance(events[-1], EngineDone)
    return text_of(events)


async def answer(system: str, prompt: str, name: str, result: Any, arguments: dict[str, Any] | None = None) -> str:
    messages = after_tool(system, prompt, ToolCall("call_1", name, arguments or {}), result)
    events = await run(OfflineEngine(), messages, specs(*ALL_TOOLS))
    assert isinstance(events[-1], EngineDone)
    assert not any(isinstance(e, ToolCallsRequested) for e in events)
    return text_of(events)


# --------------------------------------------------------------------------- streaming


async def test_streams_several_deltas_then_done_with_usage() -> None:
    events = await run(OfflineEngine(), conversation(CONCISE, "Hello there, how are you today?"), [])
    deltas = [e for e in events if isinstance(e, TextDelta)]
    assert len(deltas) >= 3
    assert all(d.text for d in deltas)
    done = events[-1]
    assert isinstance(done, EngineDone)
    assert done.stop_reason == "stop"
    assert done.usage["completion_tokens"] == len(text_of(events).split())
    assert done.usage["total_tokens"] == done.usage["prompt_tokens"] + done.usage["completion_tokens"]
    assert done.usage["prompt_tokens"] > 0


async def test_is_deterministic() -> None:
    messages = conversation(ANALYST, "Compare two options and recommend one")
    assert await run(OfflineEngine(), messages, specs("calculator")) == await run(
        OfflineEngine(), messages, specs("calculator")
    )
    tool_messages = conversation(INVENTORY, "which items are low on stock?")
    first = await run(OfflineEngine(), tool_messages, specs(*INVENTORY_TOOLS))
    assert first == await run(OfflineEngine(), tool_messages, specs(*INVENTORY_TOOLS))


async def test_delay_paces_the_chunks() -> None:
    engine = OfflineEngine(delay=0.01)
    started = time.monotonic()
    events = await run(engine, conversation(CONCISE, "hello"), [])
    chunks = sum(isinstance(e, TextDelta) for e in events)
    assert time.monotonic() - started >= 0.01 * (chunks - 1)
    assert (engine.provider, engine.model) == ("offline", "offline-v1")


# --------------------------------------------------------------------------- system prompt


async def test_persona_is_visible_and_prompts_give_different_replies() -> None:
    concise = await reply(CONCISE, "Compare two options and recommend one")
    analyst = await reply(ANALYST, "Compare two options and recommend one")
    assert concise.startswith("(offline · concise assistant) ")
    assert analyst.startswith("(offline · analyst assistant) ")
    assert "Findings:" in analyst
    assert "\nEvidence" in analyst
    assert analyst.index("Findings:") < analyst.index("Evidence")
    assert "Findings:" not in concise
    assert "Compare two options and recommend one" in concise


async def test_without_persona_the_reply_is_still_labelled_offline() -> None:
    text = await reply("Answer briefly.", "hi")
    assert text.startswith("(offline) ")
    text = await reply("", "hi")
    assert text.startswith("(offline) ")


async def test_agent_mode_is_stated() -> None:
    text = await reply(f"{AGENT}\n\nMode: plan. Outline the steps before acting.", "Help me plan a launch")
    assert text.startswith("(offline · careful agent) Mode: plan — following “Outline the steps before acting.”; ")
    assert "1)" in text
    act = await reply(f"{AGENT}\n\nMode: act. Act directly: use the available tools.", "Help me plan a launch")
    assert act.startswith("(offline · careful agent) Mode: act — following “Act directly: use the available tools.”")
    assert "Mode:" not in await reply(AGENT, "Help me plan a launch")


async def test_echo_quotes_a_shortened_user_message() -> None:
    long_prompt = "please " * 60
    text = await reply(CONCISE, long_prompt)
    assert "You said: “please please" in text
    assert "…" in text
    assert len(text) < 300


async def test_echo_mentions_offered_tools() -> None:
    text = await reply(AGENT, "Tell me a story", specs("calculator", "current_time"))
    assert "calculator" in text
    assert "current_time" in text
    assert "offline engine" in text


# --------------------------------------------------------------------------- tool calls

INTENTS = [
    ("Which items are low on stock?", "inventory_low_stock", {}),
    ("low stock", "inventory_low_stock", {}),
    ("what's running low?", "inventory_low_stock", {}),
    ("low stock with threshold 5", "inventory_low_stock", {"threshold": 5}),
    ("which items are low on stock, below 2?", "inventory_low_stock", {"threshold": 2}),
    ("what is running low, at most 4 units", "inventory_low_stock", {"threshold": 4}),
    ("What is A-1002?", "inventory_get_item", {"sku": "A-1002"}),
    ("show A-1002", "inventory_get_item", {"sku": "A-1002"}),
    ("tell me about a-1002", "inventory_get_item", {"sku": "A-1002"}),
    ("search mugs", "inventory_search_items", {"query": "mug"}),
    ("find candles", "inventory_search_items", {"query": "candle"}),
    ("search for keychain", "inventory_search_items", {"query": "keychain"}),
    ("search glass", "inventory_search_items", {"query": "glass"}),
    ("inventory report", "inventory_report", {}),
    ("report since 2026-02-08", "inventory_report", {"since": "2026-02-08"}),
    ("Record a sale of 2 A-1002", "inventory_record_sale", {"sku": "A-1002", "qty": 2}),
    ("sell 3 B-2001", "inventory_record_sale", {"sku": "B-2001", "qty": 3}),
    ("sold 1 x C-3011", "inventory_record_sale", {"sku": "C-3011", "qty": 1}),
    ("add 5 to B-2015", "inventory_update_qty", {"sku": "B-2015", "delta": 5}),
    ("add 5 units of B-2015", "inventory_update_qty", {"sku": "B-2015", "delta": 5}),
    ("remove 2 from A-1033", "inventory_update_qty", {"sku": "A-1033", "delta": -2}),
    ("What is 17.5% of 2,340?", "calculator", {"expression": "17.5% of 2,340"}),
    ("calculate (3+4)*5", "calculator", {"expression": "(3+4)*5"}),
    ("what is 2+2", "calculator", {"expression": "2+2"}),
    ("What time is it?", "current_time", {}),
    ("current time please", "current_time", {}),
]


@pytest.mark.parametrize(("prompt", "tool", "arguments"), INTENTS)
async def test_recognised_request_calls_the_offered_tool(prompt: str, tool: str, arguments: dict[str, Any]) -> None:
    events = await run(OfflineEngine(), conversation(INVENTORY, prompt), specs(*ALL_TOOLS))
    assert events == [ToolCallsRequested([ToolCall(call_id="call_1", name=tool, arguments=arguments)])]


@pytest.mark.parametrize(("prompt", "tool", "arguments"), INTENTS)
async def test_recognised_request_without_the_tool_calls_nothing(
    prompt: str, tool: str, arguments: dict[str, Any]
) -> None:
    others = [name for name in ALL_TOOLS if name != tool]
    for offered in (specs(*others), []):
        events = await run(OfflineEngine(), conversation(INVENTORY, prompt), offered)
        assert not any(isinstance(e, ToolCallsRequested) for e in events)
        assert isinstance(events[-1], EngineDone)
        assert f"No {tool} tool is available" in text_of(events)


@pytest.mark.parametrize("prompt", ["hello", "2026-02-08", "Compare two options and recommend one", "find me"])
async def test_unrecognised_requests_call_no_tool(prompt: str) -> None:
    assert recognise(prompt) is None
    events = await run(OfflineEngine(), conversation(INVENTORY, prompt), specs(*ALL_TOOLS))
    assert isinstance(events[-1], EngineDone)


async def test_never_invents_stock_data() -> None:
    for system in (CONCISE, ANALYST, INVENTORY):
        text = await reply(system, "which items are low on stock?")
        assert not SKU_RE.search(text), text
        assert "won't guess" in text


async def test_call_ids_stay_unique_across_the_history() -> None:
    messages = [
        *after_tool(INVENTORY, "what time is it", ToolCall("call_1", "current_time", {}), {"iso": "x"}),
        Message("assistant", "It is x."),
        Message("user", "which items are low on stock?"),
    ]
    events = await run(OfflineEngine(), messages, specs(*ALL_TOOLS))
    assert events == [ToolCallsRequested([ToolCall("call_2", "inventory_low_stock", {})])]


async def test_full_tool_round_like_the_runner() -> None:
    engine, tools = OfflineEngine(), specs(*INVENTORY_TOOLS)
    messages = conversation(INVENTORY, "Which items are low on stock?")
    first = await run(engine, messages, tools)
    assert len(first) == 1
    assert isinstance(first[0], ToolCallsRequested)
    (call,) = first[0].calls
    result = {"threshold": 3, "count": 5, "items": low_stock_items()}
    messages += [
        Message("assistant", "", tool_calls=[call]),
        Message("tool", json.dumps(result), tool_call_id=call.call_id, name=call.name),
    ]
    second = await run(engine, messages, tools)
    assert isinstance(second[-1], EngineDone)
    assert "5 items are at or below 3 units:" in text_of(second)


# --------------------------------------------------------------------------- answers from results


async def test_low_stock_answer_lists_exactly_the_result_items() -> None:
    result = {"threshold": 3, "count": 5, "items": low_stock_items()}
    text = await answer(INVENTORY, "Which items are low on stock?", "inventory_low_stock", result)
    assert text.startswith("(offline · inventory assistant) 5 items are at or below 3 units:\n")
    bullets = [line for line in text.splitlines() if line.startswith("- ")]
    assert bullets == [
        "- A-1021 Keychain - Silver: 0",
        "- C-3010 Candle - Beeswax Lg: 0",
        "- A-1055 Ring - Copper Band: 1",
        "- A-1002 Keychain - Brass: 2",
        "- B-2015 Mug - Hand-thrown: 3",
    ]
    assert set(SKU_RE.findall(text)) == {"A-1021", "C-3010", "A-1055", "A-1002", "B-2015"}


async def test_analyst_answer_puts_findings_before_evidence() -> None:
    result = {"threshold": 3, "count": 5, "items": low_stock_items()}
    text = await answer(ANALYST, "Which items are low on stock?", "inventory_low_stock", result)
    assert "Findings: 5 items are at or below 3 units." in text
    assert "Evidence (inventory_low_stock):\n- A-1021 Keychain - Silver: 0" in text


async def test_empty_low_stock() -> None:
    text = await answer(INVENTORY, "low stock", "inventory_low_stock", {"threshold": 0, "count": 0, "items": []})
    assert "No items are at or below 0 units." in text
    assert not SKU_RE.search(text)


def seed_report(since: str | None = None) -> dict[str, Any]:
    return {
        "threshold": 3,
        "since": since,
        "sku_count": 10,
        "total_units": 59,
        "retail_value": "816.41",
        "cost_basis": "256.00",
        "potential_profit": "560.41",
        "low_stock_count": 5,
        "out_of_stock_count": 2,
        "low_stock": low_stock_items(),
        "out_of_stock": low_stock_items(0),
        "sales_total": "169.83" if since else "189.82",
        "recent_sales": [{"id": "s1", "date": "2026-02-10", "sku": "A-1002", "qty": 2, "total": "19.98"}],
    }


async def test_report_answer_shows_the_figures() -> None:
    text = await answer(INVENTORY, "inventory report", "inventory_report", seed_report())
    for figure in (
        "SKUs: 10",
        "Units: 59",
        "Retail value: 816.41",
        "Cost basis: 256.00",
        "Potential profit: 560.41",
        "Low stock (≤ 3): 5 (A-1021, C-3010, A-1055, A-1002, B-2015)",
        "Out of stock: 2 (A-1021, C-3010)",
        "Sales total (all time): 189.82",
    ):
        assert figure in text
    since = await answer(INVENTORY, "report since 2026-02-08", "inventory_report", seed_report("2026-02-08"))
    assert "Sales total (since 2026-02-08): 169.83" in since


async def test_get_item_answer() -> None:
    text = await answer(INVENTORY, "what is A-1002?", "inventory_get_item", {"item": item("A-1002")})
    assert "A-1002 Keychain - Brass: 2 in stock at 9.99." in text
    assert "- price: 9.99" in text


async def test_search_answer() -> None:
    result = {"query": "mug", "count": 2, "items": [item("B-2001"), item("B-2015")]}
    text = await answer(INVENTORY, "search mugs", "inventory_search_items", result)
    assert "2 items match “mug”:" in text
    assert "- B-2001 Mug - Ceramic Blue: 14 in stock, 24.99" in text
    assert "- B-2015 Mug - Hand-thrown: 3 in stock, 19.99" in text
    none = await answer(
        INVENTORY, "search glass", "inventory_search_items", {"query": "glass", "count": 0, "items": []}
    )
    assert "No items match “glass”." in none


async def test_sale_answer() -> None:
    result = {
        "sale": {"id": "u1", "date": "2026-02-11", "sku": "A-1002", "qty": 2, "total": "19.98"},
        "item": item("A-1002", qty=0),
    }
    text = await answer(INVENTORY, "Record a sale of 2 A-1002", "inventory_record_sale", result)
    assert "Recorded a sale of 2 \u00d7 A-1002 (total 19.98). A-1002 now has 0 left." in text


async def test_update_answers() -> None:
    added = {"item": item("B-2015", qty=8), "requested_delta": 5, "applied_delta": 5, "clamped": False}
    text = await answer(INVENTORY, "add 5 to B-2015", "inventory_update_qty", added)
    assert "B-2015 Mug - Hand-thrown now has 8 units (+5)." in text
    assert "clamped" not in text
    clamped = {"item": item("A-1033", qty=0), "requested_delta": -7, "applied_delta": -5, "clamped": True}
    text = await answer(INVENTORY, "remove 7 from A-1033", "inventory_update_qty", clamped)
    assert "now has 0 units (-5)" in text
    assert "clamped at 0" in text


async def test_calculator_and_time_answers() -> None:
    calc = {"expression": "17.5% of 2,340", "result": "409.5"}
    assert "17.5% of 2,340 = 409.5" in await answer(CONCISE, "What is 17.5% of 2,340?", "calculator", calc)
    now = {"iso": "2026-02-11T09:30:00+00:00", "timezone": "UTC", "unix_ms": 1770802200000}
    assert "It is 2026-02-11T09:30:00+00:00 (UTC)." in await answer(AGENT, "what time is it", "current_time", now)


async def test_tool_error_is_reported() -> None:
    text = await answer(INVENTORY, "what is Z-999?", "inventory_get_item", {"error": "item Z-999 not found"})
    assert "The inventory_get_item tool failed: item Z-999 not found" in text


async def test_unknown_result_shape_is_summarised() -> None:
    text = await answer(INVENTORY, "anything", "mystery_tool", {"b": 2, "a": [1, 2]})
    assert 'mystery_tool returned: {"a":[1,2],"b":2}' in text
    plain = after_tool(INVENTORY, "x", ToolCall("call_1", "mystery_tool", {}), None)
    plain[-1].content = "not json at all"
    assert "mystery_tool returned: not json at all" in text_of(await run(OfflineEngine(), plain, []))


# --------------------------------------------------------------------------- "use <tool> with <json>"


async def test_use_a_tool_with_json_arguments_calls_exactly_that_tool() -> None:
    events = await run(
        OfflineEngine(), conversation(CONCISE, 'use calculator with {"expression": "6 * 7"}'), specs("calculator")
    )

    assert events == [ToolCallsRequested([ToolCall("call_1", "calculator", {"expression": "6 * 7"})])]


async def test_use_names_any_offered_tool_even_one_no_phrasing_recognises() -> None:
    asked = 'use mcp:acme/add with {"a": 2, "b": 40}'

    events = await run(OfflineEngine(), conversation(CONCISE, asked), specs("mcp:acme/add"))

    assert events == [ToolCallsRequested([ToolCall("call_1", "mcp:acme/add", {"a": 2, "b": 40})])]


@pytest.mark.parametrize(
    ("prompt", "said"),
    [
        ('use current_time with {"zone": "UTC"}', "No current_time tool is available in this profile"),
        ("use calculator with {expression: 6}", "I can't call calculator: the arguments after 'with' are not JSON"),
    ],
)
async def test_use_that_cannot_be_done_is_said_not_guessed(prompt: str, said: str) -> None:
    events = await run(OfflineEngine(), conversation(CONCISE, prompt), specs("calculator"))

    assert not any(isinstance(e, ToolCallsRequested) for e in events)
    assert said in text_of(events)
