"""Reads of conversations and turns for the REST API."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from django.db.models import Max, Min, Q, QuerySet

from profiles.errors import NotFound
from profiles.mounts import Mount
from profiles.resolution import Resolution
from profiles.selectors import current_profile, profile_resolve, profile_resolve_loaded

from .errors import ConversationForbidden
from .models import Conversation, ConversationEvent, Turn


def conversation_list(*, user: Any, mount: Mount) -> QuerySet[Conversation]:
    return Conversation.objects.filter(owner=user, mount=mount.name).order_by("-created_at_ms")


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


def conversation_running_turn_id(*, conv_id: Any) -> Any:
    """The id of the conversation's running turn (on whichever worker), or None."""
    return Turn.objects.filter(conversation_id=conv_id, status=Turn.Status.RUNNING).values_list("pk", flat=True).first()


def conversation_replay_from(*, conversation: Conversation) -> int:
    """The seq up to which a conversation's frames are reflected in its stored turns: just before the
    first frame of its first unfinished turn, else its last stored frame. A client replays after it."""
    events = ConversationEvent.objects.filter(conversation=conversation)
    first_open = events.filter(turn__status__in=[Turn.Status.QUEUED, Turn.Status.RUNNING]).aggregate(m=Min("seq"))["m"]
    if first_open is not None:
        return first_open - 1
    return events.aggregate(m=Max("seq"))["m"] or 0


def conversation_get(*, conv_id: Any, user: Any, mount: Mount) -> Conversation:
    try:
        conversation = Conversation.objects.get(pk=conv_id)
    except (Conversation.DoesNotExist, ValueError):
        raise NotFound("conversation not found", field="conv_id") from None
    if conversation.owner_id != user.pk:
        raise ConversationForbidden("this conversation belongs to another user", field="conv_id")
    if conversation.mount != mount.name:
        raise NotFound(f"conversation not found in the {mount.name} app", field="conv_id")
    return conversation


def mount_default_registry(conversation: Conversation) -> str:
    """The default registry of the conversation's mount."""
    from profiles.mounts import get_mount

    return get_mount(conversation.mount).default_registry


def conversation_resolve(*, conversation: Conversation, user: Any, request_overrides: Any = None) -> Resolution:
    """The conversation's own selection, else the user's current profile for the mount, else the default.

    A selection that no longer resolves (its profile was deleted) falls back to its registry's
    default: never an error for the user. The next turn then says so with `runtime.switched`.
    """
    default_registry = mount_default_registry(conversation)
    if conversation.selected_profile:
        try:
            return profile_resolve(
                registry_slug=conversation.selected_registry,
                profile_slug=conversation.selected_profile,
                request_overrides=request_overrides,
            )
        except NotFound as exc:
            if exc.field == "slug":
                return profile_resolve(
                    registry_slug=conversation.selected_registry, request_overrides=request_overrides
                )
            # The registry itself is gone: follow the user's current profile.
    elif conversation.selected_registry:
        default_registry = conversation.selected_registry
    current = current_profile(user=user, mount=conversation.mount, default_registry=default_registry)
    return profile_resolve_loaded(
        registry=current.registry, profile=current.profile, request_overrides=request_overrides
    )


def conversation_history(*, conversation: Conversation, before_seq: int, limit: int) -> list[tuple[str, str]]:
    """(prompt, reply) of the last `limit` turns that finished with a reply, oldest first. The window
    is in the query: a long conversation never loads its whole past."""
    rows = (
        Turn.objects.filter(conversation=conversation, seq__lt=before_seq, status=Turn.Status.COMPLETED)
        .order_by("-seq")
        .values_list("prompt", "text")[:limit]
    )
    return list(reversed(rows))


def turn_next_queued(*, conv_id: Any) -> Turn | None:
    """The oldest queued turn of the conversation, with its conversation and owner (the runner needs both)."""
    return (
        Turn.objects.select_related("conversation__owner")
        .filter(conversation_id=conv_id, status=Turn.Status.QUEUED)
        .order_by("seq")
        .first()
    )


def conversations_with_queued_turns() -> list[Any]:
    return list(
        Conversation.objects.filter(Q(active_turn__isnull=True), turns__status=Turn.Status.QUEUED)
        .values_list("pk", flat=True)
        .distinct()
    )
