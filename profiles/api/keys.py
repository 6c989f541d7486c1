"""API keys (`profiles.keys`): `GET|POST /api/keys`, `DELETE /api/keys/{id}`, `POST /api/keys/{id}/rotate`
(the authentication that lets a key act as its owner is in `profiles.api.authentication`)."""

from __future__ import annotations

from typing import Any

from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import permissions, serializers, viewsets
from rest_framework.request import Request
from rest_framework.response import Response

from profiles import keys
from profiles.models import ApiKey
from profiles.timestamps import now_ms

from .openapi import AUTH, BODY, responses
from .serializers import StrictKeysMixin

KEY_PATH = OpenApiParameter("key_id", int, location=OpenApiParameter.PATH, description="The key's id")


class KeySerializer(serializers.ModelSerializer):
    owner = serializers.CharField(source="owner.username", read_only=True)
    status = serializers.SerializerMethodField(help_text="active, expired or revoked")

    class Meta:
        model = ApiKey
        fields = [
            "id",
            "name",
            "prefix",
            "owner",
            "scopes",
            "expires_at_ms",
            "rpm",
            "tpm",
            "status",
            "created_at_ms",
            "rotated_at_ms",
            "revoked_at_ms",
        ]

    def get_status(self, key: ApiKey) -> str:
        if key.revoked_at_ms is not None:
            return "revoked"
        if key.expires_at_ms is not None and key.expires_at_ms <= self.context.get("now_ms", 0):
            return "expired"
        return "active"


class IssuedKeySerializer(KeySerializer):
    key = serializers.CharField(help_text="The secret: shown this once, stored only as a hash")

    class Meta(KeySerializer.Meta):
        fields = [*KeySerializer.Meta.fields, "key"]


class KeyCreateSerializer(StrictKeysMixin, serializers.Serializer):
    """The body's shape; `profiles.keys.key_create` checks the rest (scopes, expiry) with field paths."""

    name = serializers.CharField(max_length=keys.MAX_NAME_CHARS)
    scopes = serializers.ListField(
        child=serializers.CharField(), help_text='`"*"`, `"[registry/]slug"` or `"[registry/]slug@label"`'
    )
    expires_at_ms = serializers.IntegerField(required=False, allow_null=True)
    rpm = serializers.IntegerField(required=False, allow_null=True, min_value=1)
    tpm = serializers.IntegerField(required=False, allow_null=True, min_value=1)


def issued_body(issued: keys.Issued) -> dict[str, Any]:
    data = dict(KeySerializer(issued.key, context={"now_ms": now_ms()}).data)
    return {**data, "key": issued.secret}


class KeyViewSet(viewsets.ViewSet):
    permission_classes = [permissions.IsAuthenticated]

    @extend_schema(
        responses=responses({200: KeySerializer(many=True)}, AUTH),
        parameters=[OpenApiParameter("all", bool, description="staff: every user's keys")],
    )
    def list(self, request: Request) -> Response:
        everyone = request.query_params.get("all") in ("1", "true")
        rows = keys.key_list(user=request.user, everyone=everyone)
        return Response(KeySerializer(rows, many=True, context={"now_ms": now_ms()}).data)

    @extend_schema(request=KeyCreateSerializer, responses=responses({201: IssuedKeySerializer}, AUTH, BODY))
    def create(self, request: Request) -> Response:
        body = KeyCreateSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        issued = keys.key_create(owner=request.user, **body.validated_data)
        return Response(issued_body(issued), status=201)

    @extend_schema(responses=responses({204: None}, AUTH, 404), parameters=[KEY_PATH])
    def destroy(self, request: Request, key_id: int) -> Response:
        keys.key_revoke(key_id=key_id, actor=request.user)
        return Response(status=204)

    @extend_schema(request=None, responses=responses({200: IssuedKeySerializer}, AUTH, 404, 409), parameters=[KEY_PATH])
    def rotate(self, request: Request, key_id: int) -> Response:
        return Response(issued_body(keys.key_rotate(key_id=key_id, actor=request.user)))
