"""Live inventory updates: every committed stock or item change reaches the open inventory pages.

Writes from anywhere (the assistant's tools, the REST API, the admin, other users) send
`inventory_changed` after commit; it is fanned out through the channel layer (all workers) to the
`/inventory/ws/items/` sockets, and the page refreshes its table and figures.
"""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Any

from asgiref.sync import async_to_sync
from channels.generic.websocket import AsyncJsonWebsocketConsumer
from channels.layers import get_channel_layer

from profiles.timestamps import now_ms

GROUP = "inventory.changes"
log = logging.getLogger(__name__)


def broadcast_change(sender: Any, *, skus: list[str], source: str, **kwargs: Any) -> None:
    """`inventory_changed` receiver. Runs after commit, in the writer's (synchronous) thread."""
    layer = get_channel_layer()
    if layer is None:
        return
    message = {"type": "inventory.changed", "skus": skus, "source": source}
    try:
        loop = asyncio.get_running_loop()
    except RuntimeError:  # the usual case: a worker thread of a view, a tool or a command
        loop = None
    try:
        if loop is None:
            async_to_sync(layer.group_send)(GROUP, message)
        else:  # committed from code running on an event loop's own thread: send without blocking it
            loop.create_task(layer.group_send(GROUP, message))
    except Exception:  # a notification must never fail the write that already committed
        log.warning("could not announce an inventory change", exc_info=True)


class InventoryChangesConsumer(AsyncJsonWebsocketConsumer):
    """Server -> page only: `{"type": "inventory.changed", "ts_ms", "data": {"skus", "source"}}`."""

    async def connect(self) -> None:
        await self.accept()
        user = self.scope.get("user")
        if user is None or not user.is_authenticated:
            await self.close(code=4401)
            return
        await self.channel_layer.group_add(GROUP, self.channel_name)
        self.joined = True

    async def disconnect(self, code: int) -> None:
        if getattr(self, "joined", False):
            await self.channel_layer.group_discard(GROUP, self.channel_name)

    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None, **kwargs: Any) -> None:
        """Binary and empty frames are ignored like unreadable text (the base class fails the socket)."""
        if text_data:
            await super().receive(text_data=text_data, **kwargs)

    @classmethod
    async def decode_json(cls, text_data: str) -> Any:
        """Clients only ping; anything unreadable is ignored rather than closing the socket."""
        try:
            return json.loads(text_data)
        except (ValueError, RecursionError):
            return None

    async def receive_json(self, content: Any, **kwargs: Any) -> None:
        if isinstance(content, dict) and content.get("type") == "ws.ping":
            await self.send_json({"type": "ws.pong", "ts_ms": now_ms(), "data": {}})

    async def inventory_changed(self, event: dict[str, Any]) -> None:
        data = {"skus": event["skus"], "source": event["source"]}
        await self.send_json({"type": "inventory.changed", "ts_ms": now_ms(), "data": data})
