"""Ratings of answers, and the rollout guard they (and finished turns) wake."""

from __future__ import annotations

import logging
from typing import Any

from django.db import transaction

from profiles.errors import Conflict, InvalidInput
from profiles.services import rollout_guard_check
from profiles.validation import ensure_storable

from ..models import Conversation, Turn, TurnFeedback
from ..selectors import conversation_turn_get
from .common import MAX_FEEDBACK_COMMENT_CHARS

log = logging.getLogger(__name__)


def rollout_judge(*, rollout_id: int) -> None:
    """A turn of a rollout's arm ended or was rated: the rollout's guard judges its arms now
    (`profiles.services.rollout_guard_check`). A guard that cannot be checked now (the database went
    away) is checked again at the arm's next turn or rating; the caller's write stands either way."""
    try:
        rollout_guard_check(rollout_id=rollout_id)
    except Exception:
        log.exception("the guard of rollout %s could not be checked", rollout_id)


@transaction.atomic
def turn_feedback_set(
    *, conversation: Conversation, user: Any, turn_id: Any, rating: Any, comment: Any = ""
) -> TurnFeedback:
    """The user's rating of a finished turn of their conversation (`up` or `down`, an optional comment),
    replacing the one they gave before. The conversation comes from `selectors.conversation_get`, which
    answers for another user's conversation."""
    if rating not in TurnFeedback.Rating.values:
        raise InvalidInput('rating must be "up" or "down"', field="rating")
    comment = "" if comment is None else comment
    if not isinstance(comment, str) or len(comment) > MAX_FEEDBACK_COMMENT_CHARS:
        raise InvalidInput(
            f"comment must be a string of at most {MAX_FEEDBACK_COMMENT_CHARS} characters", field="comment"
        )
    ensure_storable(comment, field="comment")
    turn = conversation_turn_get(conversation=conversation, turn_id=turn_id)
    if turn.status not in Turn.FINISHED:
        raise Conflict("the turn has not finished yet: feedback is on an answer", field="turn_id")
    feedback, _ = TurnFeedback.objects.update_or_create(
        turn=turn, user=user, defaults={"rating": rating, "comment": comment.strip()}
    )
    if turn.rollout_id is not None:  # a rating counts against the arm's thumbs-down bound
        rollout_id = turn.rollout_id
        transaction.on_commit(lambda: rollout_judge(rollout_id=rollout_id))
    return feedback


@transaction.atomic
def turn_feedback_delete(*, conversation: Conversation, user: Any, turn_id: Any) -> None:
    """Withdraw the user's rating of a turn of their conversation (nothing to withdraw is not an error)."""
    turn = conversation_turn_get(conversation=conversation, turn_id=turn_id)
    TurnFeedback.objects.filter(turn=turn, user=user).delete()
