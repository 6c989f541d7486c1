"""`/api/chat/mcp-servers` (both mounts): thin views over `chat.mcp.services` (staff with the model
permissions). Header values never appear: only the names of the environment variables holding them."""

from __future__ import annotations

from typing import Any

from django.urls import URLPattern, path
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import serializers, viewsets
from rest_framework.request import Request
from rest_framework.response import Response

from profiles.api.mounted import Mounted
from profiles.api.openapi import AUTH, BODY, responses
from profiles.api.serializers import StrictKeysMixin
from profiles.mounts import Mount

from ..models import McpServer
from . import selectors, services

SLUG = OpenApiParameter("slug", str, location=OpenApiParameter.PATH, description="the server's slug")


class McpToolSerializer(serializers.Serializer):
    name = serializers.CharField()
    description = serializers.CharField()
    input_schema = serializers.DictField()
    schema_hash = serializers.CharField(help_text="sha256 of the name, description and input schema")


class McpServerSerializer(serializers.ModelSerializer):
    tools = serializers.SerializerMethodField(help_text="the names of its tools as last fetched")

    class Meta:
        model = McpServer
        fields = [
            "slug",
            "url",
            "headers_from_env",
            "visible_to_groups",
            "timeout_seconds",
            "tools",
            "tools_fetched_at_ms",
            "tools_error",
            "created_at_ms",
            "updated_at_ms",
        ]

    def get_tools(self, server: McpServer) -> list[str]:
        return [tool["name"] for tool in server.tools]


class McpServerWriteSerializer(StrictKeysMixin, serializers.Serializer):
    """The body's shape; `chat.mcp.services` checks the values (with field paths)."""

    url = serializers.JSONField(required=False, help_text="its streamable HTTP endpoint")
    headers_from_env = serializers.JSONField(
        required=False, help_text="header -> NAME of the environment variable holding its value"
    )
    visible_to_groups = serializers.JSONField(required=False, help_text="groups whose members may call its tools")
    timeout_seconds = serializers.JSONField(required=False, help_text="per call (default 10)")


class McpServerCreateSerializer(McpServerWriteSerializer):
    slug = serializers.CharField(help_text="names its tools: mcp:<slug>/<tool>")


class McpServerViewSet(Mounted, viewsets.ViewSet):
    """The servers are the platform's, the same under every mount (each mount serves the routes)."""

    @extend_schema(responses=responses({200: McpServerSerializer(many=True)}, AUTH, 403))
    def list(self, request: Request) -> Response:
        services.require_perm(request.user, "view")
        return Response(McpServerSerializer(selectors.mcp_server_list(), many=True).data)

    @extend_schema(
        request=McpServerCreateSerializer, responses=responses({201: McpServerSerializer}, AUTH, BODY, 403, 409)
    )
    def create(self, request: Request) -> Response:
        body = McpServerCreateSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        server = services.mcp_server_create(actor=request.user, **body.validated_data)
        return Response(McpServerSerializer(server).data, status=201)

    @extend_schema(responses=responses({200: McpServerSerializer}, AUTH, 403, 404), parameters=[SLUG])
    def retrieve(self, request: Request, slug: str) -> Response:
        services.require_perm(request.user, "view")
        return Response(McpServerSerializer(selectors.mcp_server_get(slug=slug)).data)

    @extend_schema(
        request=McpServerWriteSerializer,
        responses=responses({200: McpServerSerializer}, AUTH, BODY, 403, 404),
        parameters=[SLUG],
    )
    def partial_update(self, request: Request, slug: str) -> Response:
        body = McpServerWriteSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        server = services.mcp_server_update(actor=request.user, slug=slug, changes=dict(body.validated_data))
        return Response(McpServerSerializer(server).data)

    @extend_schema(responses=responses({204: None}, AUTH, 403, 404), parameters=[SLUG])
    def destroy(self, request: Request, slug: str) -> Response:
        services.mcp_server_delete(actor=request.user, slug=slug)
        return Response(status=204)

    @extend_schema(responses=responses({200: McpToolSerializer(many=True)}, AUTH, 403, 404), parameters=[SLUG])
    def tools(self, request: Request, slug: str) -> Response:
        services.require_perm(request.user, "view")
        return Response(McpToolSerializer(selectors.mcp_server_get(slug=slug).tools, many=True).data)

    @extend_schema(request=None, responses=responses({200: McpServerSerializer}, AUTH, 403, 404), parameters=[SLUG])
    def refresh(self, request: Request, slug: str) -> Response:
        return Response(McpServerSerializer(services.mcp_server_refresh(actor=request.user, slug=slug)).data)


def mcp_server_urls(mount: Mount) -> list[URLPattern]:
    def view(actions: dict[str, Any]) -> Any:
        return McpServerViewSet.as_view(actions, mount=mount)

    return [
        path("api/chat/mcp-servers", view({"get": "list", "post": "create"}), name="mcp-server-list"),
        path(
            "api/chat/mcp-servers/<str:slug>",
            view({"get": "retrieve", "patch": "partial_update", "delete": "destroy"}),
            name="mcp-server-detail",
        ),
        path("api/chat/mcp-servers/<str:slug>/tools", view({"get": "tools"}), name="mcp-server-tools"),
        path("api/chat/mcp-servers/<str:slug>/refresh", view({"post": "refresh"}), name="mcp-server-refresh"),
    ]
