"""Query-string filters of the inventory REST lists (one FilterSet per model)."""

from __future__ import annotations

import django_filters as filters
from django.db.models import QuerySet

from .models import Item, Sale
from .selectors import item_filter_search


class ItemFilter(filters.FilterSet):
    search = filters.CharFilter(method="filter_search", help_text="Substring of sku, name, category or a tag.")
    category = filters.CharFilter(field_name="category", lookup_expr="iexact")
    ordering = filters.OrderingFilter(fields=("sku", "name", "qty", "price", "category"))

    class Meta:
        model = Item
        fields = ("search", "category")

    def filter_search(self, queryset: QuerySet[Item], name: str, value: str) -> QuerySet[Item]:
        """Same matching as the assistant's search tool."""
        return item_filter_search(queryset, value)


class SaleFilter(filters.FilterSet):
    sku = filters.CharFilter(field_name="item__sku", lookup_expr="iexact")
    date_from = filters.DateFilter(field_name="date", lookup_expr="gte")
    date_to = filters.DateFilter(field_name="date", lookup_expr="lte")

    class Meta:
        model = Sale
        fields = ("sku", "date_from", "date_to")
