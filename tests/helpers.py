"""Helpers shared by every test package."""

from __future__ import annotations

from typing import Any


class RecordingEmit:
    """An async `emit` (runtime contract) that keeps every frame it is given, in order."""

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
