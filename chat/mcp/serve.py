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

import asyncio
import json
import re
import uuid
import weakref
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from typing import Any

import mcp_types as types
from django.db import DatabaseError
from mcp.server import Server
from mcp.server.streamable_http_manager import StreamableHTTPSessionManager
from mcp.server.transport_security import TransportSecuritySettings
from mcp.shared.exceptions import MCPError

from profiles.errors import ProfileError
from profiles.mounts import Mount

from .. import limits
from ..aio import run_db
from ..gateway import services as gateway
from ..gateway.errors import TurnOutcomeError
from ..gateway.selectors import ModelRow
from ..security import bearer_caller

ASGIApp = Callable[[dict[str, Any], Callable[..., Awaitable[Any]], Callable[..., Awaitable[Any]]], Awaitable[None]]
MAX_MESSAGE = 32_000
_OTHER = re.compile(r"[^A-Za-z0-9_.-]+")
# Where the gateway's submission names a request part, the argument of the tool call that carried it.
ARGUMENT_FIELDS = {gateway.CONVERSATION_HEADER: "arguments.conversation_id", "prompt": "arguments.message"}

INPUT_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "message": {"type": "string", "minLength": 1, "maxLength": MAX_MESSAGE, "description": "what to ask"},
        "conversation_id": {
            "type": "string",
            "description": "continue this conversation (returned by an earlier call); absent: a new one",
        },
    },
    "required": ["message"],
    "additionalProperties": False,
}
OUTPUT_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "conversation_id": {"type": "string"},
        "turn_id": {"type": "string"},
        "profile_version": {"type": ["integer", "null"]},
        "fingerprint": {"type": "string"},
    },
    "required": ["conversation_id", "turn_id", "profile_version", "fingerprint"],
}


@dataclass(frozen=True)
class Caller:
    user: Any
    key: Any  # the API key, when the caller used one
    mount: Mount


def tool_names(rows: Iterable[ModelRow], mount: Mount) -> dict[str, ModelRow]:
    """`ask_<model id>` with what MCP does not allow in a name made `_` (`ask_support-desk`,
    `ask_other_agent`, `ask_agent_production`); a name already taken gets a short suffix."""
    names: dict[str, ModelRow] = {}
    for row in rows:
        name = "ask_" + _OTHER.sub("_", _model(row, mount))[:120]
        while name in names:
            name = f"{name[:120]}-{len(names)}"
        names[name] = row
    return names


def _model(row: ModelRow, mount: Mount) -> str:
    return gateway.model_id(row.registry, f"{row.slug}@{row.label}" if row.label else row.slug, mount)


def _caller(ctx: Any) -> Caller:
    request = getattr(ctx, "request", None)
    caller = request.scope.get("chat.caller") if request is not None else None
    if not isinstance(caller, Caller):
        raise MCPError(types.INVALID_REQUEST, "not authenticated")
    return caller


async def _tools(caller: Caller) -> dict[str, ModelRow]:
    rows = await run_db(gateway.model_list, mount=caller.mount, user=caller.user, key=caller.key)
    return tool_names(rows, caller.mount)


async def list_tools(ctx: Any, params: types.PaginatedRequestParams | None) -> types.ListToolsResult:
    caller = _caller(ctx)
    tools = [
        types.Tool(
            name=name,
            title=row.display_name or row.slug,
            description=(row.description or f"Ask the {row.display_name or row.slug} assistant.")
            + f" (profile {_model(row, caller.mount)})",
            input_schema=INPUT_SCHEMA,
            output_schema=OUTPUT_SCHEMA,
        )
        for name, row in (await _tools(caller)).items()
    ]
    return types.ListToolsResult(tools=tools)


def _arguments(raw: dict[str, Any] | None) -> tuple[str, uuid.UUID | None]:
    args = raw or {}
    unknown = sorted(set(args) - {"message", "conversation_id"})
    if unknown:
        raise MCPError(types.INVALID_PARAMS, f"arguments.{unknown[0]}: unknown argument")
    message = args.get("message")
    if not isinstance(message, str) or not message.strip() or len(message) > MAX_MESSAGE:
        raise MCPError(
            types.INVALID_PARAMS, f"arguments.message: a non-empty string of at most {MAX_MESSAGE} characters"
        )
    conv = args.get("conversation_id")
    if conv is None:
        return message, None
    try:
        return message, uuid.UUID(str(conv))
    except ValueError:
        raise MCPError(types.INVALID_PARAMS, "arguments.conversation_id: must be a conversation id (a UUID)") from None


def _failed(text: str) -> types.CallToolResult:
    return types.CallToolResult(content=[types.TextContent(type="text", text=text)], is_error=True)


async def call_tool(ctx: Any, params: types.CallToolRequestParams) -> types.CallToolResult:
    caller = _caller(ctx)
    row = (await _tools(caller)).get(params.name)
    if row is None:  # missing, or a profile the caller may not use: the same answer
        raise MCPError(types.INVALID_PARAMS, f"unknown tool: {params.name}")
    message, conv_id = _arguments(params.arguments)
    data = gateway.CompletionInput(
        model=_model(row, caller.mount),
        prompt=message,
        system_prompt=None,
        history=(),
        engine={},
        stream=False,
        prompt_field="arguments.message",
    )
    try:
        if caller.key is not None:
            await run_db(limits.admit, caller.key)
        completion = await gateway.submit(
            user=caller.user, mount=caller.mount, data=data, conv_id=conv_id, key=caller.key
        )
        result = await completion.result()
    except TurnOutcomeError as exc:
        return _failed(exc.message)
    except ProfileError as exc:
        field = ARGUMENT_FIELDS.get(exc.field or "", exc.field)
        where = f"{field}: " if field else ""
        retry = f" (retry in {exc.retry_after}s)" if exc.retry_after else ""
        return _failed(f"{exc.code}: {where}{exc.message}{retry}")
    except DatabaseError:
        return _failed("unavailable: the database is unavailable; try again in a few seconds")
    turn = result.turn
    structured = {
        "conversation_id": completion.conv_id,
        "turn_id": str(turn.pk),
        "profile_version": turn.profile_version,
        "fingerprint": turn.fingerprint,
    }
    return types.CallToolResult(content=[types.TextContent(type="text", text=turn.text)], structured_content=structured)


SERVER: Server[Any] = Server(
    "django-profiles", version="1", on_list_tools=list_tools, on_call_tool=call_tool
)  # no lifespan state


class _Running:
    """The SDK's session manager, run for the life of the event loop (daphne has no lifespan events):
    started by the first request, its task kept here."""

    def __init__(self) -> None:
        # No DNS-rebinding check: callers authenticate with a bearer credential, never a cookie.
        self.manager = StreamableHTTPSessionManager(
            SERVER,
            stateless=True,
            json_response=True,
            security_settings=TransportSecuritySettings(enable_dns_rebinding_protection=False),
        )
        self.ready = asyncio.Event()
        self.task = asyncio.get_running_loop().create_task(self._run(), name="mcp-session-manager")

    async def _run(self) -> None:
        async with self.manager.run():
            self.ready.set()
            await asyncio.Event().wait()  # until the loop ends


_running: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _Running] = weakref.WeakKeyDictionary()


async def _manager() -> StreamableHTTPSessionManager:
    loop = asyncio.get_running_loop()
    running = _running.get(loop)
    if running is None:
        running = _running[loop] = _Running()
    await running.ready.wait()
    return running.manager


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
        except DatabaseError:
            await _answer(send, 503, "unavailable", "the database is unavailable; try again", **{"retry-after": "2"})
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
        user, key = found
        caller = Caller(user=user, key=key, mount=self.mount)
        await (await _manager()).handle_request({**scope, "chat.caller": caller}, receive, send)


def mcp_routes(app: ASGIApp, mounts: Iterable[Mount]) -> ASGIApp:
    """`app`, with `<mount>mcp` of each mount answered by its MCP endpoint (HTTP only)."""
    endpoints = {f"{mount.path}mcp": McpEndpoint(mount) for mount in mounts}

    async def routed(scope: dict[str, Any], receive: Any, send: Any) -> None:
        endpoint = endpoints.get(scope.get("path", "").rstrip("/")) if scope["type"] == "http" else None
        await (endpoint or app)(scope, receive, send)

    return routed
