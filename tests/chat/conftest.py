"""Shared, framework-free helpers for the chat runtime tests: a recording `emit` and a TurnContext factory."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from chat.runtime.base import Message, TurnContext


class RecordingEmit:
    """An async `emit` that keeps every frame it is given, in order."""

    def __init__(self) -> None:
        self.frames: list[tuple[str, dict[str, Any]]] = []

    async def __call__(self, frame_type: str, data: dict[str, Any]) -> None:
        self.frames.append((frame_type, data))

    def of_type(self, frame_type: str) -> list[dict[str, Any]]:
        return [data for kind, data in self.frames if kind == frame_type]

    @property
    def events(self) -> list[dict[str, Any]]:
        """The data of the `middleware.event` frames."""
        return self.of_type("middleware.event")


@pytest.fixture
def recording_emit() -> RecordingEmit:
    return RecordingEmit()


@pytest.fixture
def turn_context(recording_emit: RecordingEmit) -> Callable[..., TurnContext]:
    """Build a TurnContext whose messages are `history` + the user's `prompt`, emitting to `recording_emit`."""

    def make(
        prompt: str = "Hello",
        *,
        history: list[Message] | None = None,
        system_prompt: str = "You are a concise assistant.",
        state: dict[str, Any] | None = None,
    ) -> TurnContext:
        return TurnContext(
            conv_id="conv-1",
            turn_id="turn-1",
            prompt=prompt,
            messages=[*(history or []), Message(role="user", content=prompt)],
            system_prompt=system_prompt,
            emit=recording_emit,
            state=dict(state or {}),
        )

    return make
