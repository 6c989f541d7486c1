"""Engine for any OpenAI-compatible chat-completions server (OpenAI, Ollama, vLLM, llama.cpp, LM Studio).

Streams with tool calling over aiohttp (`engines.http`: a fraction of the `openai` SDK's CPU per round
and per chunk). Every provider failure becomes an `EngineError` whose message never carries the API key,
so the runner can show it to the user as is.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

import aiohttp

from chat.runtime.base import (
    EngineDone,
    EngineError,
    EngineEvent,
    Message,
    ToolCall,
    ToolCallsRequested,
    ToolSpec,
)

from .http import ProviderHTTPError, ProviderStreamError, loop_session, post_events
from .sdk import PLACEHOLDER_API_KEY, SDKEngine, url_host

OPENAI_HOST = "api.openai.com"
DEFAULT_BASE_URL = "https://api.openai.com/v1"


def base_url_host(base_url: str | None) -> str:
    """host[:port] of a base URL (never its user-info), or OpenAI's host."""
    return url_host(base_url, OPENAI_HOST)


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
        # Chunks are the provider's JSON objects as decoded (no SDK models: building them cost more
        # CPU per delta than the rest of the stream); a wrong shape raises and is a malformed stream.
        usage = chunk.get("usage")
        if usage is not None:
            self.usage = {
                key: int(usage[key])
                for key in ("prompt_tokens", "completion_tokens", "total_tokens")
                if usage.get(key) is not None
            }
        choices = chunk.get("choices")
        if choices is None:
            return ""
        if not isinstance(choices, list):
            raise TypeError("choices is not a list")
        text = ""
        for position, choice in enumerate(choices):
            if choice.get("index", 0) not in (0, None):
                continue  # n > 1 is never requested; ignore stray alternatives
            delta = choice.get("delta")
            if delta is not None:
                content = delta.get("content")
                if content is not None:
                    if not isinstance(content, str):
                        raise TypeError("content is not a string")
                    text += content
                fragments = delta.get("tool_calls") or []
                if not isinstance(fragments, list):
                    raise TypeError("tool_calls is not a list")
                for fragment_position, fragment in enumerate(fragments):
                    self._absorb_call(fragment, position + fragment_position)
            finish_reason = choice.get("finish_reason")
            if finish_reason is not None:
                if not isinstance(finish_reason, str):
                    raise TypeError("finish_reason is not a string")
                self.finish_reason = finish_reason
        return text

    def _absorb_call(self, fragment: Any, fallback_index: int) -> None:
        index = fragment.get("index")
        index = fallback_index if index is None else index
        if not isinstance(index, int):
            raise TypeError("tool call index is not an integer")
        call = self.calls.setdefault(index, _PartialCall())
        if fragment.get("id"):
            call.call_id = str(fragment["id"])
        function = fragment.get("function")
        if function is not None:
            name, arguments = function.get("name"), function.get("arguments")
            if name and not call.name:
                call.name = str(name)
            if arguments:
                if not isinstance(arguments, str):
                    raise TypeError("tool call arguments are not a string")
                call.arguments += arguments

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


class OpenAIEngine(SDKEngine):
    """Streams one model round from an OpenAI-compatible server (`POST {base_url}/chat/completions`)."""

    provider = "openai"
    # aiohttp's read and connect timeouts are ServerTimeoutError, a ClientError too: checked first.
    timeout_errors = (aiohttp.ServerTimeoutError,)
    connection_errors = (aiohttp.ClientError,)
    status_errors = (ProviderHTTPError,)
    api_errors = (ProviderStreamError,)
    default_host = OPENAI_HOST
    key_setting = "OPENAI_API_KEY"
    base_url_setting = "openai-chat.openai-base-url"

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
        super().__init__(
            model,
            api_key=api_key,
            base_url=base_url,
            timeout=timeout,
            max_tokens=max_tokens,
            total_timeout=total_timeout,
        )
        self.temperature = temperature
        self.top_p = top_p

    def _client(self) -> aiohttp.ClientSession:
        """The loop's shared session (`engines.http`): one pool for every engine, none kept per engine."""
        return loop_session()

    def _new_client(self) -> aiohttp.ClientSession:
        return loop_session()

    async def _open(self, client: aiohttp.ClientSession, messages: list[Message], tools: list[ToolSpec]) -> Any:
        # No retries (a retry is the runner's decision); a placeholder key for a server that needs none.
        return await post_events(
            client,
            f"{(self.base_url or DEFAULT_BASE_URL).rstrip('/')}/chat/completions",
            body=self._request_kwargs(messages, tools),
            headers={"Authorization": f"Bearer {self._api_key or PLACEHOLDER_API_KEY}"},
            timeout=self.timeout,
        )

    def _new_state(self) -> _StreamState:
        return _StreamState()

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
            key = "max_completion_tokens" if self.host == OPENAI_HOST else "max_tokens"
            kwargs[key] = self.max_tokens
        return kwargs
