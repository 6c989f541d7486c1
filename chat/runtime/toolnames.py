"""Tool names as providers accept them. Plain Python.

OpenAI and Anthropic take tool names of 1-64 characters from `[A-Za-z0-9_-]`; a profile's tools may be
named otherwise (`mcp:acme/add`). `ProviderNames` gives each offered tool a name the provider accepts,
stable and unique within the request (`mcp_acme_add`, with a short hash when that is taken or too long),
and maps the names of the calls the provider asks for back to the tools' own names.
"""

from __future__ import annotations

import dataclasses
import hashlib
import re
from collections.abc import Iterable

from .base import Message, ToolCall, ToolCallsRequested, ToolSpec

_ACCEPTED = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
_OTHER = re.compile(r"[^A-Za-z0-9_-]+")


class ProviderNames:
    def __init__(self, names: Iterable[str]) -> None:
        names = list(dict.fromkeys(names))
        self.wire: dict[str, str] = {name: name for name in names if _ACCEPTED.match(name)}
        taken = set(self.wire.values())
        for name in names:
            if name in self.wire:
                continue
            wire = _OTHER.sub("_", name).strip("_")[:64] or "tool"
            if wire in taken:
                wire = f"{wire[:55]}_{hashlib.sha256(name.encode('utf-8', 'surrogatepass')).hexdigest()[:8]}"
            self.wire[name] = wire
            taken.add(wire)
        self.back = {wire: name for name, wire in self.wire.items()}

    @property
    def renames(self) -> bool:
        return any(name != wire for name, wire in self.wire.items())

    def specs(self, tools: list[ToolSpec]) -> list[ToolSpec]:
        return [dataclasses.replace(t, name=self.wire.get(t.name, t.name)) for t in tools]

    def messages(self, messages: list[Message]) -> list[Message]:
        """The tool calls of earlier rounds under the names the provider was given."""
        out = []
        for message in messages:
            if message.tool_calls:
                calls = [dataclasses.replace(c, name=self.wire.get(c.name, c.name)) for c in message.tool_calls]
                message = dataclasses.replace(message, tool_calls=calls)
            if message.role == "tool" and message.name:
                message = dataclasses.replace(message, name=self.wire.get(message.name, message.name))
            out.append(message)
        return out

    def calls(self, event: ToolCallsRequested) -> ToolCallsRequested:
        """The calls asked for, under the tools' own names (an unknown name stays: the runner refuses it)."""
        calls = [ToolCall(c.call_id, self.back.get(c.name, c.name), c.arguments) for c in event.calls]
        return ToolCallsRequested(calls, usage=event.usage)
