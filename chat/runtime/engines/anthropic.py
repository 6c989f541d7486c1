"""Engine for Anthropic's Messages API (and servers speaking it), through the official SDK.

Streaming, tool use (tool_use / tool_result rounds) and the system prompt as the top-level `system`.
Every provider failure becomes an `EngineError` whose message never carries the API key, like the
OpenAI engine's. The SDK reads credentials, a base URL and extra headers from the process environment
when it is not given them: this engine always passes them, so only the server's settings decide what
is sent and where (see `build_engine`).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from typing import Any

import anthropic
import httpx2

from chat.runtime.base import (
    EngineDone,
    EngineError,
    EngineEvent,
    Message,
    ToolCall,
    ToolCallsRequested,
    ToolSpec,
)

from .sdk import PLACEHOLDER_API_KEY, SDKEngine, url_host

DEFAULT_BASE_URL = "https://api.anthropic.com"
# The Messages API requires max_tokens; used when the profile sets no `ai-max-response-tokens`.
DEFAULT_MAX_TOKENS = 4096
ANTHROPIC_HOST = "api.anthropic.com"
_USAGE_FIELDS = ("input_tokens", "cache_creation_input_tokens", "cache_read_input_tokens", "output_tokens")
# Anthropic's stop reasons -> the runtime's (the OpenAI engine's vocabulary): "stop", "length", ...
_STOP_REASONS = {
    "end_turn": "stop",
    "stop_sequence": "stop",
    "max_tokens": "length",
    "model_context_window_exceeded": "length",
    "tool_use": "tool_calls",
}


def base_url_host(base_url: str | None) -> str:
    """host[:port] of a base URL (never its user-info), or Anthropic's host."""
    return url_host(base_url, ANTHROPIC_HOST)


def _text_block(text: str) -> list[dict[str, Any]]:
    # The API refuses empty text blocks.
    return [{"type": "text", "text": text}] if text else []


def to_anthropic_request(messages: list[Message]) -> tuple[str, list[dict[str, Any]]]:
    """Runtime messages -> (system prompt, Messages API messages).

    System messages become the top-level `system`; assistant tool calls become `tool_use` blocks; tool
    results become `tool_result` blocks of a user message. Consecutive messages of one role are merged
    (the API wants user and assistant to alternate, and all results of a round in one user message);
    a message left with a single text block is sent as a plain string.
    """
    system: list[str] = []
    turns: list[tuple[str, list[dict[str, Any]]]] = []
    for message in messages:
        if message.role == "system":
            if message.content:
                system.append(message.content)
            continue
        if message.role == "tool":
            role = "user"
            blocks = [{"type": "tool_result", "tool_use_id": message.tool_call_id or "", "content": message.content}]
        elif message.role == "assistant":
            role = "assistant"
            blocks = _text_block(message.content) + [
                {"type": "tool_use", "id": call.call_id, "name": call.name, "input": call.arguments}
                for call in message.tool_calls
            ]
        else:
            role = "user"
            blocks = _text_block(message.content)
        if not blocks:
            continue
        if turns and turns[-1][0] == role:
            turns[-1][1].extend(blocks)
        else:
            turns.append((role, blocks))
    out: list[dict[str, Any]] = []
    for role, blocks in turns:
        if len(blocks) == 1 and blocks[0]["type"] == "text":
            out.append({"role": role, "content": blocks[0]["text"]})
        else:
            out.append({"role": role, "content": blocks})
    return "\n\n".join(system), out


def to_anthropic_tools(tools: list[ToolSpec]) -> list[dict[str, Any]]:
    """ToolSpecs -> Messages API client tools."""
    return [{"name": t.name, "description": t.description, "input_schema": t.parameters} for t in tools]


def _env_headers_omitted() -> dict[str, Any]:
    """The SDK adds the headers of ANTHROPIC_CUSTOM_HEADERS to every request, whatever the base URL:
    omit them, so nothing from the environment reaches a server but what the settings say."""
    raw = os.environ.get("ANTHROPIC_CUSTOM_HEADERS")
    if raw is None:
        return {}
    names = [line[: line.find(":")].strip() for line in raw.split("\n") if ":" in line]
    return {name: anthropic.omit for name in names if name}


@dataclass
class _PartialToolUse:
    call_id: str
    name: str
    arguments: str = ""
    initial: dict[str, Any] | None = None


@dataclass
class _StreamState:
    """Accumulates one streamed round: text is passed through, tool_use input JSON is joined per block."""

    calls: dict[int, _PartialToolUse] = field(default_factory=dict)
    stop_reason: str | None = None
    stopped: bool = False
    tokens: dict[str, int] = field(default_factory=dict)
    events: int = 0

    def feed(self, event: Any) -> str:
        """Absorb one stream event; return its text (may be empty). Raises EngineError on an invalid one."""
        self.events += 1
        try:
            return self._feed(event)
        except (AttributeError, TypeError, ValueError, KeyError) as exc:
            raise EngineError("malformed_stream", f"invalid event #{self.events} from the provider") from exc

    def _usage(self, usage: Any) -> None:
        """Counts are cumulative: per field, the last one seen is the round's."""
        if usage is None:
            return
        for key in _USAGE_FIELDS:
            value = getattr(usage, key, None)
            if value is not None:
                self.tokens[key] = int(value)

    def _feed(self, event: Any) -> str:
        kind = event.type
        if kind == "message_start":
            self._usage(getattr(event.message, "usage", None))
        elif kind == "content_block_start":
            block = event.content_block
            if block.type == "tool_use":
                if not isinstance(event.index, int):
                    raise TypeError("content block index is not an integer")
                initial = getattr(block, "input", None)
                self.calls[event.index] = _PartialToolUse(
                    call_id=str(block.id or ""),
                    name=str(block.name or ""),
                    initial=initial if isinstance(initial, dict) and initial else None,
                )
            elif block.type == "text":
                text = block.text or ""
                if not isinstance(text, str):
                    raise TypeError("text is not a string")
                return text
        elif kind == "content_block_delta":
            delta = event.delta
            if delta.type == "text_delta":
                if not isinstance(delta.text, str):
                    raise TypeError("text is not a string")
                return delta.text
            if delta.type == "input_json_delta":
                call = self.calls.get(event.index)
                if call is None:
                    raise ValueError("input_json_delta for a block that is not a tool_use")
                if not isinstance(delta.partial_json, str):
                    raise TypeError("partial_json is not a string")
                call.arguments += delta.partial_json
            # thinking, signature and citation deltas carry nothing the runtime shows
        elif kind == "message_delta":
            if event.delta.stop_reason is not None:
                if not isinstance(event.delta.stop_reason, str):
                    raise TypeError("stop_reason is not a string")
                self.stop_reason = event.delta.stop_reason
            self._usage(getattr(event, "usage", None))
        elif kind == "message_stop":
            self.stopped = True
        # content_block_stop and event types added later carry nothing the runtime needs
        return ""

    @property
    def usage(self) -> dict[str, int]:
        """The round's usage in the runtime's keys (those of the OpenAI engine)."""
        if not self.tokens:
            return {}
        # Input tokens read from or written to the prompt cache are input tokens too.
        prompt = sum(self.tokens.get(key, 0) for key in _USAGE_FIELDS if key != "output_tokens")
        completion = self.tokens.get("output_tokens", 0)
        return {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}

    def finish(self) -> EngineEvent:
        """The last event of the round: ToolCallsRequested, EngineDone, or EngineError if incomplete."""
        if self.stop_reason is None or not self.stopped:
            raise EngineError("malformed_stream", "the provider's stream ended before the reply was finished")
        if self.calls:
            calls = []
            for index in sorted(self.calls):
                partial = self.calls[index]
                if not partial.name:
                    raise EngineError("malformed_stream", "the provider streamed a tool call without a name")
                try:
                    if partial.arguments.strip():
                        arguments = json.loads(partial.arguments)
                    else:
                        arguments = dict(partial.initial or {})
                except ValueError:
                    raise EngineError(
                        "malformed_stream", f"the provider sent invalid JSON arguments for tool {partial.name}"
                    ) from None
                if not isinstance(arguments, dict):
                    raise EngineError("malformed_stream", f"arguments for tool {partial.name} are not a JSON object")
                calls.append(
                    ToolCall(call_id=partial.call_id or f"toolu_{index}", name=partial.name, arguments=arguments)
                )
            return ToolCallsRequested(calls, usage=self.usage)
        return EngineDone(stop_reason=_STOP_REASONS.get(self.stop_reason, self.stop_reason), usage=self.usage)


class AnthropicEngine(SDKEngine):
    """Streams one model round from Anthropic's Messages API through the official SDK.

    Sampling settings (`ai-temperature`, `ai-top-p`) are not sent: the API version the SDK speaks
    (2026-10-21) refuses them. The API requires `max_tokens`: DEFAULT_MAX_TOKENS when the profile sets none.
    """

    provider = "anthropic"
    timeout_errors = (anthropic.APITimeoutError, httpx2.TimeoutException)
    connection_errors = (anthropic.APIConnectionError, httpx2.TransportError)
    status_errors = (anthropic.APIStatusError,)
    api_errors = (anthropic.APIError,)
    wrapping_errors = (anthropic.APIConnectionError,)
    default_host = ANTHROPIC_HOST
    key_setting = "ANTHROPIC_API_KEY"
    base_url_setting = "anthropic-chat.anthropic-base-url"

    def __init__(
        self,
        model: str,
        *,
        api_key: str,
        base_url: str | None,
        timeout: float,
        max_tokens: int | None = None,
        total_timeout: float | None = None,
    ) -> None:
        super().__init__(
            model,
            api_key=api_key,
            base_url=base_url,
            timeout=timeout,
            max_tokens=int(max_tokens) if max_tokens is not None else DEFAULT_MAX_TOKENS,
            total_timeout=total_timeout,
        )

    def _new_client(self) -> anthropic.AsyncAnthropic:
        """The key, base URL and headers are always given, so the SDK never takes them from the process
        environment (ANTHROPIC_API_KEY, ANTHROPIC_AUTH_TOKEN, profiles, ANTHROPIC_BASE_URL, ...)."""
        return anthropic.AsyncAnthropic(
            api_key=self._api_key or PLACEHOLDER_API_KEY,
            base_url=self.base_url or DEFAULT_BASE_URL,
            timeout=self.timeout,
            max_retries=0,
            default_headers=_env_headers_omitted(),
        )

    async def _open(self, client: anthropic.AsyncAnthropic, messages: list[Message], tools: list[ToolSpec]) -> Any:
        return await client.messages.create(**self._request_kwargs(messages, tools))

    def _new_state(self) -> _StreamState:
        return _StreamState()

    def _request_kwargs(self, messages: list[Message], tools: list[ToolSpec]) -> dict[str, Any]:
        system, converted = to_anthropic_request(messages)
        kwargs: dict[str, Any] = {
            "model": self.model,
            "messages": converted,
            "max_tokens": self.max_tokens,
            "stream": True,
        }
        if system:
            kwargs["system"] = system
        if tools:
            kwargs["tools"] = to_anthropic_tools(tools)
        return kwargs
