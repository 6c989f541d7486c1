"""The reference inventory (10 items, 7 sales) used by the demo and the tests.

Seeding only adds what is missing: items by SKU (ignoring case), sales by their fixed UUIDs. It never
touches an existing row, so stock edited after seeding survives a re-seed. Seed sales are history:
the quantities below are the stock *after* them, so they do not decrement anything.
"""

from __future__ import annotations

import datetime as dt
import uuid
from dataclasses import dataclass, field
from decimal import Decimal

from django.db import transaction

from profiles.timestamps import to_ms

from .models import Item, Sale
from .services import inventory_notify

SEED_NAMESPACE = uuid.UUID("6f1c2a4e-5b7d-4c1e-9a3f-2d8e7b6a5c40")

# sku, name, category, qty, price, cost, tags
ITEMS: list[tuple[str, str, str, int, str, str, list[str]]] = [
    ("A-1002", "Keychain - Brass", "Accessories", 2, "9.99", "3.25", ["gift", "sale"]),
    ("A-1021", "Keychain - Silver", "Accessories", 0, "8.99", "2.80", ["gift"]),
    ("A-1033", "Keychain - Steel", "Accessories", 5, "7.99", "2.10", ["new"]),
    ("A-1055", "Ring - Copper Band", "Accessories", 1, "12.99", "4.50", ["artisan"]),
    ("B-2001", "Mug - Ceramic Blue", "Kitchen", 14, "24.99", "8.00", ["popular"]),
    ("B-2015", "Mug - Hand-thrown", "Kitchen", 3, "19.99", "7.50", ["artisan"]),
    ("C-3010", "Candle - Beeswax Lg", "Home", 0, "34.99", "12.00", ["seasonal"]),
    ("C-3011", "Candle - Soy Sm", "Home", 8, "14.99", "5.00", ["popular", "gift"]),
    ("D-4001", "Sticker Pack - Logo", "Merch", 20, "4.99", "1.20", ["cheap", "popular"]),
    ("D-4002", "Tote Bag - Canvas", "Merch", 6, "18.99", "6.00", ["new", "eco"]),
]

# key, date, sku, qty, total (newest first, as in the reference)
SALES: list[tuple[str, str, str, int, str]] = [
    ("s1", "2026-02-10", "A-1002", 2, "19.98"),
    ("s2", "2026-02-10", "B-2001", 1, "24.99"),
    ("s3", "2026-02-09", "A-1002", 3, "29.97"),
    ("s4", "2026-02-09", "D-4001", 5, "24.95"),
    ("s5", "2026-02-08", "A-1002", 4, "39.96"),
    ("s6", "2026-02-08", "C-3011", 2, "29.98"),
    ("s7", "2026-02-07", "B-2015", 1, "19.99"),
]


def seed_sale_id(key: str) -> uuid.UUID:
    """The fixed id of seed sale `key` ("s1".."s7")."""
    return uuid.uuid5(SEED_NAMESPACE, key)


@dataclass
class SeedResult:
    items_created: list[str] = field(default_factory=list)
    sales_created: list[str] = field(default_factory=list)

    @property
    def changed(self) -> bool:
        return bool(self.items_created or self.sales_created)


def seed_inventory() -> SeedResult:
    """Create the missing seed items and sales; idempotent."""
    result = SeedResult()
    with transaction.atomic():
        for sku, name, category, qty, price, cost, tags in ITEMS:
            if not Item.objects.filter(sku__iexact=sku).exists():
                Item.objects.create(
                    sku=sku, name=name, category=category, qty=qty, price=Decimal(price), cost=Decimal(cost), tags=tags
                )
                result.items_created.append(sku)
        existing = set(Sale.objects.filter(id__in=[seed_sale_id(k) for k, *_ in SALES]).values_list("id", flat=True))
        for position, (key, date, sku, qty, total) in enumerate(SALES):
            sale_id = seed_sale_id(key)
            if sale_id in existing:
                continue
            day = dt.date.fromisoformat(date)
            Sale.objects.create(
                id=sale_id,
                date=day,
                item=Item.objects.get(sku__iexact=sku),
                qty=qty,
                total=Decimal(total),
                # Noon of the sale's day, earlier for later rows, so "newest first" keeps the reference order.
                created_at_ms=to_ms(
                    dt.datetime.combine(day, dt.time(12), tzinfo=dt.UTC) - dt.timedelta(minutes=position)
                ),
            )
            result.sales_created.append(key)
        if result.changed:
            inventory_notify(
                skus=result.items_created + [s[2] for s in SALES if s[0] in result.sales_created], source="seed"
            )
    return result
