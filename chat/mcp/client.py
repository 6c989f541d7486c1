"""Talking to an MCP server over streamable HTTP through the official SDK (`mcp`): listing its tools and
calling one. Plain Python (no Django): the callers pass the URL, the headers and the time allowed.

Each call is whole: it opens the connection, does its one thing within `timeout` and closes, so a tool
that hangs or a server that goes away costs one bounded call and leaves nothing running.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import anyio
import httpx2
from jsonschema import Draft202012Validator
from jsonschema.exceptions import SchemaError

from ..runtime.text import clean_text, clean_value

MAX_TOOLS = 200  # a server listing more is cut here (each one is offered to engines as a schema)
MAX_DESCRIPTION = 2000
MAX_SCHEMA_CHARS = 50_000
MAX_RESULT_CHARS = 100_000  # a tool result is stored with the turn and sent to the engine


class McpUnavailable(Exception):
    """The server could not be reached, did not answer in time or answered with an error."""


@dataclass(frozen=True)
class ToolInfo:
    name: str
    description: str
    input_schema: dict[str, Any]
    schema_hash: str

    def as_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "description": self.description,
            "input_schema": self.input_schema,
            "schema_hash": self.schema_hash,
        }


def schema_hash(name: str, description: str, input_schema: Mapping[str, Any]) -> str:
    """What identifies a tool as offered to an engine: its name, description and input schema."""
    payload = json.dumps(
        {"name": name, "description": description, "input_schema": input_schema},
        sort_keys=True,
        separators=(",", ":"),
        ensure_ascii=False,
    )
    return "sha256:" + hashlib.sha256(payload.encode("utf-8", "surrogatepass")).hexdigest()


def _session(url: str, headers: Mapping[str, str], timeout: float) -> tuple[httpx2.AsyncClient, Any]:
    """(http client, MCP client) for one call. The SDK is imported here, on a tool thread, at the first
    call: it takes about a second, which no worker start or management command pays."""
    from mcp import Client
    from mcp.client.streamable_http import streamable_http_client

    http = httpx2.AsyncClient(headers=dict(headers), timeout=timeout, follow_redirects=False)
    return http, Client(streamable_http_client(url, http_client=http), read_timeout_seconds=timeout, cache=None)


def _failure(exc: BaseException, name: str, timeout: float, secrets: Iterable[str]) -> McpUnavailable:
    """What went wrong, naming the server by its name (never its URL) and never a header's value."""
    if isinstance(exc, TimeoutError):
        return McpUnavailable(f"the MCP server {name!r} did not answer within {timeout:g}s")
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    for secret in secrets:
        if secret:
            text = text.replace(secret, "[redacted]").replace(
                repr(secret.encode("latin-1", "replace"))[2:-1], "[redacted]"
            )
    detail = f"{type(exc).__name__}: {text[:300]}" if text else type(exc).__name__
    return McpUnavailable(f"the MCP server {name!r} failed: {detail}")


def _run(coro_fn: Any, name: str, timeout: float, secrets: Iterable[str]) -> Any:
    """Run one whole exchange on a loop of its own (this runs on a pool thread), within `timeout`."""

    async def bounded() -> Any:
        with anyio.fail_after(timeout):
            return await coro_fn()

    try:
        return asyncio.run(bounded())
    except McpUnavailable:
        raise
    except BaseExceptionGroup as group:  # the SDK's task groups wrap what failed inside them
        raise _failure(_first(group), name, timeout, secrets) from None
    except Exception as exc:
        raise _failure(exc, name, timeout, secrets) from None


def _first(group: BaseExceptionGroup) -> BaseException:
    inner: BaseException = group
    while isinstance(inner, BaseExceptionGroup) and inner.exceptions:
        inner = inner.exceptions[0]
    return inner


def list_tools(url: str, *, headers: Mapping[str, str], timeout: float, name: str) -> tuple[list[ToolInfo], list[str]]:
    """The server's tools (by name) and the problems with tools left out (a schema that is not a JSON
    schema of an object, a name given twice). Raises McpUnavailable."""

    async def fetch() -> list[Any]:
        http, client = _session(url, headers, timeout)
        async with http, client:
            tools: list[Any] = []
            cursor: str | None = None
            while len(tools) < MAX_TOOLS:
                page = await client.list_tools(cursor=cursor) if cursor else await client.list_tools()
                tools.extend(page.tools)
                cursor = page.next_cursor
                if not cursor:
                    break
            return tools[:MAX_TOOLS]

    found: dict[str, ToolInfo] = {}
    problems: list[str] = []
    for tool in _run(fetch, name, timeout, headers.values()):
        tool_name = clean_text(str(tool.name))
        schema = clean_value(dict(tool.input_schema or {"type": "object"}))
        try:
            if len(json.dumps(schema)) > MAX_SCHEMA_CHARS:
                raise SchemaError(f"larger than {MAX_SCHEMA_CHARS} characters")
            Draft202012Validator.check_schema(schema)
            if schema.get("type", "object") != "object":
                raise SchemaError("the input schema must describe an object")
        except SchemaError as exc:
            problems.append(f"tool {tool_name!r} left out: its input schema is invalid ({exc.message})")
            continue
        if tool_name in found:
            problems.append(f"tool {tool_name!r} left out: the server lists it twice")
            continue
        description = clean_text(str(tool.description or ""))[:MAX_DESCRIPTION]
        found[tool_name] = ToolInfo(tool_name, description, schema, schema_hash(tool_name, description, schema))
    return sorted(found.values(), key=lambda t: t.name), problems


@dataclass(frozen=True)
class CallResult:
    text: str
    structured: dict[str, Any] | None
    is_error: bool

    def as_result(self) -> dict[str, Any]:
        """A tool result as the built-in tools give theirs: a JSON object."""
        result: dict[str, Any] = {"text": self.text}
        if self.structured is not None:
            result["structured_content"] = self.structured
        return result


def call_tool(
    url: str, *, headers: Mapping[str, str], tool: str, arguments: dict[str, Any], timeout: float, name: str
) -> CallResult:
    """One `tools/call`: the text parts joined, and the structured content when the tool gives one.
    Raises McpUnavailable (down, too slow, a protocol error)."""

    async def call() -> Any:
        http, client = _session(url, headers, timeout)
        async with http, client:
            return await client.call_tool(tool, arguments)

    result = _run(call, name, timeout, headers.values())
    texts = [str(part.text) for part in result.content or [] if getattr(part, "type", "") == "text"]
    others = [str(getattr(part, "type", "?")) for part in result.content or [] if getattr(part, "type", "") != "text"]
    text = "\n".join(texts)
    if others:
        text += ("\n" if text else "") + f"({len(others)} non-text part(s) left out: {', '.join(sorted(set(others)))})"
    structured = clean_value(result.structured_content) if isinstance(result.structured_content, dict) else None
    if structured is not None and len(json.dumps(structured)) > MAX_RESULT_CHARS:
        structured, text = None, text + "\n(the structured content was left out: too large)"
    if len(text) > MAX_RESULT_CHARS:
        text = text[:MAX_RESULT_CHARS] + f"\n(cut at {MAX_RESULT_CHARS} characters)"
    return CallResult(text=clean_text(text), structured=structured, is_error=bool(result.is_error))
