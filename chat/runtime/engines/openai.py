"""Engine for any OpenAI-compatible chat-completions server (OpenAI, Ollama, vLLM, llama.cpp, LM Studio).

Uses the official SDK with streaming and tool calling. Every provider failure becomes an `EngineError`
whose message never carries the API key, so the runner can show it to the user as is.
"""

from __future__ import annotations

import asyncio
import json
import re
import weakref
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import openai

from chat.runtime.base import (
    EngineDone,
    EngineError,
    EngineEvent,
    Message,
    TextDelta,
    ToolCall,
    ToolCallsRequested,
    ToolSpec,
)

# Sent when no key is configured: local servers (Ollama, vLLM) ignore the key but the SDK wants one.
PLACEHOLDER_API_KEY = "not-needed"
# The whole round (request + stream) may take this many times the per-read timeout.
TOTAL_TIMEOUT_FACTOR = 5.0
_MAX_ERROR_CHARS = 300
_SECRET_PATTERNS = (
    re.compile(r"\bsk-[A-Za-z0-9_*.\-]{4,}"),
    re.compile(r"(?i)\bbearer\s+\S+"),
)


def base_url_host(base_url: str | None) -> str:
    """host[:port] of a base URL (never its user-info), or the SDK default host."""
    if not base_url:
        return "api.openai.com"
    parts = urlsplit(base_url)
    host = parts.hostname or base_url
    return f"{host}:{parts.port}" if parts.port else host


def to_openai_messages(messages: list[Message]) -> list[dict[str, Any]]:
    """Runtime messages -> chat-completions messages (assistant tool_calls, tool results by call id)."""
    out: list[dict[str, Any]] = []
    for message in messages:
        if message.role == "assistant" and message.tool_calls:
            out.append(
                {
                    "role": "assistant",
                    "content": message.content or None,
                    "tool_calls": [
                        {
                            "id": call.call_id,
                            "type": "function",
                            "function": {"name": call.name, "arguments": json.dumps(call.arguments)},
                        }
                        for call in message.tool_calls
                    ],
                }
            )
        elif message.role == "tool":
            out.append({"role": "tool", "tool_call_id": message.tool_call_id or "", "content": message.content})
        else:
            out.append({"role": message.role, "content": message.content})
    return out


def to_openai_tools(tools: list[ToolSpec]) -> list[dict[str, Any]]:
    """ToolSpecs -> chat-completions function tools."""
    return [
        {"type": "function", "function": {"name": t.name, "description": t.description, "parameters": t.parameters}}
        for t in tools
    ]


def _debug_cause(exc: Exception) -> Exception | None:
    """Chain unexpected exceptions for debugging; drop SDK errors, whose text may echo provider bodies."""
    return None if isinstance(exc, openai.OpenAIError | TimeoutError | ValueError) else exc


@dataclass
class _PartialCall:
    call_id: str = ""
    name: str = ""
    arguments: str = ""


@dataclass
class _StreamState:
    """Accumulates one streamed round: text is passed through, tool-call fragments are joined by index."""

    calls: dict[int, _PartialCall] = field(default_factory=dict)
    finish_reason: str | None = None
    usage: dict[str, int] = field(default_factory=dict)
    chunks: int = 0

    def feed(self, chunk: Any) -> str:
        """Absorb one chunk; return its text (may be empty). Raises EngineError on an invalid chunk."""
        self.chunks += 1
        try:
            return self._feed(chunk)
        except (AttributeError, TypeError, ValueError, KeyError) as exc:
            raise EngineError("malformed_stream", f"invalid chunk #{self.chunks} from the provider") from exc

    def _feed(self, chunk: Any) -> str:
        usage = getattr(chunk, "usage", None)
        if usage is not None:
            self.usage = {
                key: int(getattr(usage, key))
                for key in ("prompt_tokens", "completion_tokens", "total_tokens")
                if getattr(usage, key, None) is not None
            }
        choices = chunk.choices
        if choices is None:
            return ""
        if not isinstance(choices, list):
            raise TypeError("choices is not a list")
        text = ""
        for position, choice in enumerate(choices):
            if getattr(choice, "index", 0) not in (0, None):
                continue  # n > 1 is never requested; ignore stray alternatives
            delta = choice.delta
            if delta is not None:
                content = delta.content
                if content is not None:
                    if not isinstance(content, str):
                        raise TypeError("content is not a string")
                    text += content
                for fragment_position, fragment in enumerate(delta.tool_calls or []):
                    self._absorb_call(fragment, position + fragment_position)
            if choice.finish_reason is not None:
                if not isinstance(choice.finish_reason, str):
                    raise TypeError("finish_reason is not a string")
                self.finish_reason = choice.finish_reason
        return text

    def _absorb_call(self, fragment: Any, fallback_index: int) -> None:
        index = fragment.index if fragment.index is not None else fallback_index
        if not isinstance(index, int):
            raise TypeError("tool call index is not an integer")
        call = self.calls.setdefault(index, _PartialCall())
        if fragment.id:
            call.call_id = str(fragment.id)
        function = fragment.function
        if function is not None:
            if function.name and not call.name:
                call.name = str(function.name)
            if function.arguments:
                if not isinstance(function.arguments, str):
                    raise TypeError("tool call arguments are not a string")
                call.arguments += function.arguments

    def finish(self) -> EngineEvent:
        """The last event of the round: ToolCallsRequested, EngineDone, or EngineError if incomplete."""
        if self.calls:
            calls = []
            for index in sorted(self.calls):
                partial = self.calls[index]
                if not partial.name:
                    raise EngineError("malformed_stream", "the provider streamed a tool call without a name")
                try:
                    arguments = json.loads(partial.arguments) if partial.arguments.strip() else {}
                except ValueError:
                    raise EngineError(
                        "malformed_stream", f"the provider sent invalid JSON arguments for tool {partial.name}"
                    ) from None
                if not isinstance(arguments, dict):
                    raise EngineError("malformed_stream", f"arguments for tool {partial.name} are not a JSON object")
                calls.append(
                    ToolCall(call_id=partial.call_id or f"call_{index}", name=partial.name, arguments=arguments)
                )
            return ToolCallsRequested(calls, usage=dict(self.usage))
        if self.finish_reason is None:
            raise EngineError("malformed_stream", "the provider's stream ended before the reply was finished")
        return EngineDone(stop_reason=self.finish_reason or "stop", usage=dict(self.usage))


class OpenAIEngine:
    """Streams one model round from an OpenAI-compatible server through the official SDK."""

    provider = "openai"

    def __init__(
        self,
        model: str,
        *,
        api_key: str,
        base_url: str | None,
        timeout: float,
        temperature: float | None = None,
        top_p: float | None = None,
        max_tokens: int | None = None,
        total_timeout: float | None = None,
    ) -> None:
        self.model = model
        self.base_url = base_url or None
        self.timeout = float(timeout)
        self.total_timeout = float(total_timeout) if total_timeout else self.timeout * TOTAL_TIMEOUT_FACTOR
        self.temperature = temperature
        self.top_p = top_p
        self.max_tokens = max_tokens
        self._api_key = api_key
        self._clients: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, openai.AsyncOpenAI] = (
            weakref.WeakKeyDictionary()
        )

    def __repr__(self) -> str:  # never show the key
        return f"OpenAIEngine(model={self.model!r}, host={base_url_host(self.base_url)!r})"

    def _client(self) -> openai.AsyncOpenAI:
        """One SDK client (and its connection pool) per event loop, reused by every round and turn of
        this runtime: no new TLS handshake per round. An httpx client belongs to the loop it runs on."""
        loop = asyncio.get_running_loop()
        client = self._clients.get(loop)
        if client is None:
            client = self._clients[loop] = openai.AsyncOpenAI(
                api_key=self._api_key or PLACEHOLDER_API_KEY,
                base_url=self.base_url,
                timeout=self.timeout,
                max_retries=0,
            )
        return client

    def _request_kwargs(self, messages: list[Message], tools: list[ToolSpec]) -> dict[str, Any]:
        kwargs: dict[str, Any] = {
            "model": self.model,
            "messages": to_openai_messages(messages),
            "stream": True,
            "stream_options": {"include_usage": True},
        }
        if tools:
            kwargs["tools"] = to_openai_tools(tools)
        if self.temperature is not None:
            kwargs["temperature"] = self.temperature
        if self.top_p is not None:
            kwargs["top_p"] = self.top_p
        if self.max_tokens is not None:
            # OpenAI's own API (reasoning models included) wants max_completion_tokens; compatible
            # servers (Ollama, llama.cpp, older vLLM) know max_tokens.
            key = "max_completion_tokens" if base_url_host(self.base_url) == "api.openai.com" else "max_tokens"
            kwargs[key] = self.max_tokens
        return kwargs

    def _redact(self, text: str) -> str:
        if self._api_key:
            text = text.replace(self._api_key, "***")
        for pattern in _SECRET_PATTERNS:
            text = pattern.sub("***", text)
        text = " ".join(text.split())
        return text if len(text) <= _MAX_ERROR_CHARS else text[: _MAX_ERROR_CHARS - 1] + "…"

    def _map_error(self, exc: BaseException, *, midstream: bool = False) -> EngineError:
        host = base_url_host(self.base_url)
        if isinstance(exc, openai.APITimeoutError):
            return EngineError("timeout", f"the provider at {host} did not answer within {self.timeout:g}s")
        if isinstance(exc, TimeoutError):  # the overall deadline of the round
            return EngineError("timeout", f"the provider at {host} did not finish within {self.total_timeout:g}s")
        if isinstance(exc, openai.APIConnectionError):
            cause = exc.__cause__
            detail = f": {type(cause).__name__}" if cause is not None else ""
            if cause is not None and str(cause):
                detail += f" ({self._redact(str(cause))})"
            if midstream:
                return EngineError("connection_error", f"the connection to the provider at {host} broke{detail}")
            return EngineError("connection_error", f"could not reach the provider at {host}{detail}")
        if isinstance(exc, openai.APIStatusError):
            body = exc.body
            detail = ""
            if isinstance(body, dict):
                error = body.get("error", body)
                detail = str(error.get("message", "")) if isinstance(error, dict) else str(error)
            elif isinstance(body, str):
                detail = body
            detail = self._redact(detail) if detail else "no detail"
            return EngineError("provider_error", f"the provider at {host} answered HTTP {exc.status_code}: {detail}")
        if isinstance(exc, openai.APIError):
            return EngineError(
                "provider_error", f"the provider at {host} reported an error: {self._redact(exc.message)}"
            )
        if isinstance(exc, ValueError):  # a data line that is not JSON
            return EngineError("malformed_stream", f"the provider at {host} sent an invalid stream")
        return EngineError("provider_error", f"the provider at {host} failed: {type(exc).__name__}")

    async def stream(self, messages: list[Message], tools: list[ToolSpec]) -> AsyncIterator[EngineEvent]:
        """One round: TextDelta* then ToolCallsRequested or EngineDone; failures raise EngineError."""
        if not self._api_key and not self.base_url:
            raise EngineError(
                "provider_error",
                "no API key: set OPENAI_API_KEY on the server, or point openai-chat.openai-base-url at a "
                "server that needs none",
            )
        deadline = asyncio.get_running_loop().time() + self.total_timeout
        client = self._client()
        try:
            async with asyncio.timeout_at(deadline):
                response = await client.chat.completions.create(**self._request_kwargs(messages, tools))
        except Exception as exc:
            raise self._map_error(exc) from _debug_cause(exc)
        state = _StreamState()
        iterator = response.__aiter__()
        try:
            while True:
                try:
                    async with asyncio.timeout_at(deadline):
                        chunk = await anext(iterator)
                except StopAsyncIteration:
                    break
                except Exception as exc:
                    raise self._map_error(exc, midstream=True) from _debug_cause(exc)
                text = state.feed(chunk)
                if text:
                    yield TextDelta(text)
        finally:
            await response.close()
        yield state.finish()
