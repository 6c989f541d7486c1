"""Prices and budgets in the admin. Prices: a new price (from now, or a later time) is written by
`chat.billing.prices.price_set` through the platform's admin pattern; a price set is history (never changed
or deleted: set a new one)."""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse
from django.template.response import TemplateResponse
from django.urls import URLPattern, path

from profiles.admin import ServiceFormAdmin
from profiles.admin.common import _when
from profiles.forms import ServiceModelForm

from ..billing.budgets import budget_create, budget_delete, budget_used
from ..billing.prices import price_set
from ..billing.usage import GROUPINGS, usage_report
from ..models import Budget, Price


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

    def get_urls(self) -> list[URLPattern]:
        usage_view = self.admin_site.admin_view(self.usage_view)  # login, staff and CSRF protection
        return [path("usage/", usage_view, name="chat_price_usage"), *super().get_urls()]

    def usage_view(self, request: HttpRequest) -> HttpResponse:
        """Turns, tokens and cost per user, group, profile, key or day (`?group_by=`; staff see everyone's)."""
        group_by = request.GET.get("group_by", "user")
        if group_by not in GROUPINGS:
            group_by = "user"
        context = {
            **self.admin_site.each_context(request),
            "opts": self.opts,
            "title": "Usage",
            "report": usage_report(user=request.user, group_by=group_by),
            "groupings": list(GROUPINGS),
        }
        return TemplateResponse(request, "admin/chat/price/usage.html", context)

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False  # history: a new price is a new row

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


class BudgetAdminForm(ServiceModelForm):
    what = "budget"

    class Meta:
        model = Budget
        fields = ("scope_type", "scope_id", "amount_usd", "period")
        help_texts = {"scope_id": "the user's id, the group's name, registry/slug, or the API key's id"}

    def _write(self) -> Budget:
        data = self.cleaned_data
        return budget_create(
            scope={"type": data["scope_type"], "id": data["scope_id"]},
            amount_usd=str(data["amount_usd"]),
            period=data["period"],
            actor=self.actor,
        )


@admin.register(Budget)
class BudgetAdmin(ServiceFormAdmin):
    """Budgets with what is used of them now; added and deleted through the service (audited)."""

    form = BudgetAdminForm
    list_display = ("scope_type", "scope_id", "amount_usd", "period", "used", "created_by")
    list_filter = ("scope_type", "period")
    actions = ["remove"]

    @admin.display(description="used now (US$)")
    def used(self, obj: Budget) -> str:
        return f"{budget_used(obj):.6f}"

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False  # delete it and set another

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False  # the `remove` action deletes through the service

    def get_actions(self, request: HttpRequest) -> dict[str, Any]:
        return {k: v for k, v in super().get_actions(request).items() if k != "delete_selected"}

    @admin.action(description="Delete the selected budgets")
    def remove(self, request: HttpRequest, queryset: QuerySet[Budget]) -> None:
        for budget in queryset:
            budget_delete(budget_id=budget.pk, actor=request.user)
        self.message_user(request, "budgets deleted", messages.SUCCESS)
