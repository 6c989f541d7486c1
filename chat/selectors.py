"""Reads of conversations and turns for the REST API."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from django.db.models import QuerySet

from profiles.mounts import Mount

from .models import Conversation, Turn


def conversation_list(*, user: Any, mount: Mount) -> QuerySet[Conversation]:
    return Conversation.objects.filter(owner=user, mount=mount.name).order_by("-created_at")


def turn_get(*, turn_id: Any) -> Turn:
    return Turn.objects.get(pk=turn_id)


TURNS_PAGE_DEFAULT = 50
TURNS_PAGE_MAX = 200


@dataclass(frozen=True)
class TurnsPage:
    turns: list[Turn]  # ascending seq
    more: bool  # turns older than turns[0] exist
    before_seq: int | None  # pass as `before_seq` for the next older page; None when there is none


def conversation_turns_page(
    *, conversation: Conversation, before_seq: int | None = None, limit: int = TURNS_PAGE_DEFAULT
) -> TurnsPage:
    """The newest `limit` turns (with seq < `before_seq` if given), in ascending seq order.

    One bounded query: ORDER BY seq DESC LIMIT limit + 1 on the (conversation, seq) unique index;
    the extra row only tells whether older turns exist.
    """
    rows = Turn.objects.filter(conversation_id=conversation.pk)
    if before_seq is not None:
        rows = rows.filter(seq__lt=before_seq)
    newest = list(rows.order_by("-seq")[: limit + 1])
    more = len(newest) > limit
    turns = newest[:limit][::-1]
    return TurnsPage(turns=turns, more=more, before_seq=turns[0].seq if more else None)
