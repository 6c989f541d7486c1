"""Stored frames: the rows of frames numbered by the sequencer, inserted without compiling."""

from __future__ import annotations

from typing import Any

from django.db import transaction

from profiles.prepared import Insert

from ..frames import for_storage
from ..models import ConversationEvent


def event_rows(
    conv_id: Any, turn_id: Any, frames: list[dict[str, Any]], *, turn_text: str | None = None
) -> list[ConversationEvent]:
    """`turn_text`: the turn's whole text, for frames stored with its end (`frames.for_storage`)."""
    return [
        ConversationEvent(
            conversation_id=conv_id, seq=f["seq"], type=f["type"], turn_id=turn_id, frame=for_storage(f, turn_text)
        )
        for f in frames
    ]


events_insert = Insert(ConversationEvent, holdable=True)  # profiles.prepared: compiled once


@transaction.atomic
def events_store(*, conv_id: Any, frames: list[dict[str, Any]], turn_id: Any = None) -> None:
    """Store frames numbered by the sequencer (one INSERT for all of them)."""
    events_insert(event_rows(conv_id, turn_id, frames))
