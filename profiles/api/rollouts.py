"""A label's rollout (`profiles.services.rollouts`) under each mount's profile API:
`…/profiles/{slug}/labels/{name}/rollout` (GET, PUT, DELETE)."""

from __future__ import annotations

from drf_spectacular.utils import extend_schema
from rest_framework.request import Request
from rest_framework.response import Response

from profiles import selectors, services
from profiles.validation import canonical_label

from . import serializers as s
from .mounted import ProfileScoped
from .openapi import AUTH, BODY, LABEL_PATH, SLUG_PATH, responses


class RolloutViewSet(ProfileScoped):
    # The same permission as moving the label (a protected one also needs promotion; the service checks).
    write_permissions = {"update": "profiles.change_profile", "destroy": "profiles.change_profile"}

    def _detail(self, request: Request, slug: str, name: str) -> Response:
        profile = self._profile(request, slug)
        return Response(selectors.rollout_detail(profile=profile, name=canonical_label(name)))

    @extend_schema(
        responses=responses({200: s.RolloutSerializer}, AUTH, 400, 403, 404), parameters=[SLUG_PATH, LABEL_PATH]
    )
    def retrieve(self, request: Request, slug: str, name: str) -> Response:
        return self._detail(request, slug, name)

    @extend_schema(
        request=s.RolloutSetSerializer,
        responses=responses({200: s.RolloutSerializer}, AUTH, BODY, 403, 404, 409),
        parameters=[SLUG_PATH, LABEL_PATH],
        description="Start a rollout on the label, or change its active one (arms, sticky, guard).",
    )
    def update(self, request: Request, slug: str, name: str) -> Response:
        services.rollout_set(
            registry_slug=self.registry_slug(request), slug=slug, name=name, body=request.data, actor=request.user
        )
        return self._detail(request, slug, name)

    @extend_schema(responses=responses({204: None}, AUTH, 400, 403, 404), parameters=[SLUG_PATH, LABEL_PATH])
    def destroy(self, request: Request, slug: str, name: str) -> Response:
        services.rollout_end(registry_slug=self.registry_slug(request), slug=slug, name=name, actor=request.user)
        return Response(status=204)
