"""Reads of conversations and turns for the REST API."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from django.db.models import Max, Min, QuerySet

from profiles.mounts import Mount

from .models import Conversation, ConversationEvent, Turn


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


def events_after(*, conv_id: Any, since_seq: int, upto_seq: int | None, limit: int) -> tuple[list[dict], bool]:
    """Stored frames with since_seq < seq (<= upto_seq), oldest first, at most `limit`; and whether more remain."""
    rows = ConversationEvent.objects.filter(conversation_id=conv_id, seq__gt=since_seq)
    if upto_seq is not None:
        rows = rows.filter(seq__lte=upto_seq)
    frames = list(rows.order_by("seq").values_list("frame", flat=True)[: limit + 1])
    return frames[:limit], len(frames) > limit


def conversation_active_turn(*, conv_id: Any) -> Any:
    return Conversation.objects.filter(pk=conv_id).values_list("active_turn_id", flat=True).first()


def conversation_replay_from(*, conversation: Conversation) -> int:
    """The seq up to which a conversation's frames are reflected in its stored turns: just before the
    first frame of its first unfinished turn, else its last stored frame. A client replays after it."""
    events = ConversationEvent.objects.filter(conversation=conversation)
    first_open = events.filter(turn__status__in=[Turn.Status.QUEUED, Turn.Status.RUNNING]).aggregate(m=Min("seq"))["m"]
    if first_open is not None:
        return first_open - 1
    return events.aggregate(m=Max("seq"))["m"] or 0
