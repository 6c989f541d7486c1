"""Release engineering in the admin, read-only and deciding through the services: the audit log, label
requests (approve, reject) and rollouts (with each arm's stats; end)."""

from __future__ import annotations

from typing import Any

from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest
from django.utils.html import format_html, format_html_join

from ..approvals import label_request_approve, label_request_reject
from ..errors import ProfileError
from ..forms import ADMIN_SOURCE
from ..models import AuditEvent, LabelRequest, LabelRollout
from ..selectors import EMPTY_VERSION_STATS, rollout_arm_stats
from ..services import rollout_end
from .common import InspectOnlyAdmin, _pretty_json, _when


@admin.register(AuditEvent)
class AuditEventAdmin(InspectOnlyAdmin):
    list_display = ("at", "actor_username", "actor_type", "action", "registry", "slug", "ip")
    list_filter = ("action", "actor_type", "registry")
    search_fields = ("actor_username", "registry", "slug", "action")
    fields = (
        ("at", "actor_type", "actor_username", "actor_id", "ip"),
        ("action", "object_type", "registry", "slug"),
        "changes_json",
    )
    readonly_fields = ("at", "changes_json")

    @admin.display(description="at", ordering="at_ms")
    def at(self, obj: AuditEvent) -> str | None:
        return _when(obj.at_ms)

    @admin.display(description="changes")
    def changes_json(self, obj: AuditEvent) -> str:
        return _pretty_json(obj.changes)


class OnLabelAdmin(InspectOnlyAdmin):
    """Rows about one label of a profile: its registry and profile as columns."""

    list_select_related = ("profile__registry",)

    @admin.display(description="registry", ordering="profile__registry__slug")
    def registry(self, obj: Any) -> str:
        return obj.profile.registry.slug

    @admin.display(description="profile", ordering="profile__slug")
    def profile_slug(self, obj: Any) -> str:
        return obj.profile.slug


@admin.register(LabelRequest)
class LabelRequestAdmin(OnLabelAdmin):
    """Requests to move labels that need approvals; approvers decide with the actions (the services')."""

    list_display = (
        "id",
        "registry",
        "profile_slug",
        "name",
        "from_version",
        "version",
        "status",
        "by_username",
        "approved_by",
        "created",
    )
    list_filter = ("status", "name", "profile__registry__slug")
    search_fields = ("profile__slug", "name", "by_username", "note")
    fields = (
        ("profile", "name", "from_version", "version"),
        "rollout_json",
        ("status", "by_username", "created"),
        "note",
        "approved_by",
    )
    readonly_fields = ("created", "approved_by", "rollout_json")
    actions = ["approve", "reject"]

    @admin.display(description="rollout asked for")
    def rollout_json(self, obj: LabelRequest) -> str:
        return _pretty_json(obj.rollout) if obj.rollout is not None else "-"

    @admin.display(description="created", ordering="created_at_ms")
    def created(self, obj: LabelRequest) -> str | None:
        return _when(obj.created_at_ms)

    @admin.display(description="approved by")
    def approved_by(self, obj: LabelRequest) -> str:
        return ", ".join(a["username"] for a in obj.approvals)

    @admin.action(description="Approve the selected requests")
    def approve(self, request: HttpRequest, queryset: QuerySet[LabelRequest]) -> None:
        self._decide(request, queryset, label_request_approve, "approved")

    @admin.action(description="Reject the selected requests")
    def reject(self, request: HttpRequest, queryset: QuerySet[LabelRequest]) -> None:
        self._decide(request, queryset, label_request_reject, "rejected")

    def _decide(self, request: HttpRequest, queryset: QuerySet[LabelRequest], decide: Any, verb: str) -> None:
        for item in queryset.select_related("profile__registry"):
            try:
                decided = decide(
                    registry_slug=item.profile.registry.slug,
                    slug=item.profile.slug,
                    name=item.name,
                    request_id=item.pk,
                    actor=request.user,
                )
            except ProfileError as exc:
                self.message_user(request, f"request {item.pk}: {exc.message}", messages.ERROR)
            else:
                self.message_user(request, f"request {item.pk} {verb}: now {decided.status}", messages.SUCCESS)


ARM_COLUMNS = ("version", "weight %", "turns", "completed", "failed", "thumbs up", "thumbs down", "latency p95")


@admin.register(LabelRollout)
class LabelRolloutAdmin(OnLabelAdmin):
    """Rollouts with each arm's stats (the API's figures); ending one goes through the service."""

    list_display = ("id", "registry", "profile_slug", "name", "split", "sticky", "status", "halted_reason", "started")
    list_filter = ("status", "sticky", "profile__registry__slug")
    search_fields = ("profile__slug", "name", "by", "halted_reason")
    fields = (
        ("profile", "name", "status", "sticky"),
        ("started", "by"),
        "halted_reason",
        "guard_json",
        "arm_stats",
    )
    readonly_fields = ("started", "guard_json", "arm_stats")
    actions = ["end"]

    @admin.display(description="arms")
    def split(self, obj: LabelRollout) -> str:
        return " · ".join(f"v{arm['version']} {arm['weight']}%" for arm in obj.arms)

    @admin.display(description="started", ordering="started_at_ms")
    def started(self, obj: LabelRollout) -> str | None:
        return _when(obj.started_at_ms)

    @admin.display(description="guard")
    def guard_json(self, obj: LabelRollout) -> str:
        return _pretty_json(obj.guard) if obj.guard else "none"

    @admin.display(description="arms and their turns since it started")
    def arm_stats(self, obj: LabelRollout) -> str:
        stats = rollout_arm_stats(rollout=obj)
        rows = []
        for arm in obj.arms:
            figures = {**EMPTY_VERSION_STATS, **stats.get(arm["version"], {})}
            p95 = figures["latency_ms_p95"]
            rows.append(
                (
                    arm["version"],
                    arm["weight"],
                    figures["turns"],
                    figures["completed"],
                    figures["failed"],
                    figures["thumbs_up"],
                    figures["thumbs_down"],
                    "-" if p95 is None else f"{p95} ms",
                )
            )
        header = format_html_join("", "<th>{}</th>", ((h,) for h in ARM_COLUMNS))
        body = format_html_join("", "<tr>" + "<td>{}</td>" * len(ARM_COLUMNS) + "</tr>", rows)
        return format_html('<table class="arm-stats"><thead><tr>{}</tr></thead><tbody>{}</tbody></table>', header, body)

    @admin.action(description="End the selected rollouts (their labels serve their own versions again)")
    def end(self, request: HttpRequest, queryset: QuerySet[LabelRollout]) -> None:
        for item in queryset.select_related("profile__registry"):
            try:
                rollout_end(
                    registry_slug=item.profile.registry.slug,
                    slug=item.profile.slug,
                    name=item.name,
                    actor=request.user,
                    source=ADMIN_SOURCE,
                )
            except ProfileError as exc:
                self.message_user(request, f"rollout {item.pk}: {exc.message}", messages.ERROR)
            else:
                self.message_user(request, f"rollout {item.pk} of {item.name!r} ended", messages.SUCCESS)
