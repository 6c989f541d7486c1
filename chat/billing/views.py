"""`GET /api/prices`, `PUT /api/prices/{api_type}/{model}` (staff) and `GET /api/usage` (staff: everyone's;
others: their own): thin views over `chat.billing`."""

from __future__ import annotations

from typing import Any

from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import permissions, serializers, viewsets
from rest_framework.request import Request
from rest_framework.response import Response

from profiles.api import keys as key_views
from profiles.api.openapi import AUTH, BODY, responses
from profiles.api.serializers import StrictKeysMixin

from ..models import Price
from . import budgets, prices, usage


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


class UsageRowSerializer(serializers.Serializer):
    key = serializers.CharField(
        allow_null=True, help_text="the user, group, registry/slug, `id: name` of a key, or day"
    )
    turns = serializers.IntegerField()
    tokens_in = serializers.IntegerField()
    tokens_out = serializers.IntegerField()
    cost_usd = serializers.FloatField()
    unpriced_turns = serializers.IntegerField()


class UsageTotalSerializer(serializers.Serializer):
    turns = serializers.IntegerField()
    tokens_in = serializers.IntegerField()
    tokens_out = serializers.IntegerField()
    cost_usd = serializers.FloatField()
    unpriced_turns = serializers.IntegerField()


class UsageReportSerializer(serializers.Serializer):
    group_by = serializers.CharField()
    since_ms = serializers.IntegerField(allow_null=True)
    rows = UsageRowSerializer(many=True)
    total = UsageTotalSerializer()


class BudgetSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    scope = serializers.DictField(help_text="{type, id}")
    amount_usd = serializers.FloatField()
    period = serializers.CharField()
    used_usd = serializers.FloatField(help_text="spent in the period plus reserved by turns under way")
    resets_at_ms = serializers.IntegerField(allow_null=True)
    created_at_ms = serializers.IntegerField()
    created_by = serializers.CharField()


class UsageViewSet(viewsets.ViewSet):
    permission_classes = [permissions.IsAuthenticated]

    @extend_schema(parameters=[UsageParamsSerializer], responses=responses({200: UsageReportSerializer}, AUTH, 400))
    def report(self, request: Request) -> Response:
        params = UsageParamsSerializer(data=request.query_params)
        params.is_valid(raise_exception=True)
        return Response(usage.usage_report(user=request.user, **params.validated_data))


class BudgetCreateSerializer(StrictKeysMixin, serializers.Serializer):
    """The body's shape; `budgets.budget_create` checks the values (with field paths)."""

    scope = serializers.JSONField(help_text='{"type": "user" | "group" | "profile" | "key", "id": ...}')
    amount_usd = serializers.JSONField(help_text="US dollars per period")
    period = serializers.CharField(help_text="day, month (UTC) or total")


class IsStaff(permissions.BasePermission):
    message = "budgets are set and read by staff"

    def has_permission(self, request: Request, view: Any) -> bool:
        return bool(request.user and request.user.is_authenticated and request.user.is_staff)


class BudgetViewSet(viewsets.ViewSet):
    permission_classes = [permissions.IsAuthenticated]

    def get_permissions(self) -> list[Any]:
        """Reading is everyone's (staff: every budget; others: those that apply to them); writing is staff's."""
        return [*super().get_permissions(), *([] if self.action == "list" else [IsStaff()])]

    @extend_schema(responses=responses({200: BudgetSerializer(many=True)}, AUTH))
    def list(self, request: Request) -> Response:
        return Response(budgets.budget_list(user=request.user))

    @extend_schema(request=BudgetCreateSerializer, responses=responses({201: BudgetSerializer}, AUTH, BODY, 403, 409))
    def create(self, request: Request) -> Response:
        body = BudgetCreateSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        made = budgets.budget_create(actor=request.user, **body.validated_data)
        return Response(next(b for b in budgets.budget_list(user=request.user) if b["id"] == made.pk), status=201)

    @extend_schema(
        responses=responses({204: None}, AUTH, 403, 404),
        parameters=[OpenApiParameter("budget_id", int, location=OpenApiParameter.PATH)],
    )
    def destroy(self, request: Request, budget_id: int) -> Response:
        budgets.budget_delete(budget_id=budget_id, actor=request.user)
        return Response(status=204)


class KeyCreateSerializer(key_views.KeyCreateSerializer):
    budget_usd = serializers.JSONField(required=False, help_text="a budget for the key's turns (US dollars)")
    budget_period = serializers.CharField(required=False, help_text="day, month (default) or total")


class KeyViewSet(key_views.KeyViewSet):
    """The API keys' routes, where a new key may come with its budget (`budgets.key_issue`)."""

    @extend_schema(request=KeyCreateSerializer, responses=responses({201: key_views.IssuedKeySerializer}, AUTH, BODY))
    def create(self, request: Request) -> Response:
        body = KeyCreateSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        issued = budgets.key_issue(owner=request.user, **body.validated_data)
        return Response(key_views.issued_body(issued), status=201)
