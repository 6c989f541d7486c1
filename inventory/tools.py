"""The assistant's inventory tools: thin adapters from JSON arguments to the inventory services.

Each tool validates its arguments against its own schema (the runner does too), calls one
service or selector, and returns the same shapes as the REST API. Domain errors become ToolError.
"""

from __future__ import annotations

import abc
import datetime as dt
from typing import Any

from chat.runtime.base import Rendered, Tool, ToolContext, ToolError
from profiles.definitions import ToolDefinition

from . import phrasing as say
from .selectors import LOW_STOCK_THRESHOLD, SEARCH_LIMIT_MAX, inventory_report, item_get, item_search, items_low_stock
from .serializers import item_data, report_data, sale_data
from .services import InventoryError, item_update_qty, sale_record

MOUNTS = frozenset({"inventory"})
CHANGE_ITEM = "inventory.change_item"
DATE_SCHEMA = {
    "type": "string",
    "format": "date",
    "pattern": r"^\d{4}-\d{2}-\d{2}$",
    "description": "A date as YYYY-MM-DD.",
}
SKU_SCHEMA = {"type": "string", "minLength": 1, "maxLength": 64, "description": "Item SKU, e.g. A-1002 (any case)."}
THRESHOLD_SCHEMA = {
    "type": "integer",
    "minimum": 0,
    "maximum": 2_147_483_647,
    "default": LOW_STOCK_THRESHOLD,
    "description": "Low stock means qty <= threshold.",
}


def _date(value: str | None, field: str) -> dt.date | None:
    if value is None:
        return None
    try:
        return dt.date.fromisoformat(value)
    except ValueError as exc:
        raise ToolError(f"{field} must be a valid date as YYYY-MM-DD, got {value!r}") from exc


class InventoryTool(Tool, abc.ABC):
    """Calls the inventory services on arguments the runner has already validated against
    `parameters` (and, for writing tools, after it checked `permission`); maps domain errors to ToolError."""

    def run(self, args: dict[str, Any], ctx: ToolContext) -> Any:
        try:
            return self.execute(dict(args or {}), ctx)
        except InventoryError as exc:
            raise ToolError(exc.message) from exc

    @abc.abstractmethod
    def execute(self, args: dict[str, Any], ctx: ToolContext) -> Any:
        """The operation itself, on validated arguments."""

    def definition(self) -> ToolDefinition:
        return ToolDefinition(
            name=self.name,
            description=self.description,
            parameters=self.parameters,
            writes=self.writes,
            mounts=MOUNTS,
            permission=self.permission,
            implementation=self,
        )


class SearchItemsTool(InventoryTool):
    name = "inventory_search_items"
    description = (
        "Search inventory items by a case-insensitive substring of SKU, name, category or tag. "
        "Returns matching items with stock quantity, price and cost."
    )
    parameters = {
        "type": "object",
        "properties": {
            "query": {"type": "string", "minLength": 1, "maxLength": 200, "description": "Text to look for."},
            "limit": {
                "type": "integer",
                "minimum": 1,
                "maximum": SEARCH_LIMIT_MAX,
                "default": 20,
                "description": "Maximum number of items.",
            },
        },
        "required": ["query"],
        "additionalProperties": False,
    }

    followup = "Show the details of one of these items"
    example = "\u201csearch <word>\u201d"
    action = "search the inventory"
    recognise_order = 60

    def execute(self, args: dict[str, Any], ctx: ToolContext) -> dict[str, Any]:
        items = item_search(query=args["query"], limit=args.get("limit", 20))
        return {"query": args["query"], "count": len(items), "items": [item_data(i) for i in items]}

    def recognise(self, text: str) -> dict[str, Any] | None:
        match = say.SEARCH.search(text)
        if match is None or match["word"].lower() in say.SEARCH_STOPWORDS:
            return None
        return {"query": say.singular(match["word"])}

    def render(self, result: dict[str, Any]) -> Rendered:
        items = say.items_of(result)
        count = result.get("count", len(items))
        query = result.get("query", "")
        if not items and not count:
            return f"No items match \u201c{query}\u201d.", []
        lines = [
            f"- {i.get('sku', '?')} {i.get('name', '')}: {i.get('qty', '?')} in stock, {i.get('price', '?')}"
            for i in items
        ]
        return f"{say.plural(count, 'item')} match \u201c{query}\u201d:", lines


class GetItemTool(InventoryTool):
    name = "inventory_get_item"
    description = "Get one inventory item by SKU (case-insensitive)."
    parameters = {
        "type": "object",
        "properties": {"sku": SKU_SCHEMA},
        "required": ["sku"],
        "additionalProperties": False,
    }

    followup = "How has this item's stock changed recently?"
    example = "\u201ctell me about <sku>\u201d"
    action = "look items up"
    recognise_order = 50  # any SKU in the request: after the requests that name one with a verb

    def execute(self, args: dict[str, Any], ctx: ToolContext) -> dict[str, Any]:
        return {"item": item_data(item_get(sku=args["sku"]))}

    def recognise(self, text: str) -> dict[str, Any] | None:
        match = say.SKU_ANYWHERE.search(text)
        return {"sku": match.group(1).upper()} if match else None

    def render(self, result: dict[str, Any]) -> Rendered:
        item = result["item"]
        details = [f"- qty: {item.get('qty', '?')}", f"- price: {item.get('price', '?')}"]
        if item.get("category"):
            details.append(f"- category: {item['category']}")
        if item.get("tags"):
            details.append(f"- tags: {', '.join(str(t) for t in item['tags'])}")
        headline = f"{item.get('sku', '?')} {item.get('name', '')}: {item.get('qty', '?')} in stock at {item.get('price', '?')}."
        return headline, details


class LowStockTool(InventoryTool):
    name = "inventory_low_stock"
    description = "List items whose quantity is at or below a threshold (default 3), emptiest first."
    parameters = {
        "type": "object",
        "properties": {"threshold": THRESHOLD_SCHEMA},
        "additionalProperties": False,
    }

    followup = "Which of these items should be reordered first?"
    example = "\u201cwhich items are low on stock?\u201d"
    action = "check which items are low on stock"
    recognise_order = 30

    def execute(self, args: dict[str, Any], ctx: ToolContext) -> dict[str, Any]:
        threshold = args.get("threshold", LOW_STOCK_THRESHOLD)
        items = items_low_stock(threshold=threshold)
        return {"threshold": threshold, "count": len(items), "items": [item_data(i) for i in items]}

    def recognise(self, text: str) -> dict[str, Any] | None:
        low, out = say.LOW_STOCK.search(text), say.OUT_OF_STOCK.search(text)
        if not (low or out):
            return None
        if threshold := say.THRESHOLD.search(text):
            return {"threshold": int(threshold.group(1))}
        return {} if low else {"threshold": 0}

    def render(self, result: dict[str, Any]) -> Rendered:
        items = say.items_of(result)
        count = result.get("count", len(items))
        threshold = result.get("threshold", "?")
        if not items and not count:
            return f"No items are at or below {threshold} units.", []
        verb = "is" if count == 1 else "are"
        return f"{say.plural(count, 'item')} {verb} at or below {threshold} units:", [say.item_line(i) for i in items]


class ReportTool(InventoryTool):
    name = "inventory_report"
    description = (
        "Inventory summary: SKU count, units, retail value, cost basis, potential profit, low-stock and "
        "out-of-stock items, sales total (optionally since a date) and recent sales."
    )
    parameters = {
        "type": "object",
        "properties": {
            "threshold": THRESHOLD_SCHEMA,
            "since": {**DATE_SCHEMA, "description": "Count sales on or after this date (YYYY-MM-DD)."},
        },
        "additionalProperties": False,
    }

    followup = "Summarize the report in three bullet points"
    example = "\u201cinventory report\u201d"
    action = "build an inventory report"
    recognise_order = 40

    def execute(self, args: dict[str, Any], ctx: ToolContext) -> dict[str, Any]:
        threshold = args.get("threshold", LOW_STOCK_THRESHOLD)
        return report_data(inventory_report(threshold=threshold, since=_date(args.get("since"), "since")))

    def recognise(self, text: str) -> dict[str, Any] | None:
        if not say.REPORT.search(text):
            return None
        since = say.SINCE.search(text)
        return {"since": since.group(1)} if since else {}

    def render(self, result: dict[str, Any]) -> Rendered:
        since = result.get("since")
        threshold = result.get("threshold", "?")
        sales_scope = f"since {since}" if since else "all time"
        low = f"{result.get('low_stock_count', '?')}{say.skus(result.get('low_stock'))}"
        out = f"{result.get('out_of_stock_count', '?')}{say.skus(result.get('out_of_stock'))}"
        details = [
            f"- SKUs: {result.get('sku_count', '?')}",
            f"- Units: {result.get('total_units', '?')}",
            f"- Retail value: {result.get('retail_value', '?')}",
            f"- Cost basis: {result.get('cost_basis', '?')}",
            f"- Potential profit: {result.get('potential_profit', '?')}",
            f"- Low stock (\u2264 {threshold}): {low}",
            f"- Out of stock: {out}",
            f"- Sales total ({sales_scope}): {result.get('sales_total', '?')}",
        ]
        return f"Inventory report (threshold {threshold}, sales {sales_scope}):", details


class UpdateQtyTool(InventoryTool):
    name = "inventory_update_qty"
    description = (
        "Change an item's stock by a signed delta (e.g. +10 received, -2 damaged). Stock never goes below "
        "zero: a larger decrease is clamped and the result says so."
    )
    parameters = {
        "type": "object",
        "properties": {
            "sku": SKU_SCHEMA,
            "delta": {
                "type": "integer",
                "minimum": -100_000,
                "maximum": 100_000,
                "not": {"const": 0},
                "description": "Units to add (positive) or remove (negative); not 0.",
            },
        },
        "required": ["sku", "delta"],
        "additionalProperties": False,
    }
    writes = True
    permission = CHANGE_ITEM

    followup = "Show the item's current stock"
    example = "\u201cadd 5 to <sku>\u201d"
    action = "change stock quantities"
    recognise_order = 20

    def recognise(self, text: str) -> dict[str, Any] | None:
        match = say.UPDATE.search(text)
        if match is None:
            return None
        qty = int(match["qty"])
        return {"sku": match["sku"].upper(), "delta": -qty if match["verb"].lower() == "remove" else qty}

    def render(self, result: dict[str, Any]) -> Rendered:
        item = result["item"]
        applied = result.get("applied_delta")
        applied_text = f"{applied:+d}" if isinstance(applied, int) else str(applied)
        text = f"{item.get('sku', '?')} {item.get('name', '')} now has {item.get('qty', '?')} units ({applied_text})."
        if result.get("clamped"):
            text += f" Requested {result.get('requested_delta')}: clamped at 0."
        return " ".join(text.split()), []

    def execute(self, args: dict[str, Any], ctx: ToolContext) -> dict[str, Any]:
        result = item_update_qty(sku=args["sku"], delta=args["delta"], user=ctx.user_id, source="tool")
        return {
            "item": item_data(result.item),
            "requested_delta": result.requested_delta,
            "applied_delta": result.applied_delta,
            "clamped": result.clamped,
        }


class RecordSaleTool(InventoryTool):
    name = "inventory_record_sale"
    description = (
        "Record a sale of an item: decrements stock at the current price. Fails, changing nothing, "
        "if there is not enough stock."
    )
    parameters = {
        "type": "object",
        "properties": {
            "sku": SKU_SCHEMA,
            "qty": {"type": "integer", "minimum": 1, "maximum": 100_000, "description": "Units sold."},
            "date": {**DATE_SCHEMA, "description": "Sale date (YYYY-MM-DD); today if omitted."},
        },
        "required": ["sku", "qty"],
        "additionalProperties": False,
    }
    writes = True
    permission = CHANGE_ITEM

    followup = "Which items are low on stock now?"
    example = "\u201crecord a sale of 2 <sku>\u201d"
    action = "record sales"
    recognise_order = 10

    def recognise(self, text: str) -> dict[str, Any] | None:
        for pattern in say.SALE:
            if match := pattern.search(text):
                return {"sku": match["sku"].upper(), "qty": int(match["qty"])}
        return None

    def render(self, result: dict[str, Any]) -> Rendered:
        sale, item = result["sale"], result.get("item") or {}
        sku = sale.get("sku") or item.get("sku", "?")
        text = f"Recorded a sale of {sale.get('qty', '?')} {say.TIMES} {sku} (total {sale.get('total', '?')})."
        if "qty" in item:
            text += f" {item.get('sku', sku)} now has {item['qty']} left."
        return text, []

    def execute(self, args: dict[str, Any], ctx: ToolContext) -> dict[str, Any]:
        sale = sale_record(
            sku=args["sku"], qty=args["qty"], date=_date(args.get("date"), "date"), user=ctx.user_id, source="tool"
        )
        return {"sale": sale_data(sale), "item": item_data(sale.item)}


TOOLS: list[InventoryTool] = [
    SearchItemsTool(),
    GetItemTool(),
    LowStockTool(),
    ReportTool(),
    UpdateQtyTool(),
    RecordSaleTool(),
]
TOOL_DEFINITIONS: list[ToolDefinition] = [tool.definition() for tool in TOOLS]
