"""Real MCP servers for tests: the SDK's `MCPServer` over streamable HTTP (uvicorn) on a free port, in a
thread of the test process, with tools that answer, fail, hang, report the headers they got and change
their schema on demand."""

from __future__ import annotations

import socket
import threading
import time
from dataclasses import dataclass, field
from typing import Any

import anyio
import uvicorn
from mcp.server.mcpserver import Context, MCPServer
from mcp.server.mcpserver.exceptions import ToolError


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class McpTestServer:
    """`with McpTestServer() as acme:` serves at `acme.url` until the block ends."""

    name: str = "acme"
    port: int = field(default_factory=free_port)
    calls: list[str] = field(default_factory=list)
    release: threading.Event = field(default_factory=threading.Event)
    hang_finished: threading.Event = field(default_factory=threading.Event)

    def __post_init__(self) -> None:
        self.mcp = MCPServer(self.name, log_level="WARNING")
        self._add_tool(third=False)

        @self.mcp.tool()
        def fail(reason: str = "out of stock") -> str:
            """Always fails with the reason given."""
            self.calls.append("fail")
            raise ToolError(f"cannot do it: {reason}")

        @self.mcp.tool()
        async def hang(seconds: float = 60.0) -> str:
            """Answers after `seconds` (tests' timeouts end the call first)."""
            self.calls.append("hang")
            try:
                with anyio.move_on_after(seconds):
                    while not self.release.is_set():
                        await anyio.sleep(0.05)
                return "late"
            finally:
                self.hang_finished.set()

        @self.mcp.tool()
        def whoami(ctx: Context) -> dict[str, Any]:
            """The Authorization header this server received."""
            self.calls.append("whoami")
            request = ctx.request_context.request
            return {"authorization": request.headers.get("authorization") if request is not None else None}

        self.server = uvicorn.Server(
            uvicorn.Config(
                self.mcp.streamable_http_app(stateless_http=True, json_response=True),
                host="127.0.0.1",
                port=self.port,
                log_level="warning",
            )
        )

    def _add_tool(self, *, third: bool) -> None:
        if third:

            def add(a: int, b: int, c: int = 0) -> int:
                """Add two or three integers."""
                self.calls.append("add")
                return a + b + c

        else:

            def add(a: int, b: int) -> int:  # type: ignore[misc]
                """Add two integers."""
                self.calls.append("add")
                return a + b

        self.mcp.add_tool(add, name="add")

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/mcp"

    def change_add(self) -> None:
        """`add` gets a third argument and a new description: a new schema hash."""
        self.mcp.remove_tool("add")
        self._add_tool(third=True)

    def __enter__(self) -> McpTestServer:
        self.thread = threading.Thread(target=self.server.run, name=f"mcp-{self.name}", daemon=True)
        self.thread.start()
        deadline = time.monotonic() + 10
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError(f"the MCP test server {self.name} did not start")
            time.sleep(0.02)
        return self

    def __exit__(self, *exc: Any) -> None:
        self.release.set()
        self.server.should_exit = True
        self.thread.join(timeout=10)
