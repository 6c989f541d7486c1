"""The registry admin (settings, labels, access, approvals) and read-only views of profile revisions
and users' selections."""

from __future__ import annotations

from typing import TYPE_CHECKING

from django.contrib import admin
from django.db.models import Count, QuerySet
from django.http import HttpRequest

from ..forms import RegistryAdminForm
from ..models import ProfileRevision, ProfileSelection, Registry

if TYPE_CHECKING:
    from typing import TypedDict

    from django_stubs_ext import WithAnnotations

    class ProfileCount(TypedDict):
        """The annotation `RegistryAdmin.get_queryset` adds to each registry."""

        profile_count: int


from .common import InspectOnlyAdmin, ServiceAdmin, _pretty_json


@admin.register(Registry)
class RegistryAdmin(ServiceAdmin):
    form = RegistryAdminForm
    list_display = ("slug", "display_name", "default", "serve_label", "version", "profile_count")
    list_select_related = ("default_profile",)
    search_fields = ("slug", "display_name")
    identity_fields = ("slug",)
    readonly_fields = ("version", "tags", "created", "updated")
    form_only_fields = ("expected_version", "protected_labels")
    add_fieldsets = (
        (None, {"fields": ("slug", "display_name", "description", "protected_labels", "serve_label")}),
        ("Access", {"fields": ("editor_groups",)}),
    )
    fieldsets = (
        (None, {"fields": ("slug", "display_name", "description", "default_profile", "expected_version")}),
        ("Labels", {"fields": ("protected_labels", "serve_label")}),
        ("Access", {"fields": ("editor_groups", "group_defaults")}),
        ("Approvals", {"fields": ("required_approvals", "approver_groups")}),
        ("Metadata", {"fields": ("version", "tags", ("created", "updated"))}),
    )

    def get_queryset(self, request: HttpRequest) -> QuerySet[Registry]:
        return super().get_queryset(request).annotate(profile_count=Count("profiles"))

    @admin.display(description="default profile", ordering="default_profile__slug")
    def default(self, obj: Registry) -> str | None:
        default = obj.default_profile  # no query when there is none
        return default.slug if default is not None else None

    @admin.display(description="profiles", ordering="profile_count")
    def profile_count(self, obj: WithAnnotations[Registry, ProfileCount]) -> int:
        return obj.profile_count

    def has_delete_permission(self, request: HttpRequest, obj: Registry | None = None) -> bool:
        """Deleting a registry cascades to all its profiles: superusers only."""
        return request.user.is_superuser and super().has_delete_permission(request, obj)


@admin.register(ProfileRevision)
class ProfileRevisionAdmin(InspectOnlyAdmin):
    list_display = ("registry_slug", "profile_slug", "version", "updated", "updated_by", "source", "change")
    list_filter = ("source", "registry_slug")
    search_fields = ("registry_slug", "profile_slug", "change")
    fields = (
        ("registry_slug", "profile_slug", "profile_id_at_write"),
        ("version", "updated", "updated_by", "source"),
        "change",
        "document_json",
    )
    readonly_fields = ("updated", "document_json")

    @admin.display(description="document")
    def document_json(self, obj: ProfileRevision) -> str:
        return _pretty_json(obj.document)


@admin.register(ProfileSelection)
class ProfileSelectionAdmin(InspectOnlyAdmin):
    list_display = ("user", "mount", "registry_slug", "profile_slug", "updated")
    list_filter = ("mount", "registry_slug")
    list_select_related = ("user",)
    search_fields = ("user__username", "registry_slug", "profile_slug")
