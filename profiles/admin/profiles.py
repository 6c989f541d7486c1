"""The profile admin: edit through the services, versions with their diffs and stats, restore, labels,
resolve preview, make default."""

from __future__ import annotations

import json
from typing import Any

from django.contrib import admin, messages
from django.contrib.admin.actions import delete_selected as confirm_delete_selected
from django.contrib.admin.utils import NestedObjects, quote, unquote
from django.core.exceptions import PermissionDenied
from django.db import router, transaction
from django.db.models import QuerySet
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import URLPattern, path, reverse
from django.utils.html import format_html, format_html_join
from django.views.decorators.http import require_POST

from ..access import can_edit, visible_filter
from ..errors import NotFound, ProfileError
from ..forms import ADMIN_SOURCE, ProfileAdminForm
from ..html_patterns import LABEL_PATTERN
from ..models import Profile, Registry
from ..selectors import (
    label_list,
    profile_resolve,
    profile_revision_get,
    profile_revisions,
    profile_version_stats,
    profile_versions_diff,
)
from ..services import label_delete, label_set, profile_delete, profile_restore, registry_set_default
from ..timestamps import from_ms
from ..validation import parse_version
from .common import ServiceAdmin


@admin.register(Profile)
class ProfileAdmin(ServiceAdmin):
    form = ProfileAdminForm
    change_form_template = "admin/profiles/profile/change_form.html"
    list_display = ("registry", "slug", "display_name", "version", "is_default", "updated_by", "source", "updated")
    list_display_links = ("slug",)
    list_filter = ("registry",)
    list_select_related = ("registry",)
    search_fields = ("slug", "display_name")
    actions = ("make_default", "delete_selected")
    identity_fields = ("registry", "slug")
    form_only_fields = ("expected_version", "set_default")
    readonly_fields = (
        "version",
        "is_default",
        "created_by",
        "created",
        "updated_by",
        "updated",
        "source",
        "tags",
        "effective",
    )
    add_fieldsets = (
        (None, {"fields": ("registry", "slug", "display_name", "description", "set_default")}),
        ("Content", {"fields": ("runtime", "policy", "extensions")}),
        ("Layers and access", {"fields": ("stack", "visible_to_groups")}),
    )
    fieldsets = (
        (None, {"fields": ("registry", "slug", "display_name", "description", "set_default", "expected_version")}),
        ("Content", {"fields": ("runtime", "policy", "extensions")}),
        ("Layers and access", {"fields": ("stack", "visible_to_groups")}),
        ("Effective runtime", {"fields": ("effective",)}),
        (
            "Metadata",
            {
                "fields": (
                    ("version", "is_default"),
                    ("created_by", "created"),
                    ("updated_by", "updated"),
                    ("source", "tags"),
                )
            },
        ),
    )

    @admin.display(boolean=True, description="default")
    def is_default(self, obj: Profile) -> bool:
        return obj.registry.is_default(obj.pk)

    def get_queryset(self, request: HttpRequest) -> QuerySet[Profile]:
        """Profiles restricted to groups are listed to those who may use them (staff editors: all)."""
        rows = super().get_queryset(request)
        visible = visible_filter(request.user)
        return rows if visible is None else rows.filter(visible)

    def formfield_for_foreignkey(self, db_field: Any, request: HttpRequest, **kwargs: Any) -> Any:
        """A new profile goes into a registry the user may edit."""
        if db_field.name == "registry":
            editable = [r.pk for r in Registry.objects.all() if can_edit(request.user, r)]
            kwargs["queryset"] = Registry.objects.filter(pk__in=editable)
        return super().formfield_for_foreignkey(db_field, request, **kwargs)

    @admin.display(description="effective runtime")
    def effective(self, obj: Profile) -> str:
        """The latest version as it runs: its lineage, then each field with the layer that set it and the
        values it replaced (the same resolution the API and the turns use)."""
        if obj is None or obj.pk is None:
            return "-"
        try:
            resolution = profile_resolve(registry_slug=obj.registry.slug, profile_slug=f"{obj.slug}@latest")
        except ProfileError as exc:
            return format_html('<p class="errornote">{}: {}</p>', exc.field or "stack", exc.message)

        def layer(ref: dict[str, Any]) -> str:
            if ref.get("request"):
                return "request"
            return f"{ref['registry']}/{ref['slug']} v{ref['version']}"

        def short(value: Any) -> str:
            text = json.dumps(value, ensure_ascii=False)
            return text if len(text) <= 120 else text[:117] + "..."

        lineage = " → ".join(layer(ref) for ref in resolution.lineage)
        rows = format_html_join(
            "",
            "<tr><td><code>{}</code></td><td><code>{}</code></td><td>{}</td><td>{}</td></tr>",
            (
                (
                    path,
                    short(entry["value"]),
                    layer(entry["layer"]) + (f" ({entry['rule']})" if entry.get("rule") else ""),
                    "; ".join(f"{layer(old['layer'])}: {short(old['value'])}" for old in entry["replaced"]) or "—",
                )
                for path, entry in resolution.provenance.items()
            ),
        )
        return format_html(
            '<p>Lineage: {}</p><p>Fingerprint: <code>{}</code></p><table class="effective-runtime">'
            "<thead><tr><th>field</th><th>value</th><th>set by</th><th>replaced</th></tr></thead>"
            "<tbody>{}</tbody></table>",
            lineage,
            resolution.fingerprint,
            rows,
        )

    # ---- deleting: always `profile_delete`, which refuses read-only profiles and a default with siblings

    def get_deleted_objects(
        self, objs: Any, request: HttpRequest
    ) -> tuple[list[Any], dict[str, int], set[str], list[Any]]:
        """A registry pointing at its default does not block the confirmation page: the service decides.

        (It refuses the default while other profiles exist, and allows it when it is the last one.)
        """
        deleted, counts, perms_needed, protected = super().get_deleted_objects(objs, request)
        if protected:
            collector = NestedObjects(using=router.db_for_write(Profile))
            collector.collect(objs)
            if all(isinstance(obj, Registry) for obj in collector.protected):
                protected = []
        return deleted, counts, perms_needed, protected

    def delete_model(self, request: HttpRequest, obj: Profile) -> None:
        profile_delete(registry_slug=obj.registry.slug, slug=obj.slug, actor=request.user)

    def delete_view(
        self, request: HttpRequest, object_id: str, extra_context: dict[str, Any] | None = None
    ) -> HttpResponse:
        """A refusal from the service rolls the delete view's transaction back and becomes a message."""
        try:
            return super().delete_view(request, object_id, extra_context)
        except ProfileError as exc:
            self.message_user(request, f"Not deleted: {exc.message}", messages.ERROR)
            return HttpResponseRedirect(reverse("admin:profiles_profile_change", args=[quote(unquote(object_id))]))

    @admin.action(permissions=["delete"], description="Delete selected profiles")
    def delete_selected(self, request: HttpRequest, queryset: QuerySet[Profile]) -> HttpResponse | None:
        """Replaces Django's bulk delete (same name, so its confirmation page posts back here).

        One service call per profile, each in its own transaction: a refused profile stays, the rest go.
        Defaults go last, so selecting a registry's every profile can delete them all.
        """
        if not request.POST.get("post"):
            return confirm_delete_selected(self, request, queryset)
        profiles = sorted(
            queryset.select_related("registry"),
            key=lambda p: (p.registry.is_default(p.pk), p.registry.slug, p.slug),
        )
        deleted = 0
        for profile in profiles:
            try:
                with transaction.atomic():
                    # Django iterates what it is given; django-stubs only admit a QuerySet.
                    self.log_deletions(request, [profile])  # type: ignore[arg-type]
                    profile_delete(registry_slug=profile.registry.slug, slug=profile.slug, actor=request.user)
            except ProfileError as exc:
                self.message_user(request, f"{profile} was not deleted: {exc.message}", messages.ERROR)
            else:
                deleted += 1
        if deleted:
            self.message_user(request, f"Deleted {deleted} profile{'s' if deleted != 1 else ''}.", messages.SUCCESS)
        return None

    @admin.action(permissions=["change"], description="Make default")
    def make_default(self, request: HttpRequest, queryset: QuerySet[Profile]) -> None:
        """Make the one selected profile its registry's default (read-only profiles may be defaults)."""
        if queryset.count() != 1:
            self.message_user(request, "Select exactly one profile to make it the default.", messages.ERROR)
            return
        profile = queryset.select_related("registry").get()
        try:
            registry_set_default(
                registry_slug=profile.registry.slug, slug=profile.slug, actor=request.user, source=ADMIN_SOURCE
            )
        except ProfileError as exc:
            self.message_user(request, f"{profile} was not made the default: {exc.message}", messages.ERROR)
            return
        self.log_change(request, profile, "Made the registry default.")
        self.message_user(request, f"{profile.slug} is now the default profile of {profile.registry.slug}.")

    # ---- history: every version, each viewable and restorable (as a new version)

    def get_urls(self) -> list[URLPattern]:
        info = self.opts.app_label, self.opts.model_name
        wrap = self.admin_site.admin_view  # login, staff and CSRF protection
        return [
            path("<path:object_id>/versions/", wrap(self.versions_view), name="{}_{}_versions".format(*info)),
            path(
                "<path:object_id>/versions/<int:version>/",
                wrap(self.version_view),
                name="{}_{}_version".format(*info),
            ),
            path(
                "<path:object_id>/versions/<int:version>/restore/",
                wrap(require_POST(self.restore_view)),
                name="{}_{}_restore".format(*info),
            ),
            path(
                "<path:object_id>/labels/",
                wrap(require_POST(self.label_set_view)),
                name="{}_{}_label_set".format(*info),
            ),
            path(
                "<path:object_id>/labels/<str:name>/delete/",
                wrap(require_POST(self.label_delete_view)),
                name="{}_{}_label_delete".format(*info),
            ),
            *super().get_urls(),
        ]

    def _viewable(self, request: HttpRequest, object_id: str) -> Profile:
        profile = self.get_object(request, unquote(object_id))
        if profile is None:
            raise Http404(f"profile {object_id!r} not found")
        if not self.has_view_or_change_permission(request, profile):
            raise PermissionDenied
        return profile

    def _context(self, request: HttpRequest, profile: Profile, title: str, **extra: Any) -> dict[str, Any]:
        return {
            **self.admin_site.each_context(request),
            "opts": self.opts,
            "original": profile,
            "title": title,
            "subtitle": None,
            "can_restore": self.has_change_permission(request, profile) and not profile.is_read_only,
            **extra,
        }

    def versions_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        """Every version with the labels on it and how it behaved (turns, failures, latency), the labels
        with their moves, and the diff between any two versions (`?from=N&to=M`)."""
        profile = self._viewable(request, object_id)
        labels = list(label_list(profile=profile))
        stats = {row["version"]: row for row in profile_version_stats(profile=profile)}
        revisions = [
            {
                "version": rev.version,
                "when": from_ms(rev.updated_at_ms),
                "by": rev.updated_by,
                "source": rev.source,
                "change": rev.change,
                "labels": [label.name for label in labels if label.version == rev.version],
                "stats": stats.get(rev.version),
            }
            for rev in profile_revisions(profile=profile)
        ]
        compare, diff = None, None
        old, new = request.GET.get("from"), request.GET.get("to")
        if old and new:
            try:
                compare = (parse_version(old, field="from"), parse_version(new, field="to"))
                diff = profile_versions_diff(profile=profile, old=compare[0], new=compare[1])
            except ProfileError as exc:
                self.message_user(request, f"Cannot compare: {exc.message}", messages.ERROR)
                compare = None
        context = self._context(
            request,
            profile,
            f"Versions of {profile}",
            revisions=revisions,
            labels=[
                {"label": label, "protected": label.name in (profile.registry.protected_labels or [])}
                for label in labels
            ],
            can_label=self.has_change_permission(request, profile),
            label_pattern=LABEL_PATTERN,
            compare=compare,
            diff=diff,
        )
        return TemplateResponse(request, "admin/profiles/profile/versions.html", context)

    def _labels_done(self, request: HttpRequest, profile: Profile, action: Any, done: str) -> HttpResponse:
        """Run one label service call as the admin user; its refusal becomes an error message."""
        if not self.has_change_permission(request, profile):
            raise PermissionDenied
        try:
            action()
        except ProfileError as exc:
            self.message_user(request, f"Not done: {exc.message}", messages.ERROR)
        else:
            self.log_change(request, profile, done)
            self.message_user(request, done, messages.SUCCESS)
        return HttpResponseRedirect(reverse("admin:profiles_profile_versions", args=[quote(profile.pk)]))

    def label_set_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        profile = self._viewable(request, object_id)
        name, version = request.POST.get("name", ""), request.POST.get("version", "")
        return self._labels_done(
            request,
            profile,
            lambda: label_set(
                registry_slug=profile.registry.slug,
                slug=profile.slug,
                name=name,
                version=version,
                expected_version=request.POST.get("expected_version") or None,
                actor=request.user,
                source=ADMIN_SOURCE,
            ),
            f"Label {name.strip().lower()} now points at version {version}.",
        )

    def label_delete_view(self, request: HttpRequest, object_id: str, name: str) -> HttpResponse:
        profile = self._viewable(request, object_id)
        return self._labels_done(
            request,
            profile,
            lambda: label_delete(
                registry_slug=profile.registry.slug,
                slug=profile.slug,
                name=name,
                actor=request.user,
                source=ADMIN_SOURCE,
            ),
            f"Label {name} removed.",
        )

    def version_view(self, request: HttpRequest, object_id: str, version: int) -> HttpResponse:
        profile = self._viewable(request, object_id)
        try:
            revision = profile_revision_get(profile=profile, version=version)
        except NotFound as exc:
            raise Http404(exc.message) from None
        context = self._context(
            request,
            profile,
            f"{profile} at version {version}",
            revision=revision,
            when=from_ms(revision.updated_at_ms),
            document=json.dumps(revision.document, indent=2, ensure_ascii=False),
        )
        return TemplateResponse(request, "admin/profiles/profile/version.html", context)

    def restore_view(self, request: HttpRequest, object_id: str, version: int) -> HttpResponse:
        """Writes version n's content as a new version; needs `profiles.change_profile`."""
        profile = self._viewable(request, object_id)
        if not self.has_change_permission(request, profile):
            raise PermissionDenied
        try:
            restored = profile_restore(
                registry_slug=profile.registry.slug,
                slug=profile.slug,
                version=version,
                expected_version=request.POST.get("expected_version") or None,
                actor=request.user,
                source=ADMIN_SOURCE,
            )
        except ProfileError as exc:
            self.message_user(request, f"Version {version} was not restored: {exc.message}", messages.ERROR)
        else:
            if restored.version == profile.version:
                self.message_user(request, f"Version {version} has the current content: nothing changed.")
            else:
                self.log_change(request, restored, f"Restored version {version} as version {restored.version}.")
                self.message_user(
                    request, f"Restored version {version} as version {restored.version}.", messages.SUCCESS
                )
        return HttpResponseRedirect(reverse("admin:profiles_profile_versions", args=[quote(profile.pk)]))
