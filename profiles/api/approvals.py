"""Label requests (`profiles.approvals`) under each mount's profile API:
`…/profiles/{slug}/labels/{name}/requests` (GET, POST), `…/requests/{id}/approve` and `…/reject` (POST)."""

from __future__ import annotations

from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework.request import Request
from rest_framework.response import Response

from profiles import approvals, selectors
from profiles.validation import canonical_label

from . import serializers as s
from .mounted import ProfileScoped
from .openapi import AUTH, BODY, LABEL_PATH, SLUG_PATH, responses

REQUEST_PATH = OpenApiParameter("request_id", int, location=OpenApiParameter.PATH, description="Request id")


class LabelRequestViewSet(ProfileScoped):
    # Asking is a write (an editor's); approving and rejecting are checked by the service (approvers).
    write_permissions = {"create": "profiles.change_profile"}

    @extend_schema(
        responses=responses({200: s.LabelRequestSerializer(many=True)}, AUTH, 400, 403, 404),
        parameters=[SLUG_PATH, LABEL_PATH],
    )
    def list(self, request: Request, slug: str, name: str) -> Response:
        profile = self._profile(request, slug)
        rows = selectors.label_request_list(profile=profile, name=canonical_label(name))
        return Response(s.LabelRequestSerializer(rows, many=True).data)

    @extend_schema(
        request=s.LabelRequestCreateSerializer,
        responses=responses({201: s.LabelRequestSerializer}, AUTH, BODY, 403, 404, 409),
        parameters=[SLUG_PATH, LABEL_PATH],
    )
    def create(self, request: Request, slug: str, name: str) -> Response:
        body = s.LabelRequestCreateSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        made = approvals.label_request_create(
            registry_slug=self.registry_slug(request), slug=slug, name=name, actor=request.user, **body.validated_data
        )
        return Response(s.LabelRequestSerializer(made).data, status=201)

    @extend_schema(
        request=None,
        responses=responses({200: s.LabelRequestSerializer}, AUTH, 400, 403, 404, 409),
        parameters=[SLUG_PATH, LABEL_PATH, REQUEST_PATH],
        description="Approve; the approval that reaches the registry's `required_approvals` moves the label.",
    )
    def approve(self, request: Request, slug: str, name: str, request_id: int) -> Response:
        decided = approvals.label_request_approve(
            registry_slug=self.registry_slug(request), slug=slug, name=name, request_id=request_id, actor=request.user
        )
        return Response(s.LabelRequestSerializer(decided).data)

    @extend_schema(
        request=None,
        responses=responses({200: s.LabelRequestSerializer}, AUTH, 400, 403, 404, 409),
        parameters=[SLUG_PATH, LABEL_PATH, REQUEST_PATH],
    )
    def reject(self, request: Request, slug: str, name: str, request_id: int) -> Response:
        decided = approvals.label_request_reject(
            registry_slug=self.registry_slug(request), slug=slug, name=name, request_id=request_id, actor=request.user
        )
        return Response(s.LabelRequestSerializer(decided).data)
