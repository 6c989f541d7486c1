"""Reads of the gateway: the models a mount serves (profiles) and a finished turn."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from profiles.access import visible_filter
from profiles.models import Profile
from profiles.mounts import Mount
from profiles.prepared import Param, Select

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


# Compiled once (`profiles.prepared`): every completion reads them.
_IDENTITY = Select(lambda: Turn.objects.only(*IDENTITY_FIELDS).filter(pk=Param("turn_id")).order_by()[:1])
_ANSWER = Select(lambda: Turn.objects.only(*ANSWER_FIELDS).filter(pk=Param("turn_id")).order_by()[:1])
_TERMINAL = Select(
    lambda: (
        ConversationEvent.objects.filter(turn_id=Param("turn_id"), type__in=frames.TERMINAL)
        .order_by("-seq")
        .values_list("frame")[:1]
    )
)


def turn_identity(*, turn_id: Any) -> Turn:
    """The started turn's id, model and fingerprint (its record), for the first chunk of a stream."""
    turn = _IDENTITY.first(turn_id=turn_id)
    if turn is None:
        raise Turn.DoesNotExist(f"turn {turn_id} not found")
    return turn


@dataclass(frozen=True)
class TurnResult:
    turn: Turn  # the stored row: runtime record, text, usage, status, error
    terminal: dict[str, Any] | None  # the data of its stored terminal frame (`stop_reason`), if stored yet


def turn_result(*, turn_id: Any) -> TurnResult | None:
    """The turn once it has finished (completed, failed, cancelled, interrupted), else None."""
    turn = _ANSWER.first(turn_id=turn_id)
    if turn is None or turn.status not in Turn.FINISHED:
        return None
    row = _TERMINAL.row(turn_id=turn_id)
    return TurnResult(turn, ((row[0] if row else None) or {}).get("data"))


def turn_result_of_end(*, identity: Turn, frame: dict[str, Any]) -> TurnResult:
    """What `turn_result` reads, from the turn's terminal frame and the identity its submission stored
    (a turn claimed with its submission): the frame carries what its end stored (status, text, usage,
    error), so the answer of a turn this process ran needs no read once it has ended."""
    data = frame["data"]
    fields = {name: getattr(identity, name) for name in IDENTITY_FIELDS}
    status = data.get("status") or frame["type"].removeprefix("turn.")
    turn = Turn(
        **fields, status=status, text=data.get("text") or "", usage=data.get("usage") or {}, error=data.get("error")
    )
    turn._state.adding, turn._state.db = False, identity._state.db
    return TurnResult(turn, data)
