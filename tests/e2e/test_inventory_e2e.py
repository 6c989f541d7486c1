"""The inventory assistant end to end: the real server, `/inventory/ws/chat/`, its tools over the same
data the REST API and the admin show, permissions, and real concurrent sales."""

from __future__ import annotations

import asyncio
import datetime as dt
import re

import pytest

from .helpers import (
    LOW_STOCK_SKUS,
    get_conversation,
    hello,
    http,
    make_user,
    new_conv_id,
    of_type,
    run_turn,
    types_of,
    ws_connect,
)

pytestmark = pytest.mark.e2e

PREFIX = "inventory/"
LOW_STOCK_PROMPT = "which items are low on stock?"
SKU_PATTERN = re.compile(r"\b[A-D]-\d{4}\b")


@pytest.fixture
def clerk(server):
    """May change items (the writing tools' permission) and record sales over REST."""
    return make_user("clerk", perms=["inventory.change_item", "inventory.add_sale"])


@pytest.fixture
def viewer(server):
    return make_user("viewer")


@pytest.fixture
def staff(server):
    return make_user("staff", staff=True, perms=["inventory.view_item", "inventory.view_sale"])


def changelist_rows(html: str) -> list[dict[str, str]]:
    """The result rows of an admin changelist: {field name: cell text}."""
    rows = []
    for row in re.findall(r"<tr[^>]*>(.*?)</tr>", html, re.S):
        cells = re.findall(r'<t[hd][^>]*class="field-(\w+)[^"]*"[^>]*>(.*?)</t[hd]>', row, re.S)
        if cells:
            rows.append({name: re.sub(r"<[^>]+>", "", text).strip() for name, text in cells})
    return rows


async def item_qty(client, sku: str) -> int:
    response = await client.get(f"/inventory/api/items/{sku}")
    assert response.status_code == 200, response.text
    return response.json()["qty"]


async def test_inventory_profile_calls_low_stock_and_emits_a_table(server, viewer):
    conv_id = new_conv_id()
    async with ws_connect(server, viewer, conv_id=conv_id, prefix=PREFIX) as ws:
        greeting = (await hello(ws))["data"]
        assert greeting["profile"]["registry"] == "inventory"
        assert greeting["runtime_key"] == "inventory"
        frames = await run_turn(ws, LOW_STOCK_PROMPT)
    kinds = types_of(frames)
    assert kinds[-1] == "turn.completed", kinds
    (start,) = of_type(frames, "tool.start")
    (result,) = of_type(frames, "tool.result")
    assert start["data"]["name"] == "inventory_low_stock"
    assert result["data"]["name"] == "inventory_low_stock"
    assert result["data"]["call_id"] == start["data"]["call_id"]
    items = result["data"]["result"]["items"]
    assert [i["sku"] for i in items] == LOW_STOCK_SKUS
    assert result["data"]["result"]["threshold"] == 3
    (artifact,) = of_type(frames, "artifact")
    assert artifact["data"]["kind"] == "table"
    table = artifact["data"]["data"]
    sku_column = table["columns"].index("sku")
    assert [row[sku_column] for row in table["rows"]] == LOW_STOCK_SKUS
    assert kinds.index("tool.result") < kinds.index("artifact") < kinds.index("turn.completed")
    answer = frames[-1]["data"]["text"]
    assert SKU_PATTERN.findall(answer) == LOW_STOCK_SKUS
    async with http(server, viewer) as client:
        (turn,) = (await get_conversation(client, conv_id, prefix="/inventory"))["turns"]
    assert turn["registry"] == "inventory" and turn["runtime_key"] == "inventory"
    assert [c["name"] for c in turn["tool_calls"]] == ["inventory_low_stock"]
    assert [a["kind"] for a in turn["artifacts"]] == ["table"]


async def test_default_profile_of_the_inventory_registry_calls_no_tool(server, viewer):
    async with ws_connect(server, viewer, conv_id=new_conv_id(), prefix=PREFIX, profile="default") as ws:
        greeting = (await hello(ws))["data"]
        assert greeting["profile"] == {
            "registry": "inventory",
            "slug": "default",
            "version": 1,
            "ref": "default",
            "label": None,
        }
        assert greeting["tools"] == []
        frames = await run_turn(ws, LOW_STOCK_PROMPT)
    kinds = types_of(frames)
    assert kinds[-1] == "turn.completed", kinds
    assert "tool.start" not in kinds
    assert "artifact" not in kinds
    answer = frames[-1]["data"]["text"]
    assert answer
    assert not SKU_PATTERN.search(answer), answer


async def sell_two_a1002_in_chat(server, user) -> tuple[list[dict], dict, dict]:
    """One chat turn on the inventory mount asking for a sale: its frames, tool.start and tool.result."""
    async with ws_connect(server, user, conv_id=new_conv_id(), prefix=PREFIX) as ws:
        await hello(ws)
        frames = await run_turn(ws, "record a sale of 2 A-1002")
    assert types_of(frames)[-1] == "turn.completed", types_of(frames)
    (start,) = of_type(frames, "tool.start")
    (result,) = of_type(frames, "tool.result")
    assert start["data"]["name"] == "inventory_record_sale"
    return frames, start, result


async def test_sale_recorded_in_chat_is_what_the_api_and_admin_show(server, clerk, staff):
    async with http(server, clerk) as client:
        assert await item_qty(client, "A-1002") == 2
        sales_before = (await client.get("/inventory/api/sales")).json()["count"]
        _, start, result = await sell_two_a1002_in_chat(server, clerk)
        assert start["data"]["input"] == {"sku": "A-1002", "qty": 2}
        assert "error" not in result["data"], result["data"]
        sale = result["data"]["result"]["sale"]
        assert sale["sku"] == "A-1002" and sale["qty"] == 2 and sale["total"] == "19.98"
        assert result["data"]["result"]["item"]["qty"] == 0

        item = (await client.get("/inventory/api/items/A-1002")).json()
        assert item["qty"] == 0
        sales = (await client.get("/inventory/api/sales")).json()
        assert sales["count"] == sales_before + 1
        recorded = [s for s in sales["results"] if s["id"] == sale["id"]]
        assert recorded == [
            {"id": sale["id"], "date": dt.date.today().isoformat(), "sku": "A-1002", "qty": 2, "total": "19.98"}
        ]

    # The admin reads the same rows.
    async with http(server) as admin:
        login = await admin.get("/admin/login/")
        token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', login.text).group(1)
        response = await admin.post(
            "/admin/login/",
            data={
                "username": staff.username,
                "password": staff.password,
                "csrfmiddlewaretoken": token,
                "next": "/admin/",
            },
        )
        assert response.status_code == 302, response.text[:500]
        items_page = await admin.get("/admin/inventory/item/", params={"q": "A-1002"})
        assert items_page.status_code == 200
        assert [(r["sku"], r["qty"]) for r in changelist_rows(items_page.text)] == [("A-1002", "0")]
        sales_page = await admin.get("/admin/inventory/sale/", params={"q": "A-1002"})
        assert sales_page.status_code == 200
        sales_rows = changelist_rows(sales_page.text)
        by_clerk = [r for r in sales_rows if r["created_by"] == clerk.username]
        assert len(by_clerk) == 1, sales_rows
        assert by_clerk[0]["qty"] == "2" and by_clerk[0]["total"] == "19.98"
        assert by_clerk[0]["item"].startswith("A-1002")


async def test_sale_in_chat_without_permission_is_a_tool_error(server, viewer):
    async with http(server, viewer) as client:
        assert await item_qty(client, "A-1002") == 2
        sales_before = (await client.get("/inventory/api/sales")).json()["count"]
        frames, _, result = await sell_two_a1002_in_chat(server, viewer)
        assert "result" not in result["data"], result["data"]
        assert "permission" in result["data"]["error"], result["data"]
        assert "inventory.change_item" in result["data"]["error"]
        assert of_type(frames, "artifact") == []
        assert await item_qty(client, "A-1002") == 2
        assert (await client.get("/inventory/api/sales")).json()["count"] == sales_before


async def test_concurrent_sales_over_http_never_oversell(server, clerk):
    sku = "A-1033"  # 5 in stock
    async with http(server, clerk) as client:
        assert await item_qty(client, sku) == 5
        sales_before = (await client.get("/inventory/api/sales", params={"page_size": 200})).json()["count"]
        responses = await asyncio.gather(
            *(client.post("/inventory/api/sales", json={"sku": sku, "qty": 1}) for _ in range(10))
        )
        statuses = sorted(r.status_code for r in responses)
        assert statuses == [201] * 5 + [400] * 5, [(r.status_code, r.text) for r in responses]
        for response in responses:
            if response.status_code == 400:
                error = response.json()["error"]
                assert error["code"] == "invalid" and error.get("field") == "qty", error
        remaining = sorted(r.json()["item"]["qty"] for r in responses if r.status_code == 201)
        assert remaining == [0, 1, 2, 3, 4]
        assert await item_qty(client, sku) == 0
        sales = (await client.get("/inventory/api/sales", params={"page_size": 200})).json()
        assert sales["count"] == sales_before + 5
        assert len([s for s in sales["results"] if s["sku"] == sku]) == 5
