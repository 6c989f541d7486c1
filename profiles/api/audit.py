"""`GET /api/audit` (newest first, a cursor per page) and `GET /api/audit/export` (JSON lines): the audit
log, for staff with `profiles.view_auditevent`. Read-only: no route changes or deletes an entry."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import django_filters
from django.http import StreamingHttpResponse
from drf_spectacular.utils import extend_schema
from rest_framework import generics, permissions, serializers
from rest_framework.pagination import CursorPagination
from rest_framework.request import Request

from profiles.models import AuditEvent

from .openapi import AUTH, responses

VIEW_PERMISSION = "profiles.view_auditevent"
EXPORT_BATCH = 500


class CanReadAudit(permissions.BasePermission):
    message = f"the audit log is for staff with the {VIEW_PERMISSION} permission"

    def has_permission(self, request: Request, view: Any) -> bool:
        user = request.user
        return bool(user and user.is_authenticated and user.is_staff and user.has_perm(VIEW_PERMISSION))


class AuditEventFilter(django_filters.FilterSet):
    since_ms = django_filters.NumberFilter(field_name="at_ms", lookup_expr="gte", help_text="entries at or after")
    action = django_filters.CharFilter(help_text="`<object>.<verb>`, e.g. `label.moved`")
    registry = django_filters.CharFilter()
    actor = django_filters.CharFilter(field_name="actor_username", help_text="the actor's username")

    class Meta:
        model = AuditEvent
        fields = ["since_ms", "action", "registry", "actor"]


class AuditEventSerializer(serializers.ModelSerializer):
    actor = serializers.SerializerMethodField()
    object = serializers.SerializerMethodField()

    class Meta:
        model = AuditEvent
        fields = ["id", "at_ms", "actor", "action", "object", "changes", "ip"]

    def get_actor(self, event: AuditEvent) -> dict[str, Any]:
        return {"type": event.actor_type, "id": event.actor_id, "username": event.actor_username}

    def get_object(self, event: AuditEvent) -> dict[str, Any]:
        found = {"type": event.object_type, "registry": event.registry}
        return found | ({"slug": event.slug} if event.slug else {})


class NewestFirst(CursorPagination):
    ordering = "-id"
    page_size = 50
    page_size_query_param = "page_size"
    max_page_size = 500


READ_ERRORS = (400, *AUTH, 403)


class AuditView(generics.GenericAPIView):
    queryset = AuditEvent.objects.all()
    serializer_class = AuditEventSerializer
    permission_classes = [CanReadAudit]
    filterset_class = AuditEventFilter


class AuditLogView(generics.ListAPIView, AuditView):
    pagination_class = NewestFirst

    @extend_schema(responses=responses({200: AuditEventSerializer(many=True)}, *READ_ERRORS, 404))
    def get(self, request: Request, *args: Any, **kwargs: Any) -> Any:
        """The audit log, newest first, a page at a time (`next` carries the cursor; a bad cursor is a 404)."""
        return super().get(request, *args, **kwargs)


class AuditExportView(AuditView):
    pagination_class = None

    @extend_schema(responses={(200, "application/x-ndjson"): AuditEventSerializer, **responses({}, *READ_ERRORS)})
    def get(self, request: Request) -> StreamingHttpResponse:
        """Every matching entry, oldest first, one JSON object per line."""
        events = self.filter_queryset(self.get_queryset()).order_by("id")
        return StreamingHttpResponse(_lines(events), content_type="application/x-ndjson")


def _lines(events: Any) -> Iterator[str]:
    for event in events.iterator(chunk_size=EXPORT_BATCH):
        yield json.dumps(AuditEventSerializer(event).data, ensure_ascii=False) + "\n"
