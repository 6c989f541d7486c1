import pytest
from asgiref.sync import async_to_sync, sync_to_async

from chat.runtime.base import ToolCall, ToolError
from chat.runtime.composer import Runtime
from chat.runtime.engines import OfflineEngine
from chat.runtime.runner import run_tool
from inventory.models import Item, Sale
from inventory.tools import TOOL_DEFINITIONS, TOOLS
from profiles.definitions import definitions

from .conftest import WRITE_PERMS
from .factories import UserFactory

TOOL = {tool.name: tool for tool in TOOLS}
# A runtime allowing every inventory tool: calls go through the runner's one argument and permission check.
RUNTIME = Runtime(
    registry="inventory",
    profile="tools",
    profile_version=1,
    fingerprint="",
    system_prompt="",
    engine=OfflineEngine(),
    engine_info={},
    middlewares=(),
    tools=tuple(TOOL_DEFINITIONS),
)


async def _run_sync(fn, *args):
    return await sync_to_async(fn)(*args)


def run(name, args, ctx):
    """One tool call as a turn makes it (`run_tool`); its error, if any, raised as ToolError."""
    result = async_to_sync(run_tool)(RUNTIME, ToolCall("c1", name, args), ctx, run_sync=_run_sync, timeout=30)
    if result.error is not None:
        raise ToolError(result.error)
    return result.result


@pytest.fixture
def clerk(db):
    """A user allowed to change items (what the writing tools need)."""
    from django.contrib.auth import get_user_model

    return get_user_model().objects.get(pk=UserFactory(username="clerk", perms=["inventory.change_item"]).pk)


def test_registered_for_the_inventory_mount():
    names = {d.name for d in definitions.tools_for_mount("inventory")}
    assert names >= set(TOOL)
    for definition in TOOL_DEFINITIONS:
        assert definitions.tools[definition.name] is definition
        assert definition.mounts == frozenset({"inventory"})
        assert definition.parameters["additionalProperties"] is False
        assert definition.implementation is TOOL[definition.name]
        assert definition.writes == (definition.permission == "inventory.change_item")
    assert {d.name for d in TOOL_DEFINITIONS if d.writes} == {"inventory_update_qty", "inventory_record_sale"}
    assert "inventory_search_items" not in {d.name for d in definitions.tools_for_mount("default")}


@pytest.mark.django_db
class TestReadTools:
    def test_report_check_figures(self, seeded, tool_context):
        data = run("inventory_report", {}, tool_context())
        assert (data["sku_count"], data["total_units"]) == (10, 59)
        assert (data["retail_value"], data["cost_basis"], data["potential_profit"]) == ("816.41", "256.00", "560.41")
        assert (data["low_stock_count"], data["out_of_stock_count"], data["sales_total"]) == (5, 2, "189.82")
        assert [i["sku"] for i in data["low_stock"]] == ["A-1021", "C-3010", "A-1055", "A-1002", "B-2015"]
        assert run("inventory_report", {"since": "2026-02-08"}, tool_context())["sales_total"] == "169.83"

    def test_report_bad_since(self, seeded, tool_context):
        with pytest.raises(ToolError, match="since"):
            run("inventory_report", {"since": "2026-02-30"}, tool_context())
        with pytest.raises(ToolError, match="since"):
            run("inventory_report", {"since": "Feb 8"}, tool_context())

    def test_search(self, seeded, tool_context):
        data = run("inventory_search_items", {"query": "GIFT", "limit": 2}, tool_context())
        assert (data["query"], data["count"]) == ("GIFT", 2)
        assert [i["sku"] for i in data["items"]] == ["A-1002", "A-1021"]
        assert data["items"][0]["price"] == "9.99"

    @pytest.mark.parametrize(
        "args", [{}, {"query": ""}, {"query": "x", "limit": 0}, {"query": "x", "limit": 201}, {"query": "x", "n": 1}]
    )
    def test_search_bad_args(self, seeded, tool_context, args):
        with pytest.raises(ToolError, match="invalid arguments"):
            run("inventory_search_items", args, tool_context())

    def test_get_item(self, seeded, tool_context):
        assert run("inventory_get_item", {"sku": "b-2001"}, tool_context())["item"]["sku"] == "B-2001"
        with pytest.raises(ToolError, match="no item with SKU 'Z-1'"):
            run("inventory_get_item", {"sku": "Z-1"}, tool_context())

    def test_low_stock(self, seeded, tool_context):
        data = run("inventory_low_stock", {}, tool_context())
        assert (data["threshold"], data["count"]) == (3, 5)
        assert [i["sku"] for i in data["items"]] == ["A-1021", "C-3010", "A-1055", "A-1002", "B-2015"]
        assert run("inventory_low_stock", {"threshold": 0}, tool_context())["count"] == 2
        with pytest.raises(ToolError):
            run("inventory_low_stock", {"threshold": -1}, tool_context())


@pytest.mark.django_db
class TestWriteTools:
    def test_update_qty(self, seeded, clerk, tool_context):
        data = run("inventory_update_qty", {"sku": "a-1002", "delta": -5}, tool_context(clerk))
        assert data["item"]["qty"] == 0
        assert (data["requested_delta"], data["applied_delta"], data["clamped"]) == (-5, -2, True)
        assert Item.objects.get(sku="A-1002").history.first().history_user_id == clerk.pk

    def test_update_qty_bad_delta(self, seeded, clerk, tool_context):
        for delta in (0, 100_001, 1.5):
            with pytest.raises(ToolError, match="invalid arguments"):
                run("inventory_update_qty", {"sku": "A-1002", "delta": delta}, tool_context(clerk))
        assert Item.objects.get(sku="A-1002").qty == 2

    def test_record_sale(self, seeded, clerk, tool_context):
        data = run("inventory_record_sale", {"sku": "D-4001", "qty": 3, "date": "2026-02-11"}, tool_context(clerk))
        assert data["sale"]["sku"] == "D-4001"
        assert (data["sale"]["date"], data["sale"]["total"]) == ("2026-02-11", "14.97")
        assert data["item"]["qty"] == 17
        assert Sale.objects.get(pk=data["sale"]["id"]).created_by_id == clerk.pk

    def test_record_sale_insufficient(self, seeded, clerk, tool_context):
        with pytest.raises(ToolError, match="insufficient stock for A-1002"):
            run("inventory_record_sale", {"sku": "A-1002", "qty": 3}, tool_context(clerk))
        assert Item.objects.get(sku="A-1002").qty == 2
        assert Sale.objects.count() == 7

    @pytest.mark.parametrize(
        ("name", "args"),
        [
            ("inventory_update_qty", {"sku": "A-1002", "delta": 5}),
            ("inventory_record_sale", {"sku": "A-1002", "qty": 1}),
        ],
    )
    def test_without_permission_nothing_changes(self, seeded, reader, tool_context, name, args):
        # `reader` even has the sale permission of the REST API: the tools need change_item.
        for ctx in (tool_context(reader), tool_context(None)):
            with pytest.raises(ToolError, match=r"permission denied: inventory\.change_item required"):
                run(name, args, ctx)
        assert Item.objects.get(sku="A-1002").qty == 2
        assert Sale.objects.count() == 7

    def test_add_sale_permission_is_not_enough(self, seeded, tool_context):
        perms = [p for p in WRITE_PERMS if p != "inventory.change_item"]
        user = UserFactory(username="seller", perms=perms)
        from django.contrib.auth import get_user_model

        user = get_user_model().objects.get(pk=user.pk)
        with pytest.raises(ToolError, match="permission denied"):
            run("inventory_record_sale", {"sku": "A-1002", "qty": 1}, tool_context(user))
