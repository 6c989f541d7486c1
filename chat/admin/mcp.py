"""MCP servers in the admin, written through `chat.mcp.services` (audited): their tools are fetched on save
and by the refresh action."""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest

from profiles.admin import ServiceFormAdmin
from profiles.admin.common import _when
from profiles.forms import ServiceModelForm

from ..mcp.services import mcp_server_create, mcp_server_delete, mcp_server_refresh, mcp_server_update
from ..models import McpServer


class McpServerAdminForm(ServiceModelForm):
    what = "MCP server"
    url = forms.URLField(max_length=500, assume_scheme="https", help_text="its streamable HTTP endpoint")

    class Meta:
        model = McpServer
        fields = ("slug", "url", "headers_from_env", "visible_to_groups", "timeout_seconds")
        help_texts = {
            "headers_from_env": "header -> NAME of the environment variable holding its value, e.g. "
            '{"Authorization": "ACME_MCP_TOKEN"} (values are never stored)',
            "visible_to_groups": 'names of the groups whose members may call its tools, e.g. ["support"]; '
            "empty: everyone",
        }

    def _write(self) -> McpServer:
        data = self.cleaned_data
        fields = {name: data[name] for name in ("url", "headers_from_env", "visible_to_groups", "timeout_seconds")}
        if self.instance.pk is None:
            return mcp_server_create(actor=self.actor, slug=data["slug"], **fields)
        return mcp_server_update(actor=self.actor, slug=self.instance.slug, changes=fields)


@admin.register(McpServer)
class McpServerAdmin(ServiceFormAdmin):
    """MCP servers through the services (audited): their tools are fetched on save and by the action."""

    form = McpServerAdminForm
    list_display = ("slug", "url", "tool_names", "fetched", "tools_error")
    readonly_fields = ("tool_names", "fetched", "tools_error")
    actions = ["refresh", "remove"]

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> tuple[str, ...]:
        return (*self.readonly_fields, "slug") if obj is not None else self.readonly_fields

    @admin.display(description="tools")
    def tool_names(self, obj: McpServer) -> str:
        return ", ".join(tool["name"] for tool in obj.tools) or "—"

    @admin.display(description="tools fetched", ordering="tools_fetched_at_ms")
    def fetched(self, obj: McpServer) -> str | None:
        return _when(obj.tools_fetched_at_ms) if obj.tools_fetched_at_ms else None

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False  # the `remove` action deletes through the service

    def get_actions(self, request: HttpRequest) -> dict[str, Any]:
        return {k: v for k, v in super().get_actions(request).items() if k != "delete_selected"}

    @admin.action(description="Fetch the tools of the selected servers again")
    def refresh(self, request: HttpRequest, queryset: QuerySet[McpServer]) -> None:
        for server in queryset:
            fetched = mcp_server_refresh(actor=request.user, slug=server.slug)
            level = messages.WARNING if fetched.tools_error else messages.SUCCESS
            detail = f": {fetched.tools_error}" if fetched.tools_error else ""
            self.message_user(request, f"{server.slug}: {len(fetched.tools)} tool(s){detail}", level)

    @admin.action(description="Delete the selected MCP servers")
    def remove(self, request: HttpRequest, queryset: QuerySet[McpServer]) -> None:
        for server in queryset:
            mcp_server_delete(actor=request.user, slug=server.slug)
        self.message_user(request, "MCP servers deleted", messages.SUCCESS)
