"""Every profile as an MCP tool: `/mcp` (and `/inventory/mcp`) speaks MCP over streamable HTTP through the
official SDK's server (`mcp.server.Server`, stateless, JSON answers).

Callers authenticate as on the REST API, with `Authorization: Bearer <token>` or an API key
(`Bearer sk-…`: its scopes and per-minute limits apply). `tools/list` has one `ask_<profile>` tool per
profile the caller may use (the gateway's model list: one rule); `tools/call` sends the message as a turn
of the caller's conversation (a new one, or `conversation_id`) through the gateway's submission, so it is
stored, limited, priced and recorded like any turn, and answers with the reply's text and
`structuredContent {conversation_id, turn_id, profile_version, fingerprint}`. A profile the caller may
not use is the same MCP error as a missing one.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

from profiles.errors import is_outage, outage_error
from profiles.mounts import Mount

from ..aio import run_db
from ..security import bearer_caller

ASGIApp = Callable[[dict[str, Any], Callable[..., Awaitable[Any]], Callable[..., Awaitable[Any]]], Awaitable[None]]


async def _answer(send: Callable[..., Awaitable[Any]], status: int, code: str, message: str, **headers: str) -> None:
    body = json.dumps({"error": {"code": code, "message": message}}).encode()
    head = [(b"content-type", b"application/json"), *((k.encode(), v.encode()) for k, v in headers.items())]
    await send({"type": "http.response.start", "status": status, "headers": head})
    await send({"type": "http.response.body", "body": body})


class McpEndpoint:
    """The MCP endpoint of one mount (ASGI)."""

    def __init__(self, mount: Mount) -> None:
        self.mount = mount

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        authorization = next((v.decode("latin-1") for k, v in scope.get("headers", []) if k == b"authorization"), "")
        try:
            found = await run_db(bearer_caller, authorization)
        except Exception as exc:
            if not is_outage(exc):
                raise
            error = outage_error(exc)
            await _answer(send, 503, error.code, error.message, **{"retry-after": str(error.retry_after)})
            return
        if found is None:
            await _answer(
                send,
                401,
                "not_authenticated",
                "send Authorization: Bearer <token or API key> (POST /api/auth/token gives a token)",
                **{"www-authenticate": 'Bearer realm="mcp"'},
            )
            return
        from . import protocol  # the SDK: loaded by the first request that needs it

        user, key = found
        caller = protocol.Caller(user=user, key=key, mount=self.mount)
        manager = await protocol.manager()
        if manager is None:
            await _answer(send, 503, "unavailable", "the MCP endpoint is starting: try again", **{"retry-after": "1"})
            return
        await manager.handle_request({**scope, "chat.caller": caller}, receive, send)


def mcp_routes(app: ASGIApp, mounts: Iterable[Mount]) -> ASGIApp:
    """`app`, with `<mount>mcp` of each mount answered by its MCP endpoint (HTTP only)."""
    endpoints = {f"{mount.path}mcp": McpEndpoint(mount) for mount in mounts}

    async def routed(scope: dict[str, Any], receive: Any, send: Any) -> None:
        endpoint = endpoints.get(scope.get("path", "").rstrip("/")) if scope["type"] == "http" else None
        await (endpoint or app)(scope, receive, send)

    return routed
