"""MCP servers as a tool source of the platform: `mcp:<server>/<tool>` in a profile's `runtime.tools`.

Registered with `profiles.definitions` at start-up (`chat.apps`), so `profiles` validates and fingerprints
the names without knowing what MCP is. A lookup reads the named servers' stored tools (one query); a call
checks the user whose turn it is against the server's `visible_to_groups` at call time (never the
profile's author), reads the header values from the environment and calls through the SDK.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import rules
from django.conf import settings

from profiles.access import in_visible_groups
from profiles.definitions import ToolDefinition, ToolSource
from profiles.webhooks import check_target

from ..models import McpServer
from ..runtime.base import Rendered, Tool, ToolContext, ToolError
from . import client

PREFIX = "mcp"
# The process environment, read by name for MCP headers: the names are data (a server's `headers_from_env`,
# each with the documented MCP_HEADER_ENV_PREFIX), not settings of this code.
_ENVIRONMENT: Mapping[str, str] = os.environ
USE_MCP_SERVER = "chat.use_mcp_server"
_NAME = re.compile(r"^mcp:(?P<server>[-a-zA-Z0-9_]{1,64})/(?P<tool>[^\s/][^\s]{0,127})$")

# Who may call a server's tools: the profiles' group rule (no groups: everyone), superusers always.
rules.add_perm(USE_MCP_SERVER, rules.is_active & (rules.is_superuser | in_visible_groups))


def parse(name: str) -> tuple[str, str] | None:
    match = _NAME.match(name)
    return (match["server"], match["tool"]) if match else None


def name_problem(name: str) -> str | None:
    if parse(name) is None:
        return f"{name!r} is not an MCP tool name: mcp:<server>/<tool>, e.g. mcp:acme/add"
    return None


class Refused(Exception):
    """The server may not be called now: a header's variable is missing or not allowed, or its address is."""


def variable_problem(variable: str) -> str | None:
    prefix = settings.MCP_HEADER_ENV_PREFIX
    if not variable.startswith(prefix):
        return f"must be the name of an environment variable starting with {prefix} (MCP_HEADER_ENV_PREFIX)"
    return None


def server_headers(server: McpServer) -> dict[str, str]:
    """The server's headers, each value read from the environment variable it names (never stored); only
    variables with the MCP prefix, and values a header may carry."""
    headers: dict[str, str] = {}
    for header, variable in (server.headers_from_env or {}).items():
        problem = variable_problem(variable)
        if problem:
            raise Refused(f"header {header} of MCP server {server.slug!r}: the variable {problem}")
        value = _ENVIRONMENT.get(variable)
        if value is None:
            raise Refused(f"the environment variable {variable} (header {header}) is not set on the server")
        if any(char in value for char in "\r\n\x00"):
            raise Refused(f"the environment variable {variable} (header {header}) holds a line break or NUL")
        headers[header] = value
    return headers


def check_address(server: McpServer) -> None:
    """Refuse a server whose host is (now) a loopback, private or reserved address not in MCP_ALLOWED_HOSTS."""
    why = check_target(server.url, setting="MCP_ALLOWED_HOSTS")
    if why:
        raise Refused(f"MCP server {server.slug!r}: {why}")


def reach(server: McpServer) -> dict[str, str]:
    """Everything checked before a request leaves for the server: its address, then its headers."""
    check_address(server)
    return server_headers(server)


def call_timeout(server: McpServer) -> float:
    """The server's own time, within the tool timeout of a turn (the call ends before the turn gives up)."""
    return max(0.1, min(server.timeout_seconds, settings.CHAT_TOOL_TIMEOUT_SECONDS - 0.5))


@dataclass(frozen=True, eq=True)
class McpTool(Tool):
    """One tool of one MCP server, as the runner calls it (on the tool pool, with the turn's user)."""

    server: str
    tool: str

    writes: ClassVar[bool] = False
    recognise_order: ClassVar[int] = 1000  # only on request (`use mcp:… with …`)

    @property
    def name(self) -> str:  # type: ignore[override]
        return f"{PREFIX}:{self.server}/{self.tool}"

    def run(self, args: dict[str, Any], ctx: ToolContext) -> dict[str, Any]:
        server = McpServer.objects.filter(slug=self.server).first()
        if server is None:
            raise ToolError(f"the MCP server {self.server!r} no longer exists")
        user = _user(ctx.user_id)
        if user is None or not user.has_perm(USE_MCP_SERVER, server):
            raise ToolError(f"permission denied: you may not use the MCP server {self.server!r}")
        try:
            result = client.call_tool(
                server.url,
                headers=reach(server),
                tool=self.tool,
                arguments=args,
                timeout=call_timeout(server),
                name=server.slug,
            )
        except (client.McpUnavailable, Refused) as exc:
            raise ToolError(str(exc)) from None
        if result.is_error:
            raise ToolError(f"the tool {self.name} failed: {result.text or 'no detail given'}")
        return result.as_result()

    def render(self, result: dict[str, Any]) -> Rendered:
        return f"{self.name} answered: {result.get('text', '')}", []


def _user(user_id: int | None) -> Any:
    from django.contrib.auth import get_user_model

    if user_id is None:
        return None
    return get_user_model().objects.filter(pk=user_id, is_active=True).first()


def definition_of(server: str, info: Mapping[str, Any]) -> ToolDefinition:
    tool = McpTool(server, info["name"])
    return ToolDefinition(
        name=tool.name,
        description=info.get("description") or f"{info['name']} (MCP server {server})",
        parameters=info.get("input_schema") or {"type": "object"},
        writes=False,
        implementation=tool,
        schema_hash=info.get("schema_hash"),
    )


def lookup(names: Sequence[str]) -> dict[str, ToolDefinition | str]:
    """Each name's definition from its server's stored tools, or the problem (one query)."""
    wanted = {name: parse(name) for name in names}
    slugs = {parsed[0] for parsed in wanted.values() if parsed}
    stored = dict(McpServer.objects.filter(slug__in=slugs).values_list("slug", "tools")) if slugs else {}
    found: dict[str, ToolDefinition | str] = {}
    for name, parsed in wanted.items():
        if parsed is None:
            found[name] = name_problem(name) or ""
            continue
        server, tool = parsed
        if server not in stored:
            found[name] = f"no MCP server {server!r} (add it: POST /api/chat/mcp-servers)"
            continue
        tools = {info["name"]: info for info in stored[server] or []}
        if tool not in tools:
            known = ", ".join(sorted(tools)) or "none fetched: POST …/refresh"
            found[name] = f"the MCP server {server!r} has no tool {tool!r} (its tools: {known})"
            continue
        found[name] = definition_of(server, tools[tool])
    return found


SOURCE = ToolSource(prefix=PREFIX, check=name_problem, lookup=lookup)
