"""Budgets: spending caps on the turns of a user, of a group's members, on a profile or with an API key,
per UTC day, month or in total.

A turn is admitted (`budget_admit`, inside its submission's transaction) while, for every budget that
applies, what was spent in the period (the `usage.cost_usd` of its finished turns) plus what waiting and
running turns reserved is below the amount; it then reserves its estimated cost (the average cost of the
profile's last finished turns, else `CHAT_BUDGET_RESERVE_USD`), which its own cost replaces when it
finishes. The applying budgets' rows are locked for the check (PostgreSQL; SQLite has one writer), so
workers never overspend together by more than one reservation each check sees. Which budgets exist is
kept per process like prices (`CHAT_PRICE_CACHE_SECONDS`): no query for a turn no budget applies to."""

from __future__ import annotations

import datetime as dt
import threading
import time
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Any

from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.db import transaction
from django.db.models import Avg, FloatField, Q, QuerySet, Sum
from django.db.models.fields.json import KT
from django.db.models.functions import Cast, Coalesce

from profiles.access import user_group_names
from profiles.audit import audit_record
from profiles.errors import Busy, Conflict, Forbidden, InvalidInput, NotFound
from profiles.keys import key_create
from profiles.models import ApiKey, Profile
from profiles.prepared import flush_held
from profiles.timestamps import now_ms

from ..models import Budget, Turn

MAX_USD = Decimal("1000000000")
ADJECTIVES = {"day": "daily", "month": "monthly", "total": "total"}
ESTIMATE_FROM_TURNS = 20


class BudgetExceeded(Busy):
    """429: a budget that applies is spent (or reserved by turns under way) for its period."""

    code = "budget_exceeded"

    def __init__(self, budget: Budget, used: float) -> None:
        resets = period_end_ms(budget.period)
        when = f"it resets {_utc(resets)}" if resets is not None else "a total budget never resets"
        super().__init__(
            f"the {ADJECTIVES[budget.period]} budget of {budget.scope_type} {budget.scope_id!r} "
            f"(US${budget.amount_usd.normalize():f}) is used up: US${used:.6f} spent or reserved; {when}",
            scope={"type": budget.scope_type, "id": budget.scope_id},
            period=budget.period,
            amount_usd=float(budget.amount_usd),
            used_usd=round(used, 6),
            resets_at_ms=resets,
        )
        # A total budget never resets: a day, after which someone may have raised it.
        self.retry_after = max(1, (resets - now_ms()) // 1000) if resets is not None else 86_400


def _utc(ms: int) -> str:
    return dt.datetime.fromtimestamp(ms / 1000, tz=dt.UTC).strftime("%Y-%m-%d %H:%M UTC")


def period_start_ms(period: str, *, at_ms: int | None = None) -> int | None:
    now = dt.datetime.fromtimestamp((at_ms or now_ms()) / 1000, tz=dt.UTC)
    if period == "day":
        start = now.replace(hour=0, minute=0, second=0, microsecond=0)
    elif period == "month":
        start = now.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    else:
        return None
    return int(start.timestamp() * 1000)


def period_end_ms(period: str) -> int | None:
    start = period_start_ms(period)
    if start is None:
        return None
    first = dt.datetime.fromtimestamp(start / 1000, tz=dt.UTC)
    if period == "day":
        end = first + dt.timedelta(days=1)
    else:
        end = (first.replace(day=28) + dt.timedelta(days=4)).replace(day=1)
    return int(end.timestamp() * 1000)


# --------------------------------------------------------------------------- budgets


def _scope_id(scope_type: Any, raw: Any) -> str:
    """The scope's id as stored, checked to name something that exists (400 on `scope.id`)."""
    text = str(raw).strip() if isinstance(raw, str | int) and not isinstance(raw, bool) else ""
    field = "scope.id"
    if scope_type == "user":
        if not text.isdigit() or not get_user_model().objects.filter(pk=int(text)).exists():
            raise InvalidInput("no such user (give the user's id)", field=field)
    elif scope_type == "group":
        if not Group.objects.filter(name=text).exists():
            raise InvalidInput("no such group (give its name)", field=field)
    elif scope_type == "profile":
        registry, _, slug = text.partition("/")
        if not Profile.objects.filter(registry__slug=registry, slug=slug).exists():
            raise InvalidInput("no such profile (give registry/slug)", field=field)
    elif scope_type == "key":
        if not text.isdigit() or not ApiKey.objects.filter(pk=int(text)).exists():
            raise InvalidInput("no such API key (give its id)", field=field)
    else:
        raise InvalidInput(f"must be one of: {', '.join(Budget.Scope.values)}", field="scope.type")
    return text


@transaction.atomic
def budget_create(*, scope: Any, amount_usd: Any, period: Any, actor: Any) -> Budget:
    """A budget, one per scope and period: a second is a 409 (delete the first). Staff set any; a key's
    owner may cap their own key."""
    if not isinstance(scope, dict):
        raise InvalidInput('must be {"type": "user" | "group" | "profile" | "key", "id": ...}', field="scope")
    scope_id = _scope_id(scope.get("type"), scope.get("id"))
    owns_key = (
        scope["type"] == "key"
        and actor is not None
        and ApiKey.objects.filter(pk=int(scope_id), owner_id=actor.pk).exists()
    )
    if actor is None or not (actor.is_staff or owns_key):
        raise Forbidden("budgets are set by staff (a key's owner may cap their own key)")
    if period not in Budget.Period.values:
        raise InvalidInput(f"must be one of: {', '.join(Budget.Period.values)}", field="period")
    try:
        amount = Decimal(str(amount_usd)) if not isinstance(amount_usd, bool) else Decimal("NaN")
    except InvalidOperation:
        amount = Decimal("NaN")
    if not amount.is_finite() or not Decimal(0) < amount <= MAX_USD:
        raise InvalidInput(f"must be a number of US dollars above 0, at most {MAX_USD}", field="amount_usd")
    if Budget.objects.filter(scope_type=scope["type"], scope_id=scope_id, period=period).exists():
        raise Conflict(f"{scope['type']} {scope_id!r} has a {period} budget already: delete it first", field="scope")
    budget = Budget.objects.create(
        scope_type=scope["type"],
        scope_id=scope_id,
        amount_usd=amount.quantize(Decimal("0.000001")),
        period=period,
        created_at_ms=now_ms(),
        created_by=actor.get_username(),
    )
    _audit("budget.created", budget, actor)
    transaction.on_commit(table.clear)
    return budget


@transaction.atomic
def key_issue(*, owner: Any, budget_usd: Any = None, budget_period: Any = None, **key: Any) -> Any:
    """A new API key (`profiles.keys.key_create`) and, with `budget_usd`, its budget for `budget_period`
    (default `month`), in one transaction: a refused budget makes no key."""
    issued = key_create(owner=owner, **key)
    if budget_usd is not None:
        try:
            budget_create(
                scope={"type": "key", "id": issued.key.pk},
                amount_usd=budget_usd,
                period=budget_period or "month",
                actor=owner,
            )
        except InvalidInput as exc:
            raise InvalidInput(exc.message, field="budget_period" if exc.field == "period" else "budget_usd") from None
    elif budget_period is not None:
        raise InvalidInput("budget_period needs budget_usd", field="budget_period")
    return issued


@transaction.atomic
def budget_delete(*, budget_id: Any, actor: Any) -> None:
    if actor is None or not actor.is_staff:
        raise Forbidden("budgets are set by staff")
    budget = Budget.objects.select_for_update().filter(pk=budget_id).first()
    if budget is None:
        raise NotFound(f"no budget {budget_id}", field="budget_id")
    _audit("budget.deleted", budget, actor)
    budget.delete()
    transaction.on_commit(table.clear)


def _audit(action: str, budget: Budget, actor: Any) -> None:
    audit_record(
        actor=actor,
        source="api",
        action=action,
        object_type="budget",
        registry=budget.scope_id.partition("/")[0] if budget.scope_type == "profile" else "",
        slug=f"{budget.scope_type}:{budget.scope_id}",
        changes={
            "id": budget.pk,
            "scope": {"type": budget.scope_type, "id": budget.scope_id},
            "amount_usd": str(budget.amount_usd),
            "period": budget.period,
        },
    )


def _turns_of(budget: Budget) -> QuerySet[Turn]:
    if budget.scope_type == "user":
        return Turn.objects.filter(conversation__owner_id=int(budget.scope_id))
    if budget.scope_type == "group":
        return Turn.objects.filter(conversation__owner__groups__name=budget.scope_id)
    if budget.scope_type == "profile":
        registry, _, slug = budget.scope_id.partition("/")
        return Turn.objects.filter(registry=registry, profile_slug=slug)
    return Turn.objects.filter(api_key_id=int(budget.scope_id))


def budget_used(budget: Budget) -> float:
    """Spent in the period (finished turns' costs) plus reserved (waiting and running turns)."""
    turns = _turns_of(budget)
    start = period_start_ms(budget.period)
    if start is not None:
        turns = turns.filter(created_at_ms__gte=start)
    used = turns.aggregate(
        spent=Coalesce(
            Sum(Cast(KT("usage__cost_usd"), output_field=FloatField()), filter=Q(status__in=Turn.FINISHED)), 0.0
        ),
        reserved=Coalesce(Sum("reserved_usd", filter=Q(status__in=Turn.WAITING)), 0.0),
    )
    return float(used["spent"]) + float(used["reserved"])


def budget_list(*, user: Any) -> list[dict[str, Any]]:
    """Every budget (staff), or the budgets that apply to `user` (theirs, their groups', their keys'),
    with what is used of it now and when its period ends."""
    budgets = Budget.objects.all()
    if not user.is_staff:
        keys = [str(pk) for pk in ApiKey.objects.filter(owner=user).values_list("pk", flat=True)]
        budgets = budgets.filter(
            Q(scope_type="user", scope_id=str(user.pk))
            | Q(scope_type="group", scope_id__in=list(user_group_names(user)))
            | Q(scope_type="key", scope_id__in=keys)
        )
    return [
        {
            "id": b.pk,
            "scope": {"type": b.scope_type, "id": b.scope_id},
            "amount_usd": float(b.amount_usd),
            "period": b.period,
            "used_usd": round(budget_used(b), 6),
            "resets_at_ms": period_end_ms(b.period),
            "created_at_ms": b.created_at_ms,
            "created_by": b.created_by,
        }
        for b in budgets
    ]


# --------------------------------------------------------------------------- admission


class BudgetTable:
    """Which budgets exist, per process, read again every `CHAT_PRICE_CACHE_SECONDS` (one query)."""

    def __init__(self) -> None:
        self._rows: dict[tuple[str, str], list[int]] = {}
        self._loaded = -1.0
        self._lock = threading.Lock()

    def clear(self) -> None:
        self._loaded = -1.0

    def ids(self) -> dict[tuple[str, str], list[int]]:
        with self._lock:
            if self._loaded < 0 or time.monotonic() - self._loaded > settings.CHAT_PRICE_CACHE_SECONDS:
                rows: dict[tuple[str, str], list[int]] = {}
                for pk, scope_type, scope_id in Budget.objects.values_list("pk", "scope_type", "scope_id"):
                    rows.setdefault((scope_type, scope_id), []).append(pk)
                self._rows, self._loaded = rows, time.monotonic()
            return self._rows


table = BudgetTable()


@dataclass(frozen=True)
class Subject:
    """What a turn is charged to: its user, the profile it is submitted on, the API key it came with."""

    user: Any
    registry: str
    slug: str
    api_key_id: int | None = None


def _applying(subject: Subject) -> list[int]:
    known = table.ids()
    if not known:
        return []
    found: list[int] = []
    found += known.get(("user", str(subject.user.pk)), [])
    found += known.get(("profile", f"{subject.registry}/{subject.slug}"), [])
    if subject.api_key_id is not None:
        found += known.get(("key", str(subject.api_key_id)), [])
    if any(scope_type == "group" for scope_type, _ in known):
        for group in user_group_names(subject.user):
            found += known.get(("group", group), [])
    return sorted(set(found))


def _estimate(subject: Subject) -> float:
    """The turn's expected cost: the average of the profile's last finished, priced turns."""
    recent = (
        Turn.objects.filter(registry=subject.registry, profile_slug=subject.slug, status=Turn.Status.COMPLETED)
        .exclude(usage__cost_usd=None)
        .order_by("-created_at_ms")
        .values_list("pk", flat=True)[:ESTIMATE_FROM_TURNS]
    )
    average = Turn.objects.filter(pk__in=list(recent)).aggregate(
        cost=Avg(Cast(KT("usage__cost_usd"), output_field=FloatField()))
    )["cost"]
    return float(average) if average is not None else settings.CHAT_BUDGET_RESERVE_USD


def budget_admit(subject: Subject) -> float | None:
    """Inside the submission's transaction: refuse the turn (`BudgetExceeded`, naming the budget) when a
    budget that applies is used up; else the cost it reserves (None: no budget applies)."""
    ids = _applying(subject)
    if not ids:
        return None
    budgets = list(Budget.objects.select_for_update().filter(pk__in=ids).order_by("pk"))
    flush_held()  # the turns a group commit's earlier writes reserved with count (chat.writer)
    for budget in budgets:
        used = budget_used(budget)
        if used >= float(budget.amount_usd):
            raise BudgetExceeded(budget, used)
    return _estimate(subject) if budgets else None
