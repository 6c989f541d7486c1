"""`inventory_artifacts`: shows inventory tool results as artifacts (tables, reports, item cards).

The model is asked to lean on artifacts instead of pasting tables, and each successful inventory
tool result is emitted as an `artifact` frame the page can render, plus a `middleware.event`.
"""

from __future__ import annotations

from typing import Any

from chat.runtime.base import Middleware, ToolResult, TurnContext
from profiles.definitions import MiddlewareDefinition

from .selectors import LOW_STOCK_THRESHOLD

DEFAULT_MAX_ROWS = 50
SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {"max_rows": {"type": "integer", "minimum": 1, "maximum": 500, "default": DEFAULT_MAX_ROWS}},
    "additionalProperties": False,
}
PROMPT = (
    "Inventory tables and reports are shown to the user as artifacts next to your reply: when a tool "
    "returns a list or a report, refer to the artifact and summarise the key figures instead of "
    "repeating the whole table."
)
TABLE_COLUMNS = ["sku", "name", "category", "qty", "price", "cost", "tags"]
TABLE_TOOLS = {"inventory_search_items", "inventory_low_stock"}
ITEM_TOOLS = {"inventory_get_item", "inventory_update_qty", "inventory_record_sale"}


class InventoryArtifactsMiddleware(Middleware):
    name = "inventory_artifacts"

    @property
    def max_rows(self) -> int:
        value = self.config.get("max_rows", DEFAULT_MAX_ROWS)
        return value if isinstance(value, int) and not isinstance(value, bool) and value >= 1 else DEFAULT_MAX_ROWS

    async def before(self, ctx: TurnContext) -> None:
        ctx.system_prompt = f"{ctx.system_prompt.rstrip()}\n\n{PROMPT}" if ctx.system_prompt.strip() else PROMPT

    async def on_tool_result(self, ctx: TurnContext, result: ToolResult) -> None:
        if result.error is not None or not isinstance(result.result, dict):
            return
        artifact = self.artifact(result.call.name, result.result)
        if artifact is None:
            return
        await ctx.emit("artifact", artifact)
        await self.event(ctx, "artifact", {"kind": artifact["kind"], "title": artifact["title"]})

    def artifact(self, tool: str, data: dict[str, Any]) -> dict[str, Any] | None:
        """The artifact frame for one tool result, or None for tools this middleware does not render."""
        if tool in TABLE_TOOLS:
            if tool == "inventory_search_items":
                title = f"Search results for \u201c{data.get('query', '')}\u201d"
            else:
                title = f"Low stock (qty \u2264 {data.get('threshold', LOW_STOCK_THRESHOLD)})"
            return {"kind": "table", "title": title, "data": self.table(data.get("items") or [])}
        if tool == "inventory_report":
            since = data.get("since")
            return {
                "kind": "report",
                "title": f"Inventory report (sales since {since})" if since else "Inventory report",
                "data": {**data, **{key: data.get(key, [])[: self.max_rows] for key in ("low_stock", "out_of_stock")}},
            }
        if tool in ITEM_TOOLS and isinstance(data.get("item"), dict):
            item = data["item"]
            payload: dict[str, Any] = dict(item)
            title = f"{item.get('sku')} \u2014 {item.get('name')}"
            if tool == "inventory_update_qty":
                payload["adjustment"] = {key: data.get(key) for key in ("requested_delta", "applied_delta", "clamped")}
                title = f"Stock updated: {title}"
            elif tool == "inventory_record_sale":
                payload["sale"] = data.get("sale")
                title = f"Sale recorded: {title}"
            return {"kind": "item", "title": title, "data": payload}
        return None

    def table(self, items: list[dict[str, Any]]) -> dict[str, Any]:
        rows = [
            [
                *(item.get(col) for col in TABLE_COLUMNS[:-1]),
                ", ".join(item.get("tags") or []),
            ]
            for item in items[: self.max_rows]
        ]
        return {"columns": TABLE_COLUMNS, "rows": rows, "total": len(items), "truncated": len(items) > len(rows)}


MIDDLEWARE_DEFINITIONS: list[MiddlewareDefinition] = [
    MiddlewareDefinition(
        name=InventoryArtifactsMiddleware.name,
        version=1,
        display_name="Inventory artifacts",
        description="Presents inventory tool results (tables, reports, items) as artifacts beside the reply.",
        schema=SCHEMA,
        factory=InventoryArtifactsMiddleware,
    )
]
