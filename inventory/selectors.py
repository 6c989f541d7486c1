"""Inventory reads: search, lookup, low stock and the report. Writes live in `inventory.services`."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from decimal import Decimal

from django.db.models import DecimalField, ExpressionWrapper, F, QuerySet, Sum

from .models import SEARCH_SEPARATOR, Item, Sale
from .services import InventoryError, NoSuchItem, lookup_sku

SEARCH_LIMIT_DEFAULT = 20
SEARCH_LIMIT_MAX = 200
LOW_STOCK_THRESHOLD = 3
RECENT_SALES = 10
ZERO = Decimal("0.00")
MONEY: DecimalField[Decimal, Decimal] = DecimalField(max_digits=20, decimal_places=2)


def _threshold(threshold: int) -> int:
    if isinstance(threshold, bool) or not isinstance(threshold, int) or threshold < 0:
        raise InventoryError("threshold must be an integer >= 0", field="threshold")
    return threshold


def item_filter_search(queryset: QuerySet[Item], query: str) -> QuerySet[Item]:
    """Case-insensitive substring match over sku, name, category and tags (shared with the REST filter)."""
    text = lookup_sku(query or "")
    if text is None:  # NUL or a lone surrogate: no stored text contains it (and the driver would refuse it)
        return queryset.none()
    text = text.lower()
    if SEARCH_SEPARATOR in text:  # no single field contains the separator
        return queryset.none()
    return queryset.filter(search_text__contains=text) if text else queryset


def item_search(*, query: str, limit: int = SEARCH_LIMIT_DEFAULT) -> list[Item]:
    """Items matching `query`, by sku; `limit` is clamped to 1..200 rather than rejected."""
    if isinstance(limit, bool) or not isinstance(limit, int):
        raise InventoryError("limit must be an integer", field="limit")
    limit = max(1, min(SEARCH_LIMIT_MAX, limit))
    return list(item_filter_search(Item.objects.order_by("sku"), query)[:limit])


def item_get(*, sku: str) -> Item:
    """The item whose SKU equals `sku` ignoring case; NoSuchItem (404) if there is none."""
    text = lookup_sku(sku)
    item = None if text is None else Item.objects.filter(sku__iexact=text).first()
    if item is None:
        raise NoSuchItem(sku)
    return item


def items_low_stock(*, threshold: int = LOW_STOCK_THRESHOLD) -> list[Item]:
    """Items with qty <= threshold, emptiest first, then by sku."""
    return list(Item.objects.filter(qty__lte=_threshold(threshold)).order_by("qty", "sku"))


def sale_list() -> QuerySet[Sale]:
    """All sales, newest first, with their item (for the sale shape's `sku`)."""
    return Sale.objects.select_related("item").order_by("-date", "-created_at_ms", "-id")


@dataclass(frozen=True)
class InventoryReport:
    threshold: int
    since: dt.date | None
    sku_count: int
    total_units: int
    retail_value: Decimal
    cost_basis: Decimal
    potential_profit: Decimal
    low_stock: list[Item]
    out_of_stock: list[Item]
    sales_total: Decimal
    recent_sales: list[Sale]

    @property
    def low_stock_count(self) -> int:
        return len(self.low_stock)

    @property
    def out_of_stock_count(self) -> int:
        return len(self.out_of_stock)


def inventory_report(*, threshold: int = LOW_STOCK_THRESHOLD, since: dt.date | None = None) -> InventoryReport:
    """Stock value figures, low/out-of-stock lists and sales (on or after `since` when given).

    Sums are computed by the database as decimals (exact on PostgreSQL; SQLite's are rounded back to cents).
    """
    threshold = _threshold(threshold)
    if since is not None and not isinstance(since, dt.date):
        raise InventoryError("since must be a date (YYYY-MM-DD)", field="since")
    figures = Item.objects.aggregate(
        total_units=Sum("qty"),
        retail_value=Sum(ExpressionWrapper(F("qty") * F("price"), output_field=MONEY)),
        cost_basis=Sum(ExpressionWrapper(F("qty") * F("cost"), output_field=MONEY)),
    )
    retail = (figures["retail_value"] or ZERO).quantize(ZERO)
    cost = (figures["cost_basis"] or ZERO).quantize(ZERO)
    sales = sale_list() if since is None else sale_list().filter(date__gte=since)
    sales_total = sales.aggregate(total=Sum("total", output_field=MONEY))["total"] or ZERO
    return InventoryReport(
        threshold=threshold,
        since=since,
        sku_count=Item.objects.count(),
        total_units=figures["total_units"] or 0,
        retail_value=retail,
        cost_basis=cost,
        potential_profit=retail - cost,
        low_stock=items_low_stock(threshold=threshold),
        out_of_stock=list(Item.objects.filter(qty=0).order_by("sku")),
        sales_total=sales_total.quantize(ZERO),
        recent_sales=list(sales[:RECENT_SALES]),
    )
