"""Admin for items (with history) and sales (read-only once recorded; adding one goes through the service)."""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import admin
from django.http import HttpRequest
from django.utils import timezone
from simple_history.admin import SimpleHistoryAdmin

from .models import Item, Sale
from .services import ITEM_FIELDS, InventoryError, item_create, item_update, sale_record


class ItemAdminForm(forms.ModelForm):
    """Carries the stock as it was when the form was loaded: sales made meanwhile are never undone."""

    loaded_qty = forms.IntegerField(required=False, widget=forms.HiddenInput)

    class Meta:
        model = Item
        fields = ("sku", "name", "category", "tags", "qty", "price", "cost")

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if self.instance.pk is not None:
            self.fields["loaded_qty"].initial = self.instance.qty

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean()
        loaded, now = cleaned.get("loaded_qty"), self.instance.qty if self.instance.pk else None
        if self.instance.pk is not None and loaded is not None and loaded != now:
            if cleaned.get("qty") == loaded:  # not edited here: keep the stock as it is now
                cleaned["qty"] = now
                self.instance.qty = now
            else:
                self.add_error("qty", f"the stock changed to {now} while this form was open; reload and try again")
        return cleaned


@admin.register(Item)
class ItemAdmin(SimpleHistoryAdmin):
    form = ItemAdminForm
    list_display = ("sku", "name", "category", "qty", "price", "cost", "updated_at")
    list_filter = ("category",)
    search_fields = ("sku", "name", "category", "search_text")
    ordering = ("sku",)

    def save_model(self, request: HttpRequest, obj: Item, form: Any, change: bool) -> None:
        """Through the inventory service like every other write: only the edited fields are written (so
        saving a name cannot undo a sale made meanwhile), and live pages hear about it after commit.
        The form has already validated the model and its constraints."""
        edited = {
            name: form.cleaned_data[name]
            for name in ITEM_FIELDS
            if name in form.cleaned_data and (not change or form.cleaned_data[name] != form.initial.get(name))
        }
        if change:
            item_update(item=Item.objects.get(pk=obj.pk), user=request.user, source="admin", **edited)
            return
        created = item_create(user=request.user, source="admin", **edited)
        obj.pk, obj._state.adding = created.pk, False  # the admin logs and redirects with `obj`


class SaleAdminForm(forms.ModelForm):
    """Records the sale through `sale_record` during validation.

    Why in clean(): it is the last point where insufficient stock can still become a form error.
    The admin's add view runs in one transaction, so nothing persists if a later step fails.
    """

    acting_user: Any = None

    class Meta:
        model = Sale
        fields = ("item", "qty", "date")

    def clean(self) -> dict[str, Any]:
        data = super().clean()
        if self.errors or self.instance._state.adding is False:
            return data
        try:
            self.instance = sale_record(
                sku=data["item"].sku, qty=data["qty"], date=data["date"], user=self.acting_user, source="admin"
            )
        except InventoryError as exc:
            self.add_error(exc.field if exc.field in self.fields else None, exc.message)
        return data


@admin.register(Sale)
class SaleAdmin(admin.ModelAdmin):
    form = SaleAdminForm
    list_display = ("date", "item", "qty", "total", "created_by", "created_at")
    list_filter = ("date",)
    search_fields = ("item__sku", "item__name")
    list_select_related = ("item", "created_by")
    autocomplete_fields = ("item",)
    date_hierarchy = "date"

    def get_form(self, request: HttpRequest, obj: Sale | None = None, **kwargs: Any) -> type[forms.ModelForm]:
        form = super().get_form(request, obj, **kwargs)
        form.acting_user = request.user
        return form

    def get_changeform_initial_data(self, request: HttpRequest) -> dict[str, Any]:
        return {"date": timezone.localdate(), **super().get_changeform_initial_data(request)}

    def save_model(self, request: HttpRequest, obj: Sale, form: Any, change: bool) -> None:
        """The form already recorded the sale through the service."""

    def has_change_permission(self, request: HttpRequest, obj: Sale | None = None) -> bool:
        return False  # a recorded sale is a ledger entry

    def has_delete_permission(self, request: HttpRequest, obj: Sale | None = None) -> bool:
        return False
