"""The JSON shapes of items, sales and the report, shared by the REST API and the assistant's tools.

`item_data`, `sale_data` and `report_data` are the single definition of each shape; the DRF output
serializers delegate to them (their declared fields exist for the OpenAPI schema). Input is
validated by separate write serializers.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from django.core.validators import RegexValidator
from drf_spectacular.utils import extend_schema_field, extend_schema_serializer
from rest_framework import serializers

from profiles.api.openapi import NON_BLANK_PATTERN
from profiles.api.serializers import StrictKeysMixin

from .models import SKU_VALIDATOR, Item, Sale
from .selectors import LOW_STOCK_THRESHOLD, InventoryReport
from .services import MAX_QTY

CENT = Decimal("0.01")


def money(value: Decimal) -> str:
    """Decimals travel as strings with exactly two places ("9.99"), never floats."""
    return f"{Decimal(value).quantize(CENT):f}"


def item_data(item: Item) -> dict[str, Any]:
    return {
        "sku": item.sku,
        "name": item.name,
        "category": item.category,
        "tags": list(item.tags or []),
        "qty": item.qty,
        "price": money(item.price),
        "cost": money(item.cost),
    }


def sale_data(sale: Sale) -> dict[str, Any]:
    return {
        "id": str(sale.id),
        "date": sale.date.isoformat(),
        "sku": sale.item.sku,
        "qty": sale.qty,
        "total": money(sale.total),
    }


def report_data(report: InventoryReport) -> dict[str, Any]:
    return {
        "threshold": report.threshold,
        "since": report.since.isoformat() if report.since else None,
        "sku_count": report.sku_count,
        "total_units": report.total_units,
        "retail_value": money(report.retail_value),
        "cost_basis": money(report.cost_basis),
        "potential_profit": money(report.potential_profit),
        "low_stock_count": report.low_stock_count,
        "out_of_stock_count": report.out_of_stock_count,
        "low_stock": [item_data(i) for i in report.low_stock],
        "out_of_stock": [item_data(i) for i in report.out_of_stock],
        "sales_total": money(report.sales_total),
        "recent_sales": [sale_data(s) for s in report.recent_sales],
    }


# --------------------------------------------------------------------------- read (output) serializers


def _money_field(**kwargs: Any) -> serializers.DecimalField:
    return serializers.DecimalField(max_digits=20, decimal_places=2, coerce_to_string=True, **kwargs)


@extend_schema_serializer(component_name="InventoryItem")
class ItemOutputSerializer(serializers.Serializer):
    sku = serializers.CharField()
    name = serializers.CharField()
    category = serializers.CharField()
    tags = serializers.ListField(child=serializers.CharField())
    qty = serializers.IntegerField()
    price = _money_field()
    cost = _money_field()

    def to_representation(self, instance: Item) -> dict[str, Any]:
        return item_data(instance)


@extend_schema_serializer(component_name="InventorySale")
class SaleOutputSerializer(serializers.Serializer):
    id = serializers.UUIDField()
    date = serializers.DateField()
    sku = serializers.CharField()
    qty = serializers.IntegerField()
    total = _money_field()

    def to_representation(self, instance: Sale) -> dict[str, Any]:
        return sale_data(instance)


@extend_schema_serializer(component_name="InventorySaleRecorded")
class SaleRecordedSerializer(serializers.Serializer):
    """The reply to a recorded sale: the sale and the item's stock after it."""

    sale = SaleOutputSerializer()
    item = ItemOutputSerializer()

    def to_representation(self, instance: Sale) -> dict[str, Any]:
        return {"sale": sale_data(instance), "item": item_data(instance.item)}


@extend_schema_serializer(component_name="InventoryReport")
class ReportOutputSerializer(serializers.Serializer):
    threshold = serializers.IntegerField()
    since = serializers.DateField(allow_null=True)
    sku_count = serializers.IntegerField()
    total_units = serializers.IntegerField()
    retail_value = _money_field()
    cost_basis = _money_field()
    potential_profit = _money_field()
    low_stock_count = serializers.IntegerField()
    out_of_stock_count = serializers.IntegerField()
    low_stock = ItemOutputSerializer(many=True)
    out_of_stock = ItemOutputSerializer(many=True)
    sales_total = _money_field()
    recent_sales = SaleOutputSerializer(many=True)

    def to_representation(self, instance: InventoryReport) -> dict[str, Any]:
        return report_data(instance)


# --------------------------------------------------------------------------- write (input) serializers

# Never fires on its own (a trimmed value that is not blank has a non-space character, and NUL is refused
# by the services): it states in the schema that blank text and NUL are refused.
NON_BLANK = RegexValidator(NON_BLANK_PATTERN, "This field may not be blank.")


@extend_schema_field(
    {"type": "string", "format": "decimal", "pattern": r"^[0-9]{1,10}(?:\.[0-9]{1,2})?$", "example": "9.99"}
)
class MoneyInputField(serializers.DecimalField):
    """An amount of at most 10 digits and 2 decimals, at least 0 (a JSON number is accepted too)."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(max_digits=12, decimal_places=2, min_value=Decimal(0), **kwargs)


@extend_schema_serializer(component_name="InventoryItemInput")
class ItemInputSerializer(StrictKeysMixin, serializers.Serializer):
    sku = serializers.CharField(max_length=64, validators=[SKU_VALIDATOR])
    name = serializers.CharField(max_length=200, validators=[NON_BLANK])
    category = serializers.CharField(max_length=100, allow_blank=True, default="")
    tags = serializers.ListField(
        child=serializers.CharField(max_length=64, validators=[NON_BLANK]), max_length=50, default=list
    )
    # No default: a PUT that leaves out qty keeps the stock instead of zeroing it (creates start at 0).
    qty = serializers.IntegerField(min_value=0, max_value=MAX_QTY, required=False)
    price = MoneyInputField()
    cost = MoneyInputField()

    def validate_tags(self, tags: list[str]) -> list[str]:
        """Drop repeats, keep the order and spelling the user gave."""
        return list(dict.fromkeys(tags))


@extend_schema_serializer(component_name="InventorySaleInput")
class SaleInputSerializer(StrictKeysMixin, serializers.Serializer):
    sku = serializers.CharField(max_length=64, validators=[NON_BLANK])
    qty = serializers.IntegerField(min_value=1, max_value=MAX_QTY)
    date = serializers.DateField(required=False, input_formats=["%Y-%m-%d"], help_text="YYYY-MM-DD; today if omitted.")


class ReportQuerySerializer(serializers.Serializer):
    threshold = serializers.IntegerField(min_value=0, max_value=MAX_QTY, default=LOW_STOCK_THRESHOLD)
    since = serializers.DateField(required=False, input_formats=["%Y-%m-%d"], help_text="YYYY-MM-DD")
