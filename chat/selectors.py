"""Reads of conversations and turns (a profile's per-version metrics are in `chat.stats`)."""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

from django.core.exceptions import ValidationError
from django.db import connection
from django.db.models import (
    Count,
    Exists,
    IntegerField,
    Max,
    Min,
    OuterRef,
    Q,
    QuerySet,
    Subquery,
)
from django.db.models.functions import Coalesce

from profiles.arms import RolloutSubject
from profiles.errors import NotFound, NotVisible
from profiles.mounts import Mount
from profiles.prepared import Param, Select
from profiles.resolution import Resolution
from profiles.selectors import current_profile, profile_resolve, profile_resolve_at

from . import frames
from .errors import ConversationForbidden
from .models import Conversation, ConversationEvent, Turn, TurnChunk, TurnFeedback


def conversation_list(*, user: Any, mount: Mount, q: str = "", archived: bool | None = False) -> QuerySet[Conversation]:
    """The user's conversations of the mount, newest first, each with its `turn_count`.

    `q`: only those whose title, or a prompt or answer of one of their turns, contains it (case-insensitive,
    in the database: one EXISTS subquery, so a page costs the same queries whatever the match).
    `archived`: False (default) the ones not archived, True the archived ones, None both. The conversations
    of evaluation runs (`purpose`) are in no list."""
    rows = Conversation.objects.filter(owner=user, mount=mount.name, purpose="")
    if archived is not None:
        rows = rows.filter(archived_at_ms__isnull=not archived)
    if q:
        in_turns = Turn.objects.filter(conversation_id=OuterRef("pk")).filter(
            Q(prompt__icontains=q) | Q(text__icontains=q)
        )
        rows = rows.filter(Q(title__icontains=q) | Exists(in_turns))
    turns = Turn.objects.filter(conversation_id=OuterRef("pk")).order_by().values("conversation_id")
    turn_count = Subquery(turns.annotate(n=Count("pk")).values("n"), output_field=IntegerField())
    return rows.annotate(turn_count=Coalesce(turn_count, 0)).order_by("-created_at_ms")


def turn_get(*, turn_id: Any) -> Turn:
    return Turn.objects.get(pk=turn_id)


def database_answers() -> bool:
    """One round trip: whether the database answers (the timer asks between checkpoints while turns run)."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")
    return True


def turn_if_finished(*, turn_id: Any) -> Turn | None:
    """The turn once it has finished (completed, failed, cancelled, interrupted), else None."""
    return _FINISHED_TURN.first(turn_id=turn_id)


_FINISHED_TURN = Select(lambda: Turn.objects.filter(pk=Param("turn_id"), status__in=Turn.FINISHED).order_by()[:1])


def conversation_turn_get(*, conversation: Conversation, turn_id: Any) -> Turn:
    """One turn of the conversation (its full runtime record), or NotFound."""
    turn = Turn.objects.filter(conversation_id=conversation.pk, pk=turn_id).first()
    if turn is None:
        raise NotFound("turn not found in this conversation", field="turn_id")
    return with_feedback(with_text_so_far([turn]), user_id=conversation.owner_id)[0]


def with_text_so_far(turns: list[Turn]) -> list[Turn]:
    """Running turns with the text their checkpoints stored (`Turn.text` + its chunks, in memory only):
    one more query when one of `turns` runs, none otherwise."""
    running = {turn.pk: turn for turn in turns if turn.status == Turn.Status.RUNNING}
    if running:
        for turn_id, text in (
            TurnChunk.objects.filter(turn_id__in=list(running)).order_by("start").values_list("turn_id", "text")
        ):
            running[turn_id].text += text
    return turns


def with_feedback(turns: list[Turn], *, user_id: Any) -> list[Turn]:
    """Each turn with `caller_feedback`, the user's rating of it or None (in memory; one query, none
    for no turns). Only a conversation's owner reads its turns, so the reads pass the owner."""
    if turns:
        given = {f.turn_id: f for f in TurnFeedback.objects.filter(user_id=user_id, turn_id__in=[t.pk for t in turns])}
        for turn in turns:
            turn.caller_feedback = given.get(turn.pk)
    return turns


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
    turns = with_feedback(with_text_so_far(newest[:limit][::-1]), user_id=conversation.owner_id)
    return TurnsPage(turns=turns, more=more, before_seq=turns[0].seq if more else None)


# Compiled once (`profiles.prepared`): every replay (a socket that joins, a stream, a poll) reads them.
def _events(*, upto: bool) -> Select:
    def build() -> Any:
        rows = ConversationEvent.objects.filter(conversation_id=Param("conv_id"), seq__gt=Param("since_seq"))
        if upto:
            rows = rows.filter(seq__lte=Param("upto_seq"))
        return rows.order_by("seq").values_list("frame", "turn__text")

    return Select(build, limit="limit")


_EVENTS_AFTER, _EVENTS_BETWEEN = _events(upto=False), _events(upto=True)
_ACTIVE_TURN = Select(lambda: Conversation.objects.filter(pk=Param("conv_id")).order_by().values_list("active_turn_id"))


def events_after(*, conv_id: Any, since_seq: int, upto_seq: int | None, limit: int) -> tuple[list[dict], bool]:
    """Stored frames with since_seq < seq (<= upto_seq), oldest first, at most `limit`; and whether more remain."""
    window = {"conv_id": conv_id, "since_seq": since_seq, "limit": limit + 1}
    stored = _EVENTS_AFTER.rows(**window) if upto_seq is None else _EVENTS_BETWEEN.rows(**window, upto_seq=upto_seq)
    return [frames.from_storage(frame, text) for frame, text in stored[:limit]], len(stored) > limit


def conversation_active_turn(*, conv_id: Any) -> Any:
    row = _ACTIVE_TURN.row(conv_id=conv_id)
    return row[0] if row else None


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


_CONVERSATION = Select(lambda: Conversation.objects.filter(pk=Param("conv_id")).order_by()[:1])


def conversation_find(*, conv_id: Any) -> Conversation | None:
    """The conversation with this id, whoever's it is (None: no such row, or not an id)."""
    try:
        return _CONVERSATION.first(conv_id=conv_id)
    except (ValueError, ValidationError):
        return None


def conversation_get(*, conv_id: Any, user: Any, mount: Mount) -> Conversation:
    conversation = conversation_find(conv_id=conv_id)
    if conversation is None:
        raise NotFound("conversation not found", field="conv_id")
    return conversation_check(conversation, user=user, mount=mount)


def conversation_check(conversation: Conversation, *, user: Any, mount: Mount) -> Conversation:
    """The conversation, if `user` may open it in `mount`: theirs (else 403), and of that mount (else 404)."""
    if conversation.owner_id != user.pk:
        raise ConversationForbidden("this conversation belongs to another user", field="conv_id")
    if conversation.mount != mount.name:
        raise NotFound(f"conversation not found in the {mount.name} app", field="conv_id")
    return conversation


def mount_default_registry(conversation: Conversation) -> str:
    """The default registry of the conversation's mount."""
    from profiles.mounts import get_mount

    return get_mount(conversation.mount).default_registry


def conversation_ref(conversation: Conversation) -> str:
    """The conversation's own selection as a ref (`slug`, `slug@3`, `slug@label`), or ""."""
    if not conversation.selected_profile:
        return ""
    at = conversation.selected_at
    return f"{conversation.selected_profile}@{at}" if at else conversation.selected_profile


def conversation_subject(conversation: Conversation, user: Any) -> RolloutSubject:
    """Who a rollout picks an arm for in this conversation: its owner and itself, with the arm it runs on
    (kept for its life while that rollout is active)."""
    kept = None
    if conversation.rollout_id is not None and conversation.rollout_version is not None:
        kept = (conversation.rollout_id, conversation.rollout_version)
    return RolloutSubject(user_id=getattr(user, "pk", None), conversation_id=conversation.pk, kept=kept)


def conversation_resolve(*, conversation: Conversation, user: Any, request_overrides: Any = None) -> Resolution:
    """The conversation's own selection, else the user's current profile for the mount (their selection,
    else their first group's default), else the default; a label's rollout picks the arm for the
    conversation (`conversation_subject`).

    The selection is a ref: `slug` follows the serving label or the latest version, `slug@3` stays on
    version 3, `slug@label` follows the label. A selection that no longer resolves (its profile, label or
    version is gone, or the user may no longer use it) falls back to its registry's default: never an
    error for the user. The next turn then says so with `runtime.switched` (`access_revoked` when the
    user lost the right to use it: `Resolution.fallback`). When the fingerprint moved away from the
    conversation's and the profile is stacked, the lineage it ran on before comes along
    (`Resolution.previous_lineage`, one query), so the switch can name the layer that changed; with tools
    from MCP servers, so do their schema hashes (`previous_tool_schemas`: `tools_changed`).
    """
    default_registry = mount_default_registry(conversation)
    subject = conversation_subject(conversation, user)
    resolution = None
    if conversation.selected_profile:
        try:
            resolution = profile_resolve(
                registry_slug=conversation.selected_registry,
                profile_slug=conversation_ref(conversation),
                request_overrides=request_overrides,
                user=user,
                subject=subject,
            )
        except NotFound as exc:
            if exc.field == "slug":
                resolution = profile_resolve(
                    registry_slug=conversation.selected_registry, request_overrides=request_overrides, subject=subject
                )
                if isinstance(exc, NotVisible):
                    resolution = replace(resolution, fallback="access_revoked")
            # The registry itself is gone: follow the user's current profile.
    elif conversation.selected_registry:
        default_registry = conversation.selected_registry
    if resolution is None:
        current = current_profile(user=user, mount=conversation.mount, default_registry=default_registry)
        resolution = profile_resolve_at(at=current.at, request_overrides=request_overrides, subject=subject)
        if current.access_revoked:
            resolution = replace(resolution, fallback="access_revoked")
    before = conversation.current_fingerprint
    if before and before != resolution.fingerprint and (len(resolution.lineage) > 1 or resolution.tool_schemas):
        record = (
            Turn.objects.filter(conversation_id=conversation.pk, fingerprint=before)
            .order_by("-seq")
            .values_list("runtime_config", flat=True)
            .first()
        ) or {}
        if record.get("lineage"):
            resolution = replace(resolution, previous_lineage=tuple(record["lineage"]))
        if resolution.tool_schemas:
            resolution = replace(resolution, previous_tool_schemas=record.get("tool_schemas") or {})
    return resolution


def conversation_history(*, conversation: Conversation, before_seq: int, limit: int) -> list[tuple[str, str]]:
    """(prompt, reply) of the last `limit` turns that finished with a reply, oldest first. The window
    is in the query: a long conversation never loads its whole past."""
    rows = _HISTORY.rows(conv_id=conversation.pk, before_seq=before_seq, limit=limit)
    return list(reversed(rows))


_HISTORY = Select(
    lambda: (
        Turn.objects.filter(conversation_id=Param("conv_id"), seq__lt=Param("before_seq"), status=Turn.Status.COMPLETED)
        .filter(replaced_by__isnull=True)  # a regenerated or edited turn is replaced by its successor
        .order_by("-seq")
        .values_list("prompt", "text")
    ),
    limit="limit",
)


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
