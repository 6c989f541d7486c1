"""A profile's history over the API: its versions (and restoring one), its labels (named pointers at
versions; protected ones, promotion, need `profiles.promote_profile`), and how its versions compare and
behaved. `ProfileViewSet` serves these routes next to its own."""

from __future__ import annotations

import builtins
from typing import Any

from drf_spectacular.utils import OpenApiParameter, PolymorphicProxySerializer, extend_schema
from rest_framework.request import Request
from rest_framework.response import Response

from profiles import selectors, services

from . import serializers as s
from .mounted import ProfileScoped, document_response, etag, if_match_version
from .openapi import AUTH, BODY, ETAG, IF_MATCH, LABEL_PATH, SLUG_PATH, responses


class ProfileHistoryActions(ProfileScoped):
    @extend_schema(
        responses=responses({200: s.RevisionSummarySerializer(many=True)}, AUTH, 400, 403, 404), parameters=[SLUG_PATH]
    )
    def versions(self, request: Request, slug: str) -> Response:
        profile = self._profile(request, slug)
        return Response(s.RevisionSummarySerializer(selectors.profile_revisions(profile=profile), many=True).data)

    @extend_schema(
        responses=responses({200: s.ProfileDocumentSerializer}, AUTH, 400, 403, 404), parameters=[SLUG_PATH, ETAG]
    )
    def version_detail(self, request: Request, slug: str, version: int) -> Response:
        profile = self._profile(request, slug)
        revision = selectors.profile_revision_get(profile=profile, version=version)
        document = {**revision.document, "is_default": profile.registry.is_default(profile.pk)}
        return Response(document, headers={"ETag": f'"{revision.version}"'})

    @extend_schema(
        request=s.ExpectedVersionSerializer,
        responses=responses(
            {
                200: PolymorphicProxySerializer(
                    component_name="RestoreResult",
                    serializers=[s.ProfileDocumentSerializer, s.DiffEntrySerializer(many=True)],
                    resource_type_field_name=None,
                    many=False,
                )
            },
            AUTH,
            BODY,
            403,
            404,
            409,
            412,
        ),
        parameters=[SLUG_PATH, IF_MATCH, ETAG, s.RestoreParamsSerializer],
        description="Write version n's content as a new version; with `?dry_run=1`, answer the diff it "
        "would apply (`[]`: identical content) and write nothing.",
    )
    def restore(self, request: Request, slug: str, version: int) -> Response:
        body = s.ExpectedVersionSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        params = s.RestoreParamsSerializer(data=request.query_params)
        params.is_valid(raise_exception=True)
        if params.validated_data["dry_run"]:
            profile = self._profile(request, slug)
            return Response(selectors.profile_restore_plan(profile=profile, version=version), headers=etag(profile))
        profile = services.profile_restore(
            registry_slug=self.registry_slug(request),
            slug=slug,
            version=version,
            expected_version=body.validated_data.get("expected_version"),
            if_match=if_match_version(request),
            actor=request.user,
        )
        return document_response(profile)

    # ---- labels: named pointers at versions; protected ones (promotion) need profiles.promote_profile

    def _label_row(self, label: Any, registry: Any) -> dict[str, Any]:
        return {
            "name": label.name,
            "version": label.version,
            "protected": label.name in (registry.protected_labels or []),
            "updated_at_ms": label.updated_at_ms,
            "updated_by": label.updated_by,
        }

    @extend_schema(
        responses=responses({200: s.LabelSerializer(many=True)}, AUTH, 400, 403, 404), parameters=[SLUG_PATH]
    )
    def labels(self, request: Request, slug: str) -> Response:
        profile = self._profile(request, slug)
        return Response([self._label_row(label, profile.registry) for label in selectors.label_list(profile=profile)])

    @extend_schema(
        request=s.LabelSetSerializer,
        responses=responses({200: s.LabelSerializer}, AUTH, BODY, 403, 404, 409),
        parameters=[SLUG_PATH, LABEL_PATH],
    )
    def label_set(self, request: Request, slug: str, name: str) -> Response:
        body = s.LabelSetSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        registry = self.registry_slug(request)
        label = services.label_set(
            registry_slug=registry, slug=slug, name=name, actor=request.user, source="api", **body.validated_data
        )
        return Response(self._label_row(label, selectors.registry_get(registry)))

    @extend_schema(
        responses=responses({204: None}, AUTH, 400, 403, 404, 409),
        parameters=[
            SLUG_PATH,
            LABEL_PATH,
            OpenApiParameter(
                "expected_version", {"type": "integer", "minimum": 1}, description="The label's current version"
            ),
        ],
    )
    def label_delete(self, request: Request, slug: str, name: str) -> Response:
        services.label_delete(
            registry_slug=self.registry_slug(request),
            slug=slug,
            name=name,
            expected_version=request.query_params.get("expected_version"),
            actor=request.user,
        )
        return Response(status=204)

    @extend_schema(
        responses=responses({200: s.LabelMoveSerializer(many=True)}, AUTH, 400, 403, 404),
        parameters=[SLUG_PATH, LABEL_PATH],
    )
    def label_history(self, request: Request, slug: str, name: str) -> Response:
        profile = self._profile(request, slug)
        moves = selectors.label_history(profile=profile, name=name.strip().lower())
        return Response(s.LabelMoveSerializer(moves, many=True).data)

    # ---- comparing versions and how they behaved

    @extend_schema(
        responses=responses({200: s.DiffEntrySerializer(many=True)}, AUTH, 400, 403, 404),
        parameters=[SLUG_PATH, s.DiffParamsSerializer],
        description="What changes from version `from` to version `to` (`[]`: the same content).",
    )
    def versions_diff(self, request: Request, slug: str) -> Response:
        params = s.DiffParamsSerializer(data=request.query_params)
        params.is_valid(raise_exception=True)
        profile = self._profile(request, slug)
        data = params.validated_data
        return Response(selectors.profile_versions_diff(profile=profile, old=data["from"], new=data["to"]))

    @extend_schema(
        responses=responses({200: s.VersionStatsSerializer(many=True)}, AUTH, 400, 403, 404),
        parameters=[SLUG_PATH, s.StatsParamsSerializer],
        description="One row per version of the profile, computed from the turns that ran on it.",
    )
    def stats(self, request: Request, slug: str) -> Response:
        return Response(self._stats(request, slug))

    @extend_schema(
        responses=responses({200: s.VersionStatsSerializer}, AUTH, 400, 403, 404),
        parameters=[SLUG_PATH, s.StatsParamsSerializer],
    )
    def version_stats(self, request: Request, slug: str, version: int) -> Response:
        return Response(self._stats(request, slug, version)[0])

    def _stats(self, request: Request, slug: str, version: int | None = None) -> builtins.list[dict[str, Any]]:
        params = s.StatsParamsSerializer(data=request.query_params)
        params.is_valid(raise_exception=True)
        profile = self._profile(request, slug)
        return selectors.profile_version_stats(profile=profile, version=version, **params.validated_data)
