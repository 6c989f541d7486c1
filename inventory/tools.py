"""The assistant's inventory tools: thin adapters from JSON arguments to the inventory services.

Each tool validates its arguments against its own schema (the runner does too), calls one
service or selector, and returns the same shapes as the REST API. Domain errors become ToolError.
"""

from __future__ import annotations

import abc
import datetime as dt
from typing import Any, ClassVar

from jsonschema import Draft202012Validator, FormatChecker

from chat.runtime.base import Tool, ToolContext, ToolError
from profiles.definitions import ToolDefinition

from .selectors import SEARCH_LIMIT_MAX, inventory_report, item_get, item_search, items_low_stock
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
    "default": 3,
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
    """Validates arguments, checks the permission of writing tools, maps domain errors to ToolError."""

    _validator: ClassVar[Draft202012Validator | None] = None

    def run(self, args: dict[str, Any], ctx: ToolContext) -> Any:
        # Defence in depth: the runner checks this too, but a write must never depend on that alone.
        if self.permission and not ctx.has_perm(self.permission):
            raise ToolError(f"permission denied: {self.permission} required")
        args = dict(args or {})
        validator = type(self)._validator
        if validator is None:
            validator = type(self)._validator = Draft202012Validator(self.parameters, format_checker=FormatChecker())
        error = next(iter(sorted(validator.iter_errors(args), key=lambda e: list(e.path))), None)
        if error is not None:
            where = ".".join(str(p) for p in error.path)
            raise ToolError(f"invalid arguments: {where + ': ' if where else ''}{error.message}")
        try:
            return self.execute(args, ctx)
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

    def execute(self, args: dict[str, Any], ctx: ToolContext) -> dict[str, Any]:
        items = item_search(query=args["query"], limit=args.get("limit", 20))
        return {"query": args["query"], "count": len(items), "items": [item_data(i) for i in items]}


class GetItemTool(InventoryTool):
    name = "inventory_get_item"
    description = "Get one inventory item by SKU (case-insensitive)."
    parameters = {
        "type": "object",
        "properties": {"sku": SKU_SCHEMA},
        "required": ["sku"],
        "additionalProperties": False,
    }

    def execute(self, args: dict[str, Any], ctx: ToolContext) -> dict[str, Any]:
        return {"item": item_data(item_get(sku=args["sku"]))}


class LowStockTool(InventoryTool):
    name = "inventory_low_stock"
    description = "List items whose quantity is at or below a threshold (default 3), emptiest first."
    parameters = {
        "type": "object",
        "properties": {"threshold": THRESHOLD_SCHEMA},
        "additionalProperties": False,
    }

    def execute(self, args: dict[str, Any], ctx: ToolContext) -> dict[str, Any]:
        threshold = args.get("threshold", 3)
        items = items_low_stock(threshold=threshold)
        return {"threshold": threshold, "count": len(items), "items": [item_data(i) for i in items]}


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

    def execute(self, args: dict[str, Any], ctx: ToolContext) -> dict[str, Any]:
        report = inventory_report(threshold=args.get("threshold", 3), since=_date(args.get("since"), "since"))
        return report_data(report)


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
