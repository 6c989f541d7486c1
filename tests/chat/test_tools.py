"""The chat mount's tools: `calculator` and `current_time`, and how they are registered."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from jsonschema import Draft202012Validator

from chat.runtime.base import ToolContext, ToolError
from chat.runtime.tools import TOOL_DEFINITIONS, CalculatorTool, CurrentTimeTool, calculator, current_time
from profiles.definitions import definitions

DEFINITIONS = {definition.name: definition for definition in TOOL_DEFINITIONS}
INSTANT = datetime(2026, 2, 8, 13, 3, 27, 250000, tzinfo=UTC)


async def _no_emit(frame_type, data):
    raise AssertionError("these tools emit nothing")


@pytest.fixture
def tool_context() -> ToolContext:
    return ToolContext(user_id=1, username="alice", mount="chat", has_perm=lambda perm: False, emit=_no_emit)


def test_tools_are_registered_read_only_on_every_mount():
    assert set(DEFINITIONS) == {"calculator", "current_time"}
    for name, definition in DEFINITIONS.items():
        assert definition.writes is False
        assert definition.permission is None
        assert definition.mounts is None
        for mount in ("chat", "inventory", "a-mount-added-later"):
            assert definition in definitions.tools_for_mount(mount)
        assert definition.implementation.name == name
        assert definition.parameters is definition.implementation.parameters
        assert definition.description
    assert isinstance(DEFINITIONS["calculator"].implementation, CalculatorTool)
    assert isinstance(DEFINITIONS["current_time"].implementation, CurrentTimeTool)


@pytest.mark.parametrize("name", ["calculator", "current_time"])
def test_tool_parameters_are_valid_closed_json_schemas(name):
    schema = DEFINITIONS[name].parameters
    Draft202012Validator.check_schema(schema)
    assert schema["type"] == "object"
    assert schema["additionalProperties"] is False


@pytest.mark.parametrize(
    "args",
    [{}, {"expression": ""}, {"expression": "1" * 201}, {"expression": 3}, {"expression": "1", "x": 1}],
)
def test_calculator_schema_rejects_bad_arguments(args):
    assert list(Draft202012Validator(DEFINITIONS["calculator"].parameters).iter_errors(args))


def test_calculator_tool_returns_the_expression_as_given_and_a_number(tool_context):
    assert calculator.run({"expression": "17.5% of 2,340"}, tool_context) == {
        "expression": "17.5% of 2,340",
        "result": 409.5,
    }
    assert calculator.run({"expression": " 6 * 7 "}, tool_context) == {"expression": " 6 * 7 ", "result": 42}


def test_calculator_tool_raises_tool_error_for_bad_input(tool_context):
    with pytest.raises(ToolError, match="division by zero"):
        calculator.run({"expression": "1/0"}, tool_context)
    with pytest.raises(ToolError, match="unknown name"):
        calculator.run({"expression": "__import__('os')"}, tool_context)
    with pytest.raises(ToolError, match="non-empty string"):
        calculator.run({"expression": None}, tool_context)


def test_current_time_reports_iso_timezone_and_unix_ms(tool_context):
    tool = CurrentTimeTool(clock=lambda: INSTANT)
    assert tool.run({"timezone": "Europe/Paris"}, tool_context) == {
        "iso": "2026-02-08T14:03:27+01:00",
        "timezone": "Europe/Paris",
        "unix_ms": 1770555807250,
    }


def test_current_time_defaults_to_utc(tool_context):
    tool = CurrentTimeTool(clock=lambda: INSTANT)
    assert tool.run({}, tool_context) == {
        "iso": "2026-02-08T13:03:27+00:00",
        "timezone": "UTC",
        "unix_ms": 1770555807250,
    }
    assert Draft202012Validator(DEFINITIONS["current_time"].parameters).is_valid({})


def test_current_time_uses_the_real_clock_by_default(tool_context):
    before = int(datetime.now(UTC).timestamp() * 1000)
    result = current_time.run({"timezone": "Asia/Tokyo"}, tool_context)
    after = int(datetime.now(UTC).timestamp() * 1000)
    assert before - 1 <= result["unix_ms"] <= after + 1
    assert result["iso"].endswith("+09:00")


@pytest.mark.parametrize(
    "zone", ["Mars/Olympus_Mons", "/etc/passwd", "../../etc/passwd", "Europe/../UTC", "utc offset"]
)
def test_current_time_rejects_unknown_time_zones(zone, tool_context):
    with pytest.raises(ToolError, match="unknown time zone"):
        current_time.run({"timezone": zone}, tool_context)


@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("seeded_registries", "fast_turns")
def test_use_with_json_runs_an_allowed_tool_through_a_whole_turn(chat_api):
    conv = chat_api.post("/api/chat/conversations", {"profile": "analyst"}, format="json").json()["conv_id"]

    answer = chat_api.post(
        f"/api/chat/conversations/{conv}/messages?wait=1",
        {"prompt": 'use calculator with {"expression": "6 * 7"}'},
        format="json",
    ).json()

    assert answer["status"] == "completed", answer
    assert [(c["name"], c["input"], c["result"]["result"]) for c in answer["tool_calls"]] == [
        ("calculator", {"expression": "6 * 7"}, 42)
    ]
    assert "42" in answer["text"]
