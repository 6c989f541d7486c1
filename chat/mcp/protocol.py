"""The MCP side of `/mcp` (see `chat.mcp.serve`): the official SDK's low-level server whose `tools/list`
lists `ask_<profile>` per profile the caller may use and whose `tools/call` runs a turn through the
gateway's submission; and its session manager, run on the server's loop. Imported at the first `/mcp`
request: the SDK takes about a second to import, which no other request, command or worker start pays.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import math
import re
import uuid
import weakref
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from types import SimpleNamespace
from typing import Any

import mcp_types as types
from mcp.server import Server
from mcp.server.streamable_http_manager import StreamableHTTPSessionManager
from mcp.server.transport_security import TransportSecuritySettings
from mcp.shared.exceptions import MCPError

from profiles.api.throttling import UserRateThrottle
from profiles.errors import Busy, ProfileError, is_outage, outage_error
from profiles.mounts import Mount

from .. import limits
from ..aio import run_db
from ..gateway import inputs
from ..gateway import services as gateway
from ..gateway.selectors import ModelRow
from ..services import MAX_PROMPT_CHARS

log = logging.getLogger(__name__)
MAX_MESSAGE = MAX_PROMPT_CHARS  # the message is a turn's prompt
_OTHER = re.compile(r"[^A-Za-z0-9_.-]+")
# Where the gateway's submission names a request part, the argument of the tool call that carried it.
ARGUMENT_FIELDS = {inputs.CONVERSATION_HEADER: "arguments.conversation_id", "prompt": "arguments.message"}

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
    `ask_other_agent`, `ask_agent_production`); a name two models would share gets a suffix from a hash of
    the model id, so a name always means the same model whatever else the caller sees."""
    rows = list(rows)
    plain = {row: "ask_" + _OTHER.sub("_", _model(row, mount))[:110] for row in rows}
    shared = {name for name, count in Counter(plain.values()).items() if count > 1}
    names: dict[str, ModelRow] = {}
    for row, name in plain.items():
        if name in shared:
            name = f"{name}-{hashlib.sha256(_model(row, mount).encode()).hexdigest()[:8]}"
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
    try:
        found = await _tools(caller)
    except Exception as exc:
        if is_outage(exc):
            raise MCPError(types.INTERNAL_ERROR, _said(outage_error(exc))) from None
        raise
    tools = [
        types.Tool(
            name=name,
            title=row.display_name or row.slug,
            description=(row.description or f"Ask the {row.display_name or row.slug} assistant.")
            + f" (profile {_model(row, caller.mount)})",
            input_schema=INPUT_SCHEMA,
            output_schema=OUTPUT_SCHEMA,
        )
        for name, row in found.items()
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
    try:
        row = (await _tools(caller)).get(params.name)
    except Exception as exc:
        if is_outage(exc):
            return _failed(_said(outage_error(exc)))
        raise
    if row is None:  # missing, or a profile the caller may not use: the same answer
        raise MCPError(types.INVALID_PARAMS, f"unknown tool: {params.name}")
    message, conv_id = _arguments(params.arguments)
    data = inputs.CompletionInput(
        model=_model(row, caller.mount),
        prompt=message,
        system_prompt=None,
        history=(),
        engine={},
        stream=False,
        prompt_field="arguments.message",
    )
    try:
        await run_db(_admit, caller)
        completion = await gateway.submit(
            user=caller.user, mount=caller.mount, data=data, conv_id=conv_id, key=caller.key
        )
        result = await completion.result()
    except ProfileError as exc:
        return _failed(_said(exc))
    except Exception as exc:
        if is_outage(exc):
            return _failed(_said(outage_error(exc)))
        raise
    turn = result.turn
    structured = {
        "conversation_id": completion.conv_id,
        "turn_id": str(turn.pk),
        "profile_version": turn.profile_version,
        "fingerprint": turn.fingerprint,
    }
    return types.CallToolResult(content=[types.TextContent(type="text", text=turn.text)], structured_content=structured)


class _TurnThrottle(UserRateThrottle):
    """The per-user rate of turns REST and the gateway apply (`CHAT_REST_TURN_RATE`): the same bucket."""

    scope = "turns"


def _admit(caller: Caller) -> None:
    """A call starts a turn: the caller's turn rate, and an API key's per-minute limits."""
    throttle = _TurnThrottle()
    if not throttle.allow_request(SimpleNamespace(user=caller.user, META={}), None):
        seconds = max(1, math.ceil(throttle.wait()))
        busy = Busy(f"too many turns (CHAT_REST_TURN_RATE): try again in {seconds}s")
        busy.retry_after = seconds
        raise busy
    if caller.key is not None:
        limits.admit(caller.key)


def _said(exc: ProfileError) -> str:
    """A refusal as the tool's text: its code, the argument it concerns, the message, when to retry."""
    field = ARGUMENT_FIELDS.get(exc.field or "", exc.field)
    where = f"{field}: " if field else ""
    retry = f" (retry in {exc.retry_after}s)" if exc.retry_after else ""
    return f"{exc.code}: {where}{exc.message}{retry}"


SERVER: Server[Any] = Server(
    "django-profiles", version="1", on_list_tools=list_tools, on_call_tool=call_tool
)  # no lifespan state


class _Running:
    """The SDK's session manager, run for the life of the event loop (daphne has no lifespan events):
    started by the first request; its task is kept here, and a manager whose task ended is started again."""

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

    async def started(self) -> bool:
        """Ready to serve (True), or its task ended before or after starting (False)."""
        if not self.ready.is_set():
            waiting = asyncio.ensure_future(self.ready.wait())
            try:
                await asyncio.wait({waiting, self.task}, return_when=asyncio.FIRST_COMPLETED)
            finally:
                waiting.cancel()
        return self.ready.is_set() and not self.task.done()


_running: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _Running] = weakref.WeakKeyDictionary()


async def manager() -> StreamableHTTPSessionManager | None:
    loop = asyncio.get_running_loop()
    running = _running.get(loop)
    if running is None or running.task.done():
        if running is not None and not running.task.cancelled() and running.task.exception() is not None:
            log.error("the MCP session manager stopped: %r", running.task.exception())
        running = _running[loop] = _Running()
    return running.manager if await running.started() else None
