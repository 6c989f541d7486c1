"""Reads of the gateway: the models a mount serves (profiles) and a finished turn."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from profiles.access import visible_filter
from profiles.models import Profile
from profiles.mounts import Mount

from .. import frames
from ..models import ConversationEvent, Turn


@dataclass(frozen=True)
class ModelRow:
    registry: str
    slug: str
    created_at_ms: int
    display_name: str = ""
    description: str = ""
    label: str | None = None  # listed as `slug@label` (an API key's label scope)


ROW_FIELDS = ("registry__slug", "slug", "created_at_ms", "display_name", "description")


def model_list(*, mount: Mount, user: Any) -> list[ModelRow]:
    """Every profile of every registry that `user` may use (its `visible_to_groups`, like the profile
    API): the mount's default registry first, then the others, each in slug order. One query."""
    rows = Profile.objects.all()
    visible = visible_filter(user)
    if visible is not None:
        rows = rows.filter(visible)
    columns = rows.order_by("registry__slug", "slug").values_list(*ROW_FIELDS)
    models = [ModelRow(*row) for row in columns]
    return sorted(models, key=lambda m: m.registry != mount.default_registry)  # stable: keeps slug order


def model_get(*, registry: str, slug: str, user: Any) -> ModelRow | None:
    rows = Profile.objects.filter(registry__slug=registry, slug=slug)
    visible = visible_filter(user)
    if visible is not None:
        rows = rows.filter(visible)
    row = rows.values_list(*ROW_FIELDS).first()
    return ModelRow(*row) if row else None


# What an answer shows of its turn: not the runtime record's JSON (decoded for nothing on every answer).
IDENTITY_FIELDS = ("id", "registry", "profile_slug", "profile_version", "fingerprint", "created_at_ms")
ANSWER_FIELDS = (*IDENTITY_FIELDS, "status", "text", "usage", "error")


def turn_identity(*, turn_id: Any) -> Turn:
    """The started turn's id, model and fingerprint (its record), for the first chunk of a stream."""
    return Turn.objects.only(*IDENTITY_FIELDS).get(pk=turn_id)


@dataclass(frozen=True)
class TurnResult:
    turn: Turn  # the stored row: runtime record, text, usage, status, error
    terminal: dict[str, Any] | None  # the data of its stored terminal frame (`stop_reason`), if stored yet


def turn_result(*, turn_id: Any) -> TurnResult | None:
    """The turn once it has finished (completed, failed, cancelled, interrupted), else None."""
    turn = Turn.objects.only(*ANSWER_FIELDS).filter(pk=turn_id).order_by().first()  # no ordering: it joins
    if turn is None or turn.status not in Turn.FINISHED:
        return None
    frame = (
        ConversationEvent.objects.filter(turn_id=turn_id, type__in=frames.TERMINAL)
        .order_by("-seq")
        .values_list("frame", flat=True)
        .first()
    )
    return TurnResult(turn, (frame or {}).get("data"))
