"""The registered middlewares: schemas, behaviour, and the events they emit (only when they act)."""

from __future__ import annotations

import pytest
from jsonschema import Draft202012Validator

from chat.runtime.base import Message, Refusal, Reply, ToolCall, ToolResult
from chat.runtime.middlewares import (
    DEFAULT_MODES,
    MIDDLEWARE_DEFINITIONS,
    AgentMode,
    ContextWindow,
    Guardrail,
    Redact,
    Suggestions,
)
from chat.runtime.redaction import redact_text
from profiles.definitions import definitions

DEFINITIONS = {definition.name: definition for definition in MIDDLEWARE_DEFINITIONS}


def history_of(turns: int) -> list[Message]:
    """`turns` complete past turns: user, assistant calling a tool, tool, assistant."""
    messages: list[Message] = []
    for n in range(turns):
        call = ToolCall(call_id=f"c{n}", name="calculator", arguments={"expression": "1+1"})
        messages += [
            Message(role="user", content=f"question {n}"),
            Message(role="assistant", tool_calls=[call]),
            Message(role="tool", content="2", tool_call_id=f"c{n}", name="calculator"),
            Message(role="assistant", content=f"answer {n}"),
        ]
    return messages


def tool_result(name: str, error: str | None = None) -> ToolResult:
    """A result of the registered tool `name` (its definition brings its follow-up)."""
    definition = definitions.tools.get(name)
    return ToolResult(
        call=ToolCall(call_id=f"call-{name}", name=name, arguments={}),
        result={"ok": 1},
        error=error,
        tool=definition.implementation if definition else None,
    )


# --------------------------------------------------------------------------- registration and schemas


def test_every_required_middleware_is_registered_once_with_version_1_and_its_class_as_factory():
    assert list(DEFINITIONS) == ["context_window", "redact", "guardrail", "agent_mode", "suggestions"]
    for name, definition in DEFINITIONS.items():
        assert definition.version == 1
        assert definition.display_name and definition.description
        assert definition.factory is not None and definition.factory.name == name
        assert definition.factory(id="x", config={}).id == "x"


@pytest.mark.parametrize("name", list(DEFINITIONS))
def test_middleware_schema_is_valid_draft_2020_12_and_closed(name):
    schema = DEFINITIONS[name].schema
    Draft202012Validator.check_schema(schema)
    assert schema["type"] == "object"
    assert schema["additionalProperties"] is False


@pytest.mark.parametrize("name", list(DEFINITIONS))
def test_middleware_defaults_validate_against_its_own_schema(name):
    definition = DEFINITIONS[name]
    defaults = {key: sub["default"] for key, sub in definition.schema["properties"].items()}
    assert not list(Draft202012Validator(definition.schema).iter_errors(defaults))
    assert not list(Draft202012Validator(definition.schema).iter_errors({}))


@pytest.mark.parametrize(
    ("name", "config"),
    [
        ("context_window", {"max_turns": 0}),
        ("context_window", {"max_turns": 201}),
        ("context_window", {"max_turns": "5"}),
        ("context_window", {"max_turns": 5, "extra": True}),
        ("redact", {"kinds": ["ssn"]}),
        ("redact", {"kinds": ["email", "email"]}),
        ("redact", {"mask": 3}),
        ("redact", {"colour": "red"}),
        ("guardrail", {"blocked_terms": [""]}),
        ("guardrail", {"blocked_terms": ["   "]}),
        ("guardrail", {"blocked_terms": "weapons"}),
        ("guardrail", {"message": ""}),
        ("agent_mode", {"modes": {"Plan": "Upper-case names are not mode names."}}),
        ("agent_mode", {"modes": {}}),
        ("agent_mode", {"modes": {"plan": 1}}),
        ("agent_mode", {"default_mode": "no spaces allowed"}),
        ("suggestions", {"max_items": 0}),
        ("suggestions", {"max_items": 11}),
        ("suggestions", {"max_items": 3, "style": "short"}),
    ],
)
def test_middleware_schema_rejects_invalid_config(name, config):
    assert list(Draft202012Validator(DEFINITIONS[name].schema).iter_errors(config))


def test_fixture_profile_configs_validate_against_the_schemas():
    """The configs registries.yaml uses (analyst's suggestions, agent's redact and agent_mode)."""
    cases = [
        ("suggestions", {"max_items": 3}),
        ("redact", {"kinds": ["email", "phone", "card"]}),
        ("agent_mode", {"default_mode": "plan"}),
    ]
    for name, config in cases:
        assert not list(Draft202012Validator(DEFINITIONS[name].schema).iter_errors(config))


# --------------------------------------------------------------------------- context_window


async def test_context_window_keeps_the_last_n_user_turns_with_their_tool_messages(turn_context, recording_emit):
    ctx = turn_context("current question", history=history_of(5))
    await ContextWindow(id="cw", config={"max_turns": 3}).before(ctx)

    users = [m.content for m in ctx.messages if m.role == "user"]
    assert users == ["question 3", "question 4", "current question"]
    assert ctx.messages[0].content == "question 3"  # the kept turns are whole: they start at a user message
    assert [m.role for m in ctx.messages[:4]] == ["user", "assistant", "tool", "assistant"]
    assert ctx.messages[-1].content == "current question"
    assert recording_emit.events == [
        {
            "middleware": "context_window",
            "id": "cw",
            "event": "trimmed",
            "detail": {"dropped_messages": 12, "kept_messages": 9},
        }
    ]


async def test_context_window_with_max_turns_1_keeps_only_the_current_message(turn_context, recording_emit):
    ctx = turn_context("now", history=history_of(2))
    await ContextWindow(config={"max_turns": 1}).before(ctx)
    assert [(m.role, m.content) for m in ctx.messages] == [("user", "now")]
    assert recording_emit.events[0]["detail"] == {"dropped_messages": 8, "kept_messages": 1}


async def test_context_window_never_drops_system_messages(turn_context):
    history = [Message(role="system", content="pinned"), *history_of(3)]
    ctx = turn_context("now", history=history)
    await ContextWindow(config={"max_turns": 1}).before(ctx)
    assert [m.content for m in ctx.messages] == ["pinned", "now"]


async def test_context_window_with_nothing_to_drop_emits_no_event(turn_context, recording_emit):
    ctx = turn_context("now", history=history_of(2))
    before = list(ctx.messages)
    await ContextWindow(config={"max_turns": 3}).before(ctx)
    assert ctx.messages == before
    assert recording_emit.frames == []


async def test_context_window_uses_the_schema_default_of_20_turns_when_config_is_empty(turn_context, recording_emit):
    ctx = turn_context("now", history=history_of(25))
    await ContextWindow(config={}).before(ctx)
    assert sum(m.role == "user" for m in ctx.messages) == 20
    assert recording_emit.events[0]["event"] == "trimmed"


# --------------------------------------------------------------------------- redact


async def test_redact_masks_email_and_does_not_leak_it_in_the_event(turn_context, recording_emit):
    ctx = turn_context("Write to jane.doe+orders@example.co.uk about the invoice")
    await Redact(id="r", config={}).before(ctx)

    assert ctx.messages[-1].content == "Write to [redacted:email] about the invoice"
    assert recording_emit.events == [
        {"middleware": "redact", "id": "r", "event": "redacted", "detail": {"counts": {"email": 1}}}
    ]
    assert "jane" not in repr(recording_emit.frames)


async def test_redact_keeps_the_original_prompt_for_the_stored_record(turn_context):
    ctx = turn_context("mail me at bob@example.com")
    original = ctx.messages[-1]
    await Redact().before(ctx)
    assert ctx.prompt == "mail me at bob@example.com"
    assert original.content == "mail me at bob@example.com"  # the caller's message object is not mutated


@pytest.mark.parametrize(
    "phone",
    ["+1 (415) 555-0134", "415-555-0134", "+44 20 7946 0958", "(415) 555-0134", "+14155550134", "415.555.0134"],
)
async def test_redact_masks_international_and_national_phone_numbers(turn_context, recording_emit, phone):
    ctx = turn_context(f"Call me on {phone} tomorrow.")
    await Redact().before(ctx)
    assert ctx.messages[-1].content == "Call me on [redacted:phone] tomorrow."
    assert recording_emit.events[0]["detail"] == {"counts": {"phone": 1}}


@pytest.mark.parametrize("card", ["4111 1111 1111 1111", "4111-1111-1111-1111", "5500005555555559", "378282246310005"])
async def test_redact_masks_card_numbers_that_pass_the_luhn_check(turn_context, recording_emit, card):
    ctx = turn_context(f"My card is {card}, thanks")
    await Redact().before(ctx)
    assert ctx.messages[-1].content == "My card is [redacted:card], thanks"
    assert recording_emit.events[0]["detail"] == {"counts": {"card": 1}}


def test_redact_leaves_digit_runs_that_fail_the_luhn_check():
    assert redact_text("ref 4111 1111 1111 1112", ["card"], "X") == ("ref 4111 1111 1111 1112", {})


@pytest.mark.parametrize(
    "text",
    [
        "What is 17.5% of 2,340?",
        "Sales on 2026-02-08 for SKU A-1002 were 1,234,567.89",
        "Server 192.168.100.200, years 1990-2000, pi 3.14159265358979",
        "Record a sale of 2 A-1002",
    ],
)
async def test_redact_does_not_mask_plain_numbers_dates_or_skus_and_emits_nothing(turn_context, recording_emit, text):
    ctx = turn_context(text)
    await Redact().before(ctx)
    assert ctx.messages[-1].content == text
    assert recording_emit.frames == []


async def test_redact_counts_each_kind_and_only_masks_the_configured_kinds(turn_context, recording_emit):
    prompt = "a@b.io, c@d.io, 415-555-0134, card 4111 1111 1111 1111"
    ctx = turn_context(prompt)
    await Redact(config={"kinds": ["email", "card"], "mask": "<{kind}>"}).before(ctx)
    assert ctx.messages[-1].content == "<email>, <email>, 415-555-0134, card <card>"
    assert recording_emit.events[0]["detail"] == {"counts": {"email": 2, "card": 1}}


async def test_redact_masks_user_messages_in_the_history_too(turn_context, recording_emit):
    history = [Message(role="user", content="old@example.com"), Message(role="assistant", content="ok")]
    ctx = turn_context("new@example.com and call +1 (415) 555-0134", history=history)
    await Redact().before(ctx)
    assert [m.content for m in ctx.messages] == ["[redacted:email]", "ok", "[redacted:email] and call [redacted:phone]"]
    assert history[0].content == "old@example.com"  # the caller's objects are untouched
    assert ctx.prompt.startswith("new@example.com")  # the stored record keeps what the user sent


async def test_redact_counts_only_what_it_masked_in_the_current_message(turn_context, recording_emit):
    ctx = turn_context("nothing here", history=[Message(role="user", content="old@example.com")])
    await Redact().before(ctx)
    assert ctx.messages[0].content == "[redacted:email]"
    assert recording_emit.of_type("middleware.event") == []


# --------------------------------------------------------------------------- guardrail


async def test_guardrail_refuses_a_blocked_phrase_case_insensitively_and_emits_blocked(turn_context, recording_emit):
    guard = Guardrail(id="g", config={"blocked_terms": ["credit limit", "weapon"], "message": "No."})
    ctx = turn_context("How do I raise my CREDIT   Limit?")
    with pytest.raises(Refusal) as refused:
        await guard.before(ctx)
    assert refused.value.message == "No."
    assert recording_emit.events == [
        {"middleware": "guardrail", "id": "g", "event": "blocked", "detail": {"term": "credit limit"}}
    ]


async def test_guardrail_matches_whole_words_only(turn_context, recording_emit):
    guard = Guardrail(config={"blocked_terms": ["arm"]})
    await guard.before(turn_context("Show the alarm and harmony items"))
    assert recording_emit.frames == []
    with pytest.raises(Refusal) as refused:
        await guard.before(turn_context("Can I arm it?"))
    assert refused.value.message == "I can't help with that request."


async def test_guardrail_checks_the_current_user_message_not_the_history(turn_context, recording_emit):
    history = [Message(role="user", content="tell me about weapons"), Message(role="assistant", content="No.")]
    await Guardrail(config={"blocked_terms": ["weapons"]}).before(turn_context("ok, something else", history=history))
    assert recording_emit.frames == []


async def test_guardrail_without_terms_lets_everything_through_silently(turn_context, recording_emit):
    await Guardrail(config={}).before(turn_context("anything at all"))
    assert recording_emit.frames == []


# --------------------------------------------------------------------------- agent_mode


async def test_agent_mode_appends_the_default_mode_instructions_and_emits_mode(turn_context, recording_emit):
    ctx = turn_context("hi", system_prompt="You are a careful agent.")
    await AgentMode(id="m", config={"default_mode": "plan"}).before(ctx)
    assert ctx.system_prompt == f"You are a careful agent.\n\nMode: plan. {DEFAULT_MODES['plan']}"
    assert recording_emit.events == [
        {"middleware": "agent_mode", "id": "m", "event": "mode", "detail": {"mode": "plan"}}
    ]


async def test_agent_mode_uses_a_known_mode_from_the_turn_state(turn_context, recording_emit):
    ctx = turn_context("hi", system_prompt="S", state={"mode": "review"})
    await AgentMode(config={}).before(ctx)
    assert ctx.system_prompt == f"S\n\nMode: review. {DEFAULT_MODES['review']}"
    assert recording_emit.events[0]["detail"] == {"mode": "review"}


async def test_agent_mode_ignores_an_unknown_mode_in_the_state(turn_context, recording_emit):
    ctx = turn_context("hi", system_prompt="S", state={"mode": "chaos"})
    await AgentMode(config={"modes": {"fast": "Be quick."}, "default_mode": "fast"}).before(ctx)
    assert ctx.system_prompt == "S\n\nMode: fast. Be quick."
    assert recording_emit.events[0]["detail"] == {"mode": "fast"}


def test_agent_mode_rejects_a_default_mode_that_is_not_one_of_its_modes():
    config = {"modes": {"fast": "Be quick."}, "default_mode": "plan"}
    assert AgentMode.validate_config(config) == [("default_mode", "unknown mode 'plan'")]
    assert AgentMode.validate_config({"default_mode": "act"}) == []
    with pytest.raises(ValueError, match="unknown mode 'plan'"):
        AgentMode(config=config)


# --------------------------------------------------------------------------- suggestions


async def test_suggestions_emits_a_suggestions_frame_and_a_suggested_event(turn_context, recording_emit):
    ctx = turn_context("What is 17.5% of 2,340?")
    ctx.tool_results.append(tool_result("calculator"))
    await Suggestions(id="followups", config={"max_items": 3}).after(ctx, Reply(text="17.5% of 2,340 = 409.5"))

    [suggestions] = recording_emit.of_type("suggestions")
    assert suggestions["items"][0] == "Show the calculation step by step"
    assert len(suggestions["items"]) == 3
    assert len(set(suggestions["items"])) == 3
    assert recording_emit.events == [
        {"middleware": "suggestions", "id": "followups", "event": "suggested", "detail": {"count": 3}}
    ]
    assert [kind for kind, _ in recording_emit.frames] == ["suggestions", "middleware.event"]


async def test_suggestions_respects_max_items_and_is_deterministic(turn_context, recording_emit):
    for _ in range(2):
        ctx = turn_context("List the low stock items")
        ctx.tool_results += [tool_result("inventory_low_stock"), tool_result("inventory_report", error="boom")]
        await Suggestions(config={"max_items": 2}).after(ctx, Reply(text="Two items are low."))
    first, second = recording_emit.of_type("suggestions")
    assert first == second
    assert first["items"] == ["Which of these items should be reordered first?", "Try that again with different input"]


async def test_suggestions_is_never_empty_even_for_an_empty_reply(turn_context, recording_emit):
    await Suggestions(config={"max_items": 1}).after(turn_context("hi"), Reply(text=""))
    [suggestions] = recording_emit.of_type("suggestions")
    assert len(suggestions["items"]) == 1
    assert recording_emit.events[0]["detail"] == {"count": 1}


async def test_suggestions_never_echo_data_a_previous_middleware_redacted(turn_context, recording_emit):
    ctx = turn_context("email jane@example.com the totals?")
    await Redact().before(ctx)
    await Suggestions(config={"max_items": 10}).after(ctx, Reply(text="Done."))
    assert "jane" not in repr(recording_emit.of_type("suggestions"))


# --------------------------------------------------------------------------- silence when idle


async def test_middlewares_with_nothing_to_do_emit_no_events(turn_context, recording_emit):
    """A hook a middleware does not use, or a turn it has nothing to do in, stays silent."""
    ctx = turn_context("Plain question with no personal data", history=history_of(1))
    reply = Reply(text="Plain answer.")
    for definition in MIDDLEWARE_DEFINITIONS:
        middleware = definition.factory(id=None, config={})
        await middleware.on_tool_result(ctx, tool_result("calculator"))
        if definition.name not in ("agent_mode",):  # agent_mode always acts in before()
            await middleware.before(ctx)
        if definition.name != "suggestions":  # suggestions always acts in after()
            await middleware.after(ctx, reply)
    assert recording_emit.frames == []
