"""Inventory REST API: thin views that validate input, call one service or selector, and serialise.

Permissions are Django model permissions: any authenticated user reads; writing items needs
`inventory.add_item` / `change_item` / `delete_item`; recording a sale (POST /sales) needs
`inventory.add_sale` (it is the sale that is created; the stock decrement follows from it).

Domain errors (`inventory.services.InventoryError` and its subclasses, part of `profiles.errors`)
are mapped to HTTP by the project's exception handler, `profiles.api.errors`, like every API's:
400 with the field, 404 for an item that does not exist, 409 for an item that has sales.
"""

from __future__ import annotations

from typing import Any

from drf_spectacular.utils import OpenApiResponse, extend_schema, extend_schema_view
from rest_framework import mixins, status, viewsets
from rest_framework.pagination import PageNumberPagination
from rest_framework.permissions import DjangoModelPermissions
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from profiles.api.openapi import AUTH, BODY, ApiErrorSerializer, responses

from .filters import ItemFilter, SaleFilter
from .models import Item, Sale
from .selectors import inventory_report, item_get, sale_list
from .serializers import (
    ItemInputSerializer,
    ItemOutputSerializer,
    ReportOutputSerializer,
    ReportQuerySerializer,
    SaleInputSerializer,
    SaleOutputSerializer,
    SaleRecordedSerializer,
)
from .services import item_create, item_delete, item_update, sale_record


class InventoryPagination(PageNumberPagination):
    page_size = 50
    page_size_query_param = "page_size"
    max_page_size = 200


@extend_schema_view(
    list=extend_schema(responses=responses({200: ItemOutputSerializer(many=True)}, AUTH, 400, 404)),
    create=extend_schema(
        request=ItemInputSerializer, responses=responses({201: ItemOutputSerializer}, AUTH, BODY, 403)
    ),
    retrieve=extend_schema(responses=responses({200: ItemOutputSerializer}, AUTH, 404)),
    update=extend_schema(
        request=ItemInputSerializer, responses=responses({200: ItemOutputSerializer}, AUTH, BODY, 403, 404)
    ),
    partial_update=extend_schema(
        request=ItemInputSerializer, responses=responses({200: ItemOutputSerializer}, AUTH, BODY, 403, 404)
    ),
    destroy=extend_schema(
        responses=responses(
            {204: None, 409: OpenApiResponse(ApiErrorSerializer, description="`conflict`: the item has sales.")},
            AUTH,
            403,
            404,
        )
    ),
)
class ItemViewSet(viewsets.ModelViewSet):
    """Items, addressed by SKU (case-insensitive)."""

    queryset = Item.objects.order_by("sku")
    serializer_class = ItemOutputSerializer
    filterset_class = ItemFilter
    pagination_class = InventoryPagination
    permission_classes = [DjangoModelPermissions]
    lookup_field = "sku"
    lookup_value_regex = "[^/]+"

    def filter_queryset(self, queryset):
        """`?ordering=,` (only empty terms) clears the order: fall back to SKU order, so that pages
        stay stable."""
        queryset = super().filter_queryset(queryset)
        return queryset if queryset.ordered else queryset.order_by("sku")

    def get_object(self) -> Item:
        item = item_get(sku=self.kwargs["sku"])  # NoSuchItem: 404
        self.check_object_permissions(self.request, item)
        return item

    def create(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        data = self._valid_input(request)
        item = item_create(**data, user=request.user)
        return Response(ItemOutputSerializer(item).data, status=status.HTTP_201_CREATED)

    def update(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        item = self.get_object()
        data = self._valid_input(request, partial=kwargs.get("partial", False))
        item = item_update(item=item, user=request.user, **data)
        return Response(ItemOutputSerializer(item).data)

    def destroy(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        item_delete(item=self.get_object(), user=request.user)  # ItemInUse: 409; deleted meanwhile: 404
        return Response(status=status.HTTP_204_NO_CONTENT)

    @staticmethod
    def _valid_input(request: Request, partial: bool = False) -> dict[str, Any]:
        serializer = ItemInputSerializer(data=request.data, partial=partial)
        serializer.is_valid(raise_exception=True)
        return dict(serializer.validated_data)


@extend_schema_view(
    list=extend_schema(responses=responses({200: SaleOutputSerializer(many=True)}, AUTH, 400, 404)),
    create=extend_schema(
        request=SaleInputSerializer,
        responses=responses(
            {
                201: SaleRecordedSerializer,
                400: OpenApiResponse(ApiErrorSerializer, description="`invalid`: bad input or insufficient stock."),
            },
            AUTH,
            BODY,
            403,
        ),
    ),
    retrieve=extend_schema(responses=responses({200: SaleOutputSerializer}, AUTH, 404)),
)
class SaleViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, viewsets.GenericViewSet):
    """Sales, newest first. Recording one decrements stock atomically and never oversells."""

    queryset = Sale.objects.all()  # for DjangoModelPermissions; rows come from the selector
    serializer_class = SaleOutputSerializer
    filterset_class = SaleFilter
    pagination_class = InventoryPagination
    permission_classes = [DjangoModelPermissions]
    lookup_value_regex = "[0-9a-fA-F-]{32,36}"

    def get_queryset(self):
        return sale_list()

    def create(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        serializer = SaleInputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        sale = sale_record(**serializer.validated_data, user=request.user, source="api")
        return Response(SaleRecordedSerializer(sale).data, status=status.HTTP_201_CREATED)


class ReportView(APIView):
    """Stock value, low/out-of-stock items and sales totals (on or after `since`)."""

    @extend_schema(parameters=[ReportQuerySerializer], responses=responses({200: ReportOutputSerializer}, AUTH, 400))
    def get(self, request: Request) -> Response:
        query = ReportQuerySerializer(data=request.query_params)
        query.is_valid(raise_exception=True)
        report = inventory_report(**query.validated_data)
        return Response(ReportOutputSerializer(report).data)
