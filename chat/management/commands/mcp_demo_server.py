"""`manage.py mcp_demo_server [--host 127.0.0.1] [--port 8765]`: a small MCP server to plug into a profile
(docs/mcp.md). It serves, over streamable HTTP at `/mcp`, the SDK's `MCPServer` with two tools: `add`
(two integers) and `word_count` (a text). It needs no database: it stands for a team's own MCP server."""

from __future__ import annotations

from typing import Any

import uvicorn
from django.core.management.base import BaseCommand, CommandParser
from mcp.server.mcpserver import MCPServer


def demo_server() -> MCPServer:
    server = MCPServer("demo-tools", log_level="WARNING")

    @server.tool()
    def add(a: int, b: int) -> int:
        """Add two integers."""
        return a + b

    @server.tool()
    def word_count(text: str) -> dict[str, int]:
        """Count the words and characters of a text."""
        return {"words": len(text.split()), "characters": len(text)}

    return server


class Command(BaseCommand):
    help = "Serve a demo MCP server (tools add and word_count) at http://HOST:PORT/mcp until stopped."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--host", default="127.0.0.1")
        parser.add_argument("--port", type=int, default=8765)

    def handle(self, *args: Any, host: str, port: int, **options: Any) -> None:
        app = demo_server().streamable_http_app(stateless_http=True, json_response=True)
        self.stdout.write(f"MCP demo server at http://{host}:{port}/mcp (tools: add, word_count); Ctrl-C stops it")
        self.stdout.flush()
        uvicorn.run(app, host=host, port=port, log_level="warning")
