"""`GET /api/prices`, `PUT /api/prices/{api_type}/{model}` (staff) and `GET /api/usage` (staff: everyone's;
others: their own): thin views over `chat.billing`."""

from __future__ import annotations

from typing import Any

from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import permissions, serializers, viewsets
from rest_framework.request import Request
from rest_framework.response import Response

from profiles.api.openapi import AUTH, BODY, responses
from profiles.api.serializers import StrictKeysMixin

from ..models import Price
from . import prices, usage


class PriceSerializer(serializers.ModelSerializer):
    class Meta:
        model = Price
        fields = [
            "api_type",
            "model",
            "input_usd_per_mtok",
            "output_usd_per_mtok",
            "effective_from_ms",
            "created_at_ms",
            "created_by",
        ]


class PriceSetSerializer(StrictKeysMixin, serializers.Serializer):
    """The body's shape; `prices.price_set` checks the values (with field paths)."""

    input_usd_per_mtok = serializers.JSONField(help_text="US dollars per million input (prompt) tokens")
    output_usd_per_mtok = serializers.JSONField(help_text="US dollars per million output (completion) tokens")
    effective_from_ms = serializers.IntegerField(required=False, help_text="default: now")


class UsageParamsSerializer(StrictKeysMixin, serializers.Serializer):
    group_by = serializers.ChoiceField(choices=list(usage.GROUPINGS))
    since_ms = serializers.IntegerField(required=False, min_value=0)


class PriceViewSet(viewsets.ViewSet):
    permission_classes = [permissions.IsAuthenticated]

    @extend_schema(responses=responses({200: PriceSerializer(many=True)}, AUTH))
    def list(self, request: Request) -> Response:
        return Response(PriceSerializer(prices.price_list(), many=True).data)

    @extend_schema(
        request=PriceSetSerializer,
        responses=responses({200: PriceSerializer}, AUTH, BODY, 403),
        parameters=[
            OpenApiParameter("api_type", str, location=OpenApiParameter.PATH, description="openai, anthropic, offline"),
            OpenApiParameter("model", str, location=OpenApiParameter.PATH, description="the engine's model"),
        ],
    )
    def update(self, request: Request, api_type: str, model: str) -> Response:
        body = PriceSetSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        price = prices.price_set(api_type=api_type, model=model, actor=request.user, **body.validated_data)
        return Response(PriceSerializer(price).data)


class UsageViewSet(viewsets.ViewSet):
    permission_classes = [permissions.IsAuthenticated]

    @extend_schema(parameters=[UsageParamsSerializer], responses=responses({200: dict[str, Any]}, AUTH, 400))
    def list(self, request: Request) -> Response:
        params = UsageParamsSerializer(data=request.query_params)
        params.is_valid(raise_exception=True)
        return Response(usage.usage_report(user=request.user, **params.validated_data))
