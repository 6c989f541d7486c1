"""Writes of MCP servers (staff with the model permissions): create, change, delete, refresh the tools.

A server's tools are fetched from it (network, outside any transaction), then stored with the row in
one atomic write with its audit entry. A server that cannot be reached is still saved, with no tools and
`tools_error` saying why; `mcp_server_refresh` fetches again.
"""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import urlsplit

from django.db import IntegrityError, transaction

from profiles.audit import audit_record
from profiles.errors import Conflict, Forbidden, InvalidInput, NotFound
from profiles.timestamps import now_ms
from profiles.validation import ensure_storable, validate_group_names
from profiles.webhooks import check_target

from ..models import McpServer
from . import client, selectors
from .source import Refused, call_timeout, reach, variable_problem

_SLUG = re.compile(r"^[a-z0-9][a-z0-9_-]{0,63}$")
_HEADER = re.compile(r"^[A-Za-z0-9!#$%&'*+.^_`|~-]{1,100}$")
_VARIABLE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,127}$")
MAX_HEADERS = 20
MAX_TIMEOUT = 300.0
FIELDS = ("url", "headers_from_env", "visible_to_groups", "timeout_seconds")


def require_perm(actor: Any, action: str) -> None:
    """Staff with `chat.<action>_mcpserver` (superusers have every permission)."""
    if actor is None or not actor.is_staff or not actor.has_perm(f"chat.{action}_mcpserver"):
        raise Forbidden(f"MCP servers are managed by staff with the permission chat.{action}_mcpserver")


def _url(raw: Any) -> str:
    if not isinstance(raw, str) or not raw.strip() or len(raw) > 500:
        raise InvalidInput("must be the server's streamable HTTP URL (at most 500 characters)", field="url")
    ensure_storable(raw, field="url")
    parts = urlsplit(raw.strip())
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise InvalidInput("must be an http:// or https:// URL", field="url")
    why = check_target(raw.strip(), setting="MCP_ALLOWED_HOSTS")
    if why:
        raise InvalidInput(why, field="url")
    if parts.username or parts.password or parts.query or parts.fragment:
        raise InvalidInput(
            "must not carry credentials, a query or a fragment: name the environment variables that hold "
            "secrets in headers_from_env",
            field="url",
        )
    return raw.strip()


def _headers(raw: Any) -> dict[str, str]:
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise InvalidInput(
            'must be an object: header -> environment variable, e.g. {"Authorization": "ACME_TOKEN"}',
            field="headers_from_env",
        )
    if len(raw) > MAX_HEADERS:
        raise InvalidInput(f"at most {MAX_HEADERS} headers", field="headers_from_env")
    out: dict[str, str] = {}
    for header, variable in raw.items():
        at = f"headers_from_env.{header}"
        if not _HEADER.match(str(header)):
            raise InvalidInput("not a valid HTTP header name", field=at)
        if not isinstance(variable, str) or not _VARIABLE.match(variable):
            raise InvalidInput(
                "must be the NAME of an environment variable holding the value (secrets are never stored)", field=at
            )
        problem = variable_problem(variable)
        if problem:
            raise InvalidInput(problem, field=at)
        out[str(header)] = variable
    return out


def _timeout(raw: Any) -> float:
    if isinstance(raw, bool) or not isinstance(raw, int | float) or not 0 < raw <= MAX_TIMEOUT:
        raise InvalidInput(f"must be a number of seconds above 0 and at most {MAX_TIMEOUT:g}", field="timeout_seconds")
    return float(raw)


def _groups(raw: Any) -> list[str]:
    names, errors = validate_group_names(raw, field="visible_to_groups")
    if errors:
        raise InvalidInput.from_errors(errors)
    return names


_CHECKS = {"url": _url, "headers_from_env": _headers, "visible_to_groups": _groups, "timeout_seconds": _timeout}


def _fetch(server: McpServer) -> None:
    """The server's tools into the (unsaved) row: on failure, none, and `tools_error` says why."""
    try:
        tools, problems = client.list_tools(
            server.url, headers=reach(server), timeout=call_timeout(server), name=server.slug
        )
    except (client.McpUnavailable, Refused) as exc:
        server.tools, server.tools_error = [], str(exc)
    else:
        server.tools, server.tools_error = [tool.as_dict() for tool in tools], "\n".join(problems)
    server.tools_fetched_at_ms = now_ms()


def _audit(action: str, server: McpServer, actor: Any, changes: dict[str, Any]) -> None:
    audit_record(
        actor=actor,
        source="api",
        action=action,
        object_type="mcp_server",
        registry="",
        slug=server.slug,
        changes=changes,
    )


def _described(server: McpServer) -> dict[str, Any]:
    """What the audit log keeps of a server: never a header value (there is none to keep)."""
    return {
        "url": server.url,
        "headers_from_env": server.headers_from_env,
        "visible_to_groups": server.visible_to_groups,
        "timeout_seconds": server.timeout_seconds,
        "tools": [tool["name"] for tool in server.tools],
    }


def mcp_server_create(*, actor: Any, slug: Any, **fields: Any) -> McpServer:
    """A new server (409 when the slug is taken), its tools fetched before it is stored."""
    require_perm(actor, "add")
    if not isinstance(slug, str) or not _SLUG.match(slug):
        raise InvalidInput("must be 1-64 characters: lowercase letters, digits, '-' and '_'", field="slug")
    if "url" not in fields:
        raise InvalidInput("is required", field="url")
    server = McpServer(slug=slug, **{name: _CHECKS[name](value) for name, value in fields.items()})
    if McpServer.objects.filter(slug=slug).exists():
        raise Conflict(f"an MCP server {slug!r} already exists", field="slug")
    _fetch(server)
    try:
        with transaction.atomic():
            server.save()
            _audit("mcp_server.created", server, actor, _described(server))
    except IntegrityError:
        raise Conflict(f"an MCP server {slug!r} already exists", field="slug") from None
    return server


def mcp_server_update(*, actor: Any, slug: str, changes: dict[str, Any]) -> McpServer:
    """Change some fields; a new URL or new headers fetch the tools again."""
    require_perm(actor, "change")
    server = selectors.mcp_server_get(slug=slug)
    checked = {name: _CHECKS[name](value) for name, value in changes.items()}
    before = _described(server)
    for name, value in checked.items():
        setattr(server, name, value)
    if {"url", "headers_from_env"} & set(checked):
        _fetch(server)
    with transaction.atomic():
        if not McpServer.objects.select_for_update().filter(pk=server.pk).exists():
            raise NotFound(f"no MCP server {slug!r}", field="slug")
        server.save()
        after = _described(server)
        _audit("mcp_server.updated", server, actor, {k: after[k] for k in after if after[k] != before[k]})
    return server


def mcp_server_refresh(*, actor: Any, slug: str) -> McpServer:
    """Fetch the tools again (a changed schema changes the fingerprint of every runtime allowing it)."""
    require_perm(actor, "change")
    server = selectors.mcp_server_get(slug=slug)
    before = [(tool["name"], tool["schema_hash"]) for tool in server.tools]
    _fetch(server)
    with transaction.atomic():
        McpServer.objects.filter(pk=server.pk).update(
            tools=server.tools,
            tools_error=server.tools_error,
            tools_fetched_at_ms=server.tools_fetched_at_ms,
            updated_at_ms=now_ms(),
        )
        after = [(tool["name"], tool["schema_hash"]) for tool in server.tools]
        if after != before:
            _audit("mcp_server.tools_changed", server, actor, {"tools": [name for name, _ in after]})
    return server


def mcp_server_delete(*, actor: Any, slug: str) -> None:
    """Gone: profiles naming its tools keep the names, and those tools are no longer offered."""
    require_perm(actor, "delete")
    with transaction.atomic():
        server = selectors.mcp_server_get(slug=slug)
        _audit("mcp_server.deleted", server, actor, _described(server))
        server.delete()
