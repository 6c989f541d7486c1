"""Usage reports: turns, tokens and cost summed per user, group, profile, API key or day, from the turn rows
(one grouped query, plus one for the keys' names). Staff read everyone's; others their own."""

from __future__ import annotations

import datetime as dt
from typing import Any

from django.db.models import BigIntegerField, Count, F, FloatField, Q, Sum
from django.db.models.fields.json import KT
from django.db.models.functions import Cast, Coalesce

from profiles.errors import InvalidInput
from profiles.models import ApiKey

from ..models import Turn

DAY_MS = 86_400_000
GROUPINGS = {
    "user": ("conversation__owner__username",),
    "group": ("conversation__owner__groups__name",),
    "profile": ("registry", "profile_slug"),
    "key": ("api_key_id",),
    "day": ("day",),
}


def _label(group_by: str, values: tuple[Any, ...], key_names: dict[int, str]) -> str | None:
    if group_by == "profile":
        return f"{values[0]}/{values[1]}"
    if group_by == "day":
        return dt.datetime.fromtimestamp(values[0] * DAY_MS / 1000, tz=dt.UTC).date().isoformat()
    if group_by == "key":
        return None if values[0] is None else f"{values[0]}: {key_names.get(values[0], '?')}"
    return values[0]


def usage_report(*, user: Any, group_by: Any, since_ms: Any = None) -> dict[str, Any]:
    """`{group_by, since_ms, rows: [{key, turns, tokens_in, tokens_out, cost_usd, unpriced_turns}], total}`,
    rows by cost, then key. `key` null: turns with no group / no API key. A turn of a user in several groups
    counts in each of them (the groups' rows may add up to more than the total)."""
    if group_by not in GROUPINGS:
        raise InvalidInput(f"must be one of: {', '.join(GROUPINGS)}", field="group_by")
    turns = Turn.objects.filter(profile_version__isnull=False)
    if since_ms is not None:
        if isinstance(since_ms, bool) or not isinstance(since_ms, int):
            raise InvalidInput("must be milliseconds since the epoch", field="since_ms")
        turns = turns.filter(created_at_ms__gte=since_ms)
    if not user.is_staff:
        turns = turns.filter(conversation__owner=user)
    sums = {
        "turns": Count("pk", distinct=group_by == "group"),
        "tokens_in": Coalesce(Sum(Cast(KT("usage__prompt_tokens"), output_field=BigIntegerField())), 0),
        "tokens_out": Coalesce(Sum(Cast(KT("usage__completion_tokens"), output_field=BigIntegerField())), 0),
        "cost_usd": Coalesce(Sum("cost"), 0.0),
        "unpriced_turns": Count("pk", filter=Q(cost__isnull=True)),
    }
    priced = turns.annotate(
        cost=Cast(KT("usage__cost_usd"), output_field=FloatField()), day=F("created_at_ms") / DAY_MS
    )
    columns = GROUPINGS[group_by]
    grouped = list(priced.order_by().values(*columns).annotate(**sums))
    total = priced.aggregate(**{k: v for k, v in sums.items() if k != "turns"}, turns=Count("pk"))
    key_names: dict[int, str] = {}
    if group_by == "key":
        ids = [row["api_key_id"] for row in grouped if row["api_key_id"] is not None]
        key_names = dict(ApiKey.objects.filter(pk__in=ids).values_list("pk", "name"))
    rows = [
        {
            "key": _label(group_by, tuple(row.pop(c) for c in columns), key_names),
            **row,
            "cost_usd": round(row["cost_usd"], 6),
        }
        for row in grouped
    ]
    rows.sort(key=lambda r: (-r["cost_usd"], str(r["key"])))
    return {
        "group_by": group_by,
        "since_ms": since_ms,
        "rows": rows,
        "total": {**total, "cost_usd": round(total["cost_usd"], 6)},
    }
