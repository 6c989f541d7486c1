"""Items and sales: the one copy of the inventory that the REST API, admin, page and tools share."""

from __future__ import annotations

import uuid
from typing import TYPE_CHECKING

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.validators import MinValueValidator, RegexValidator
from django.db import models
from django.db.models import Q
from django.db.models.functions import Lower
from simple_history.models import HistoricalRecords

from profiles.timestamps import CreatedMs, TimestampedMs

if TYPE_CHECKING:
    from django.contrib.auth.models import AbstractBaseUser

SKU_VALIDATOR = RegexValidator(
    r"^[A-Za-z0-9][A-Za-z0-9._-]*$",
    "A SKU uses letters, digits, '.', '_' and '-' and starts with a letter or digit.",
)
# Separates fields in `search_text` so a query never matches across two fields.
SEARCH_SEPARATOR = "\n"


def validate_tags(value: object) -> None:
    """Tags are a JSON list of non-empty strings."""
    if not isinstance(value, list) or not all(isinstance(tag, str) and tag.strip() for tag in value):
        raise ValidationError("Tags must be a list of non-empty strings.")


def build_search_text(*, sku: str, name: str, category: str, tags: list[str] | None) -> str:
    """Lower-cased haystack for substring search.

    Why a column: tags live in JSON, whose text form differs between SQLite and PostgreSQL
    (and SQLite's LIKE folds ASCII only); one lower-cased column searches the same everywhere.
    """
    parts = [sku, name, category, *(tags or [])]
    return SEARCH_SEPARATOR.join(str(p) for p in parts).lower()


class Item(TimestampedMs):
    sku = models.CharField(max_length=64, validators=[SKU_VALIDATOR], help_text="Unique, case-insensitively.")
    name = models.CharField(max_length=200)
    category = models.CharField(max_length=100, blank=True, db_index=True)
    tags = models.JSONField(default=list, blank=True, validators=[validate_tags], help_text="A list of strings.")
    qty = models.PositiveIntegerField(default=0)
    price = models.DecimalField(max_digits=12, decimal_places=2, validators=[MinValueValidator(0)])
    cost = models.DecimalField(max_digits=12, decimal_places=2, validators=[MinValueValidator(0)])
    search_text = models.TextField(default="", editable=False)

    history = HistoricalRecords(excluded_fields=["search_text"])
    # Set before a save or delete: the user django-simple-history records on the history row.
    _history_user: AbstractBaseUser | None

    class Meta:
        ordering = ["sku"]
        constraints = [
            models.UniqueConstraint(
                Lower("sku"),
                name="inventory_item_sku_ci_unique",
                violation_error_message="An item with this SKU already exists (SKUs are case-insensitive).",
            ),
            models.CheckConstraint(condition=Q(qty__gte=0), name="inventory_item_qty_non_negative"),
            models.CheckConstraint(condition=Q(price__gte=0), name="inventory_item_price_non_negative"),
            models.CheckConstraint(condition=Q(cost__gte=0), name="inventory_item_cost_non_negative"),
        ]

    def __str__(self) -> str:
        return f"{self.sku} {self.name}"

    def save(self, *args, **kwargs) -> None:
        """Keep `search_text` in step with the searchable fields on every ORM save."""
        self.search_text = build_search_text(sku=self.sku, name=self.name, category=self.category, tags=self.tags)
        update_fields = kwargs.get("update_fields")
        if update_fields is not None and {"sku", "name", "category", "tags"} & set(update_fields):
            kwargs["update_fields"] = {*update_fields, "search_text"}
        super().save(*args, **kwargs)


class Sale(CreatedMs):
    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    date = models.DateField(db_index=True)
    item = models.ForeignKey(Item, on_delete=models.PROTECT, related_name="sales")
    qty = models.PositiveIntegerField()
    total = models.DecimalField(max_digits=12, decimal_places=2, help_text="qty x price at the time of sale.")
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )

    class Meta:
        ordering = ["-date", "-created_at_ms", "-id"]
        constraints = [
            models.CheckConstraint(condition=Q(qty__gt=0), name="inventory_sale_qty_positive"),
            models.CheckConstraint(condition=Q(total__gte=0), name="inventory_sale_total_non_negative"),
        ]

    def __str__(self) -> str:
        return f"{self.date} {self.item.sku} x{self.qty}"
