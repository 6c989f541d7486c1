"""Reads of MCP servers."""

from __future__ import annotations

from django.db.models import QuerySet

from profiles.errors import NotFound

from ..models import McpServer


def mcp_server_list() -> QuerySet[McpServer]:
    return McpServer.objects.all()


def mcp_server_get(*, slug: str) -> McpServer:
    server = McpServer.objects.filter(slug=slug).first()
    if server is None:
        raise NotFound(f"no MCP server {slug!r}", field="slug")
    return server
