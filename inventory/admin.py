"""Admin for items (with history) and sales (read-only once recorded; adding one goes through the service)."""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import admin
from django.http import HttpRequest
from django.utils import timezone
from simple_history.admin import SimpleHistoryAdmin

from .models import Item, Sale
from .services import InventoryError, inventory_notify, sale_record


@admin.register(Item)
class ItemAdmin(SimpleHistoryAdmin):
    list_display = ("sku", "name", "category", "qty", "price", "cost", "updated_at")
    list_filter = ("category",)
    search_fields = ("sku", "name", "category", "search_text")
    ordering = ("sku",)

    def save_model(self, request: HttpRequest, obj: Item, form: Any, change: bool) -> None:
        """Write only the edited fields, so saving a name cannot undo a sale made meanwhile.

        The form's model validation enforces the constraints; live views hear about it after commit.
        """
        if change:
            obj.save(update_fields=[*form.changed_data, "updated_at"])
        else:
            obj.save()
        inventory_notify(skus=[obj.sku], source="admin")


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
