"""API keys in the admin: listed without their secrets (only a hash is stored), revoked through the
service; made and rotated by their owners (`/api/keys`), where the secret can be shown once."""

from __future__ import annotations

from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest

from ..errors import ProfileError
from ..keys import key_revoke
from ..models import ApiKey
from .common import InspectOnlyAdmin, _when


@admin.register(ApiKey)
class ApiKeyAdmin(InspectOnlyAdmin):
    list_display = ("name", "prefix", "owner", "scope_list", "rpm", "tpm", "expires", "revoked", "created")
    list_filter = ("revoked_at_ms",)
    list_select_related = ("owner",)
    search_fields = ("name", "prefix", "owner__username")
    fields = (("name", "prefix", "owner"), "scope_list", ("rpm", "tpm"), ("created", "expires", "revoked"))
    readonly_fields = ("scope_list", "created", "expires", "revoked")
    actions = ["revoke"]

    @admin.display(description="scopes")
    def scope_list(self, obj: ApiKey) -> str:
        return ", ".join(obj.scopes)

    @admin.display(description="expires", ordering="expires_at_ms")
    def expires(self, obj: ApiKey) -> str:
        return _when(obj.expires_at_ms) or "never"

    @admin.display(description="revoked", ordering="revoked_at_ms")
    def revoked(self, obj: ApiKey) -> str:
        return _when(obj.revoked_at_ms) or "-"

    @admin.action(description="Revoke the selected keys (they stop working at once)")
    def revoke(self, request: HttpRequest, queryset: QuerySet[ApiKey]) -> None:
        for key in queryset:
            try:
                key_revoke(key_id=key.pk, actor=request.user)
            except ProfileError as exc:
                self.message_user(request, f"key {key.name!r}: {exc.message}", messages.ERROR)
            else:
                self.message_user(request, f"key {key.name!r} ({key.prefix}…) revoked", messages.SUCCESS)
