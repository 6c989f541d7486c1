"""Prices per engine and model, and what a turn costs.

A price is set (`price_set`, staff: REST or the admin) as a new row effective from a time (now by
default, or later), so history is kept and a turn's cost is that of the price in force when it started.
Turns read prices from a per-process table refreshed every `CHAT_PRICE_CACHE_SECONDS` (no query per
turn): a price set in another worker applies here within that delay; one set to take effect later
applies exactly on time. The offline engine's models cost 0 until priced; another unpriced model's cost
is unknown (`cost_usd` null)."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Any

from django.conf import settings
from django.db import transaction

from profiles.audit import audit_record
from profiles.errors import Forbidden, InvalidInput
from profiles.timestamps import now_ms
from profiles.validation import ensure_storable

from ..models import Price

FREE_API_TYPES = frozenset({"offline"})
MAX_USD_PER_MTOK = Decimal("100000")  # within the column (12 digits, 6 of them decimals)


@dataclass(frozen=True)
class Rate:
    input_usd_per_mtok: Decimal
    output_usd_per_mtok: Decimal
    effective_from_ms: int


FREE = Rate(Decimal(0), Decimal(0), 0)


def _usd(raw: Any, *, field: str) -> Decimal:
    if isinstance(raw, bool) or not isinstance(raw, int | float | str):
        raise InvalidInput("must be a number of US dollars per million tokens", field=field)
    try:
        value = Decimal(str(raw))
    except InvalidOperation:
        raise InvalidInput("must be a number of US dollars per million tokens", field=field) from None
    if not value.is_finite() or value < 0 or value > MAX_USD_PER_MTOK:
        raise InvalidInput(f"must be from 0 to {MAX_USD_PER_MTOK} US dollars per million tokens", field=field)
    return value.quantize(Decimal("0.000001"))


@transaction.atomic
def price_set(
    *,
    api_type: Any,
    model: Any,
    input_usd_per_mtok: Any,
    output_usd_per_mtok: Any,
    effective_from_ms: Any = None,
    actor: Any,
) -> Price:
    """A new price for `api_type`/`model` from `effective_from_ms` (default now); staff only."""
    if actor is None or not actor.is_staff:
        raise Forbidden("prices are set by staff")
    for value, field in ((api_type, "api_type"), (model, "model")):
        if not isinstance(value, str) or not value.strip() or len(value) > 200:
            raise InvalidInput("must be a non-empty name of at most 200 characters", field=field)
        ensure_storable(value, field=field)
    stamp = now_ms()
    start = stamp if effective_from_ms is None else effective_from_ms
    if isinstance(start, bool) or not isinstance(start, int) or start < 0:
        raise InvalidInput("must be milliseconds since the epoch", field="effective_from_ms")
    price = Price.objects.create(
        api_type=api_type.strip(),
        model=model.strip(),
        input_usd_per_mtok=_usd(input_usd_per_mtok, field="input_usd_per_mtok"),
        output_usd_per_mtok=_usd(output_usd_per_mtok, field="output_usd_per_mtok"),
        effective_from_ms=start,
        created_at_ms=stamp,
        created_by=actor.get_username(),
    )
    audit_record(
        actor=actor,
        source="api",
        action="price.set",
        object_type="price",
        registry="",
        slug=f"{price.api_type}/{price.model}",
        changes={
            "api_type": price.api_type,
            "model": price.model,
            "input_usd_per_mtok": str(price.input_usd_per_mtok),
            "output_usd_per_mtok": str(price.output_usd_per_mtok),
            "effective_from_ms": start,
        },
    )
    transaction.on_commit(table.clear)
    return price


def price_list() -> list[Price]:
    """Every price set, by engine and model, newest effective first."""
    return list(Price.objects.all())


class PriceTable:
    """The prices, per process, refreshed every `CHAT_PRICE_CACHE_SECONDS` (one query)."""

    def __init__(self) -> None:
        self._rows: dict[tuple[str, str], list[Rate]] = {}
        self._loaded = -1.0
        self._lock = threading.Lock()

    def clear(self) -> None:
        self._loaded = -1.0

    def _fresh(self) -> dict[tuple[str, str], list[Rate]]:
        with self._lock:
            if self._loaded < 0 or time.monotonic() - self._loaded > settings.CHAT_PRICE_CACHE_SECONDS:
                rows: dict[tuple[str, str], list[Rate]] = {}
                for api_type, model, inp, out, start in Price.objects.order_by("-effective_from_ms").values_list(
                    "api_type", "model", "input_usd_per_mtok", "output_usd_per_mtok", "effective_from_ms"
                ):
                    rows.setdefault((api_type, model), []).append(Rate(inp, out, start))
                self._rows, self._loaded = rows, time.monotonic()
            return self._rows

    def rate(self, api_type: str, model: str, *, at_ms: int) -> Rate | None:
        """The price in force at `at_ms`; the offline engine's models are free until priced; None: unknown."""
        for rate in self._fresh().get((api_type, model), ()):
            if rate.effective_from_ms <= at_ms:
                return rate
        return FREE if api_type in FREE_API_TYPES else None


table = PriceTable()


def cost_usd(usage: dict[str, Any] | None, rate: Rate | None) -> float | None:
    """What a turn's tokens cost at `rate` (None: the model has no price)."""
    if rate is None:
        return None
    usage = usage or {}
    prompt, completion = int(usage.get("prompt_tokens") or 0), int(usage.get("completion_tokens") or 0)
    total = (prompt * rate.input_usd_per_mtok + completion * rate.output_usd_per_mtok) / Decimal(1_000_000)
    return float(total.quantize(Decimal("0.000001")))
