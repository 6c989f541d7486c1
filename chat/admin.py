"""Prices in the admin: a new price (from now, or a later time) is written by `chat.billing.prices.price_set`
through the platform's admin pattern; a price set is history (never changed or deleted: set a new one)."""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import admin
from django.http import HttpRequest

from profiles.admin import ServiceFormAdmin
from profiles.admin.common import _when
from profiles.forms import ServiceModelForm

from .billing.prices import price_set
from .models import Price


class PriceAdminForm(ServiceModelForm):
    what = "price"
    # Not the model field: empty means now (the service's default).
    effective_from_ms = forms.IntegerField(
        required=False, min_value=0, help_text="milliseconds since the epoch; empty: now"
    )

    class Meta:
        model = Price
        fields = ("api_type", "model", "input_usd_per_mtok", "output_usd_per_mtok")

    def _write(self) -> Price:
        data = self.cleaned_data
        return price_set(
            api_type=data["api_type"],
            model=data["model"],
            input_usd_per_mtok=str(data["input_usd_per_mtok"]),
            output_usd_per_mtok=str(data["output_usd_per_mtok"]),
            effective_from_ms=data.get("effective_from_ms"),
            actor=self.actor,
        )


@admin.register(Price)
class PriceAdmin(ServiceFormAdmin):
    form = PriceAdminForm
    fields = ("api_type", "model", "input_usd_per_mtok", "output_usd_per_mtok", "effective_from_ms")
    list_display = ("api_type", "model", "input_usd_per_mtok", "output_usd_per_mtok", "effective", "created_by")
    list_filter = ("api_type",)
    search_fields = ("model",)

    @admin.display(description="effective from", ordering="effective_from_ms")
    def effective(self, obj: Price) -> str | None:
        return _when(obj.effective_from_ms)

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False  # history: a new price is a new row

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False
