"""Per-version metrics of a profile, from its turns: counts by outcome, tokens and cost, thumbs, latency
percentiles. Turns are this app's records: the platform gets these through
`definitions.register_version_stats` (chat/apps.py), for the stats API, the admin and a rollout's arms."""

from __future__ import annotations

import math
from typing import Any

from django.db.models import BigIntegerField, Count, F, FloatField, Max, Min, Q, Sum
from django.db.models.fields.json import KT
from django.db.models.functions import Cast, Coalesce

from .models import Turn, TurnFeedback


def _percentile(sorted_values: list[int], p: float) -> int | None:
    """Nearest-rank percentile of an ascending list (None for no values)."""
    if not sorted_values:
        return None
    rank = max(1, math.ceil(p / 100 * len(sorted_values)))
    return sorted_values[rank - 1]


def profile_version_stats(
    *,
    registry: str,
    slug: str,
    version: int | None = None,
    since_ms: int | None = None,
    rollout_id: int | None = None,
) -> dict[int, dict[str, Any]]:
    """Per version of a profile, from its turn rows: counts by outcome, token sums, first and last turn
    (one grouped query), thumbs up and down its turns were given (one grouped query), and p50/p95
    latency (start to finish) of its completed turns (one query of durations). Three queries whatever
    the number of turns (index `chat_turn_profile_version`; `rollout_id`: only the turns a rollout's arms
    served, index `chat_turn_rollout_arm`)."""
    if rollout_id is not None:
        turns = Turn.objects.filter(rollout_id=rollout_id, profile_version__isnull=False)
    else:
        turns = Turn.objects.filter(registry=registry, profile_slug=slug, profile_version__isnull=False)
        turns = turns.filter(conversation__purpose="")  # people's turns: an evaluation's cases are its own
    if version is not None:
        turns = turns.filter(profile_version=version)
    if since_ms is not None:
        turns = turns.filter(created_at_ms__gte=since_ms)
    tokens: dict[str, Any] = {
        name: Coalesce(Sum(Cast(KT(f"usage__{key}"), output_field=BigIntegerField())), 0)
        for name, key in (("tokens_in", "prompt_tokens"), ("tokens_out", "completion_tokens"))
    }
    tokens["cost_usd"] = Coalesce(Sum(Cast(KT("usage__cost_usd"), output_field=FloatField())), 0.0)
    outcomes = {
        status: Count("pk", filter=Q(status=status)) for status in ("completed", "failed", "cancelled", "interrupted")
    }
    rows = (
        turns.order_by()
        .values("profile_version")
        .annotate(
            turns=Count("pk"),
            **outcomes,
            **tokens,
            first_turn_at_ms=Min("created_at_ms"),
            last_turn_at_ms=Max("created_at_ms"),
        )
    )
    stats = {row.pop("profile_version"): row for row in rows}
    ratings = (
        TurnFeedback.objects.filter(turn__in=turns)
        .order_by()
        .values("turn__profile_version")
        .annotate(
            thumbs_up=Count("pk", filter=Q(rating=TurnFeedback.Rating.UP)),
            thumbs_down=Count("pk", filter=Q(rating=TurnFeedback.Rating.DOWN)),
        )
    )
    for row in ratings:
        v = row.pop("turn__profile_version")
        if v in stats:
            stats[v].update(row)
    durations: dict[int, list[int]] = {}
    completed = turns.filter(status=Turn.Status.COMPLETED, started_at_ms__isnull=False, finished_at_ms__isnull=False)
    for v, duration in (
        completed.annotate(duration=F("finished_at_ms") - F("started_at_ms"))
        .order_by("profile_version", "duration")
        .values_list("profile_version", "duration")
    ):
        if v is not None:
            durations.setdefault(v, []).append(duration)
    for v, row in stats.items():
        row["cost_usd"] = round(row["cost_usd"], 6)
        row["latency_ms_p50"] = _percentile(durations.get(v, []), 50)
        row["latency_ms_p95"] = _percentile(durations.get(v, []), 95)
    return stats
