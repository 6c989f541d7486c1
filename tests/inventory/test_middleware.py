import pytest

from chat.runtime.base import ToolCall, ToolResult, TurnContext
from inventory.middleware import MIDDLEWARE_DEFINITIONS, SCHEMA, InventoryArtifactsMiddleware
from inventory.tools import TOOLS
from profiles.definitions import definitions

TOOL = {tool.name: tool for tool in TOOLS}


def turn(recorder, system_prompt="You help with inventory.") -> TurnContext:
    return TurnContext(conv_id="c", turn_id="t", prompt="hi", messages=[], system_prompt=system_prompt, emit=recorder)


def result(name, value=None, error=None, **args) -> ToolResult:
    return ToolResult(call=ToolCall(call_id="1", name=name, arguments=args), result=value, error=error)


def item(sku="A-1", qty=1):
    return {"sku": sku, "name": "N", "category": "C", "tags": ["a", "b"], "qty": qty, "price": "1.00", "cost": "0.50"}


def test_registered():
    definition = definitions.middlewares["inventory_artifacts"]
    assert definition is MIDDLEWARE_DEFINITIONS[0]
    assert definition.schema == SCHEMA
    built = definition.factory(id="m1", config={"max_rows": 5})
    assert isinstance(built, InventoryArtifactsMiddleware)
    assert built.max_rows == 5


async def test_before_extends_prompt(recorder):
    ctx = turn(recorder)
    await InventoryArtifactsMiddleware().before(ctx)
    assert ctx.system_prompt.startswith("You help with inventory.")
    assert "artifact" in ctx.system_prompt


async def test_search_becomes_truncated_table(recorder):
    middleware = InventoryArtifactsMiddleware(id="m1", config={"max_rows": 2})
    items = [item(f"A-{n}") for n in range(3)]
    await middleware.on_tool_result(
        turn(recorder), result("inventory_search_items", {"query": "a", "count": 3, "items": items}, query="a")
    )
    [artifact] = recorder.of_type("artifact")
    assert artifact["kind"] == "table"
    assert "a" in artifact["title"]
    assert artifact["data"]["columns"][:4] == ["sku", "name", "category", "qty"]
    assert artifact["data"]["rows"] == [
        ["A-0", "N", "C", 1, "1.00", "0.50", "a, b"],
        ["A-1", "N", "C", 1, "1.00", "0.50", "a, b"],
    ]
    assert artifact["data"]["total"] == 3
    [event] = recorder.of_type("middleware.event")
    assert event == {
        "middleware": "inventory_artifacts",
        "id": "m1",
        "event": "artifact",
        "detail": {"kind": "table", "title": artifact["title"]},
    }


async def test_low_stock_table(recorder):
    await InventoryArtifactsMiddleware().on_tool_result(
        turn(recorder), result("inventory_low_stock", {"threshold": 3, "count": 1, "items": [item()]})
    )
    [artifact] = recorder.of_type("artifact")
    assert (artifact["kind"], artifact["data"]["total"], len(artifact["data"]["rows"])) == ("table", 1, 1)


@pytest.fixture
def report(seeded, tool_context):
    """The real tool's output, computed synchronously on the test's connection."""
    return TOOL["inventory_report"].run({}, tool_context())


async def test_report_frame_from_the_real_tool(recorder, report):
    data = report
    await InventoryArtifactsMiddleware().on_tool_result(turn(recorder), result("inventory_report", data))
    [artifact] = recorder.of_type("artifact")
    assert artifact["kind"] == "report"
    assert artifact["data"]["retail_value"] == "816.41"
    assert artifact["data"]["sales_total"] == "189.82"
    assert recorder.of_type("middleware.event")[0]["detail"]["kind"] == "report"


@pytest.mark.parametrize(
    ("name", "value", "extra"),
    [
        ("inventory_get_item", {"item": item()}, None),
        (
            "inventory_update_qty",
            {"item": item(), "requested_delta": -3, "applied_delta": -1, "clamped": True},
            "adjustment",
        ),
        ("inventory_record_sale", {"item": item(qty=0), "sale": {"id": "x", "qty": 1}}, "sale"),
    ],
)
async def test_item_frames(recorder, name, value, extra):
    await InventoryArtifactsMiddleware().on_tool_result(turn(recorder), result(name, value))
    [artifact] = recorder.of_type("artifact")
    assert artifact["kind"] == "item"
    assert artifact["data"]["sku"] == "A-1"
    assert "A-1" in artifact["title"]
    if extra:
        assert artifact["data"][extra]


async def test_errors_and_other_tools_emit_nothing(recorder):
    middleware = InventoryArtifactsMiddleware()
    await middleware.on_tool_result(turn(recorder), result("inventory_get_item", None, error="no item with SKU 'Z'"))
    await middleware.on_tool_result(turn(recorder), result("calculator", {"value": 3}))
    assert recorder.frames == []
