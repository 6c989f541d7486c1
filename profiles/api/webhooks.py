"""A registry's webhooks (`profiles.webhooks`) under each mount's profile API:
`…/registries/{slug}/webhooks` (GET, POST), `…/webhooks/{id}` (DELETE), `…/webhooks/{id}/deliveries` (GET).
Its editors with `profiles.change_registry` manage and read them; the secret is shown once, on creation."""

from __future__ import annotations

from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import serializers
from rest_framework.request import Request
from rest_framework.response import Response

from profiles import webhooks
from profiles.validation import canonical_slug

from .mounted import MountedViewSet
from .openapi import AUTH, BODY, REGISTRY_PATH, responses
from .serializers import StrictKeysMixin

WEBHOOK_PATH = OpenApiParameter("webhook_id", int, location=OpenApiParameter.PATH, description="Webhook id")


class WebhookCreateSerializer(StrictKeysMixin, serializers.Serializer):
    url = serializers.CharField(max_length=2000, help_text="http(s); not a loopback or private address")
    events = serializers.ListField(child=serializers.ChoiceField(choices=webhooks.EVENTS), min_length=1)


class WebhookSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    url = serializers.CharField()
    events = serializers.ListField(child=serializers.CharField())
    created_by = serializers.CharField()
    created_at_ms = serializers.IntegerField()


class WebhookCreatedSerializer(WebhookSerializer):
    secret = serializers.CharField(help_text="Shown this once: the HMAC-SHA256 key of X-Webhook-Signature.")


class DeliverySerializer(serializers.Serializer):
    id = serializers.UUIDField(source="event_id")
    event = serializers.CharField()
    status = serializers.ChoiceField(choices=["pending", "delivered", "failed"])
    attempts = serializers.IntegerField()
    last_status_code = serializers.IntegerField(allow_null=True)
    last_error = serializers.CharField(allow_blank=True)
    at_ms = serializers.IntegerField(source="created_at_ms")


class WebhookViewSet(MountedViewSet):
    write_permissions = {
        "list": "profiles.change_registry",
        "create": "profiles.change_registry",
        "destroy": "profiles.change_registry",
        "deliveries": "profiles.change_registry",
    }

    @extend_schema(
        responses=responses({200: WebhookSerializer(many=True)}, AUTH, 400, 403, 404), parameters=[REGISTRY_PATH]
    )
    def list(self, request: Request, slug: str) -> Response:
        rows = webhooks.webhook_list(registry_slug=canonical_slug(slug, field="registry"), actor=request.user)
        return Response(WebhookSerializer(rows, many=True).data)

    @extend_schema(
        request=WebhookCreateSerializer,
        responses=responses({201: WebhookCreatedSerializer}, AUTH, BODY, 403, 404),
        parameters=[REGISTRY_PATH],
    )
    def create(self, request: Request, slug: str) -> Response:
        body = WebhookCreateSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        made = webhooks.webhook_create(
            registry_slug=canonical_slug(slug, field="registry"), actor=request.user, **body.validated_data
        )
        return Response(WebhookCreatedSerializer(made).data, status=201)

    @extend_schema(responses=responses({204: None}, AUTH, 400, 403, 404), parameters=[REGISTRY_PATH, WEBHOOK_PATH])
    def destroy(self, request: Request, slug: str, webhook_id: int) -> Response:
        webhooks.webhook_delete(
            registry_slug=canonical_slug(slug, field="registry"), webhook_id=webhook_id, actor=request.user
        )
        return Response(status=204)

    @extend_schema(
        responses=responses({200: DeliverySerializer(many=True)}, AUTH, 400, 403, 404),
        parameters=[REGISTRY_PATH, WEBHOOK_PATH],
        description="The webhook's latest 100 deliveries, newest first.",
    )
    def deliveries(self, request: Request, slug: str, webhook_id: int) -> Response:
        rows = webhooks.delivery_list(
            registry_slug=canonical_slug(slug, field="registry"), webhook_id=webhook_id, actor=request.user
        )
        return Response(DeliverySerializer(rows, many=True).data)
