"""Admin for items (with history) and sales (read-only once recorded).

Both write through the inventory services with the platform's one admin pattern
(`profiles.forms.ServiceModelForm` + `profiles.admin.ServiceFormAdmin`): the form calls the service
while it validates, so a domain error is a form error and the admin saves nothing itself.
"""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import admin
from django.http import HttpRequest
from django.utils import timezone
from simple_history.admin import SimpleHistoryAdmin

from profiles.admin import ServiceFormAdmin
from profiles.forms import ServiceModelForm

from .models import Item, Sale
from .services import ITEM_FIELDS, item_create, item_update, sale_record

ADMIN_SOURCE = "admin"


class ItemAdminForm(ServiceModelForm):
    """Carries the stock as it was when the form was loaded: sales made meanwhile are never undone."""

    loaded_qty = forms.IntegerField(required=False, widget=forms.HiddenInput)
    what = "item"

    class Meta:
        model = Item
        fields = ("sku", "name", "category", "tags", "qty", "price", "cost")

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if self.instance.pk is not None:
            self.fields["loaded_qty"].initial = self.instance.qty

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean()
        assert cleaned is not None  # ModelForm.clean() returns cleaned_data
        loaded, now = cleaned.get("loaded_qty"), self.instance.qty if self.instance.pk else None
        if self.instance.pk is not None and loaded is not None and loaded != now:
            if cleaned.get("qty") == loaded:  # not edited here: keep the stock as it is now
                cleaned["qty"] = now
                self.instance.qty = now
            else:
                self.add_error("qty", f"the stock changed to {now} while this form was open; reload and try again")
        return cleaned

    def _write(self) -> Item:
        """Only the edited fields are written (so saving a name cannot undo a sale made meanwhile), and
        live pages hear about it after commit."""
        data = self.cleaned_data
        if self.instance.pk is None:
            fields = {name: data[name] for name in ITEM_FIELDS if name in data}
            return item_create(user=self.actor, source=ADMIN_SOURCE, **fields)
        edited = {name: data[name] for name in ITEM_FIELDS if name in self.changed_data}
        return item_update(item=self.instance, user=self.actor, source=ADMIN_SOURCE, **edited)


class SaleAdminForm(ServiceModelForm):
    """Records the sale through `sale_record`: insufficient stock is a form error on `qty`."""

    what = "sale"

    class Meta:
        model = Sale
        fields = ("item", "qty", "date")

    def _write(self) -> Sale:
        data = self.cleaned_data
        return sale_record(
            sku=data["item"].sku, qty=data["qty"], date=data["date"], user=self.actor, source=ADMIN_SOURCE
        )


@admin.register(Item)
class ItemAdmin(ServiceFormAdmin, SimpleHistoryAdmin):
    form = ItemAdminForm
    list_display = ("sku", "name", "category", "qty", "price", "cost", "updated")
    list_filter = ("category",)
    search_fields = ("sku", "name", "category", "search_text")
    ordering = ("sku",)


@admin.register(Sale)
class SaleAdmin(ServiceFormAdmin):
    form = SaleAdminForm
    list_display = ("date", "item", "qty", "total", "created_by", "created")
    list_filter = ("date",)
    search_fields = ("item__sku", "item__name")
    list_select_related = ("item", "created_by")
    autocomplete_fields = ("item",)
    date_hierarchy = "date"

    def get_changeform_initial_data(self, request: HttpRequest) -> dict[str, Any]:
        return {"date": timezone.localdate(), **super().get_changeform_initial_data(request)}

    def has_change_permission(self, request: HttpRequest, obj: Sale | None = None) -> bool:
        return False  # a recorded sale is a ledger entry

    def has_delete_permission(self, request: HttpRequest, obj: Sale | None = None) -> bool:
        return False
