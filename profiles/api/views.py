"""The shared profile API. Written once; each app mounts it with its own `Mount` (options only). What its
views share is in `mounted`; a profile's versions, labels and stats in `history`."""

from __future__ import annotations

from typing import Any

from drf_spectacular.utils import OpenApiParameter, PolymorphicProxySerializer, extend_schema
from rest_framework.authentication import TokenAuthentication
from rest_framework.authtoken.views import ObtainAuthToken
from rest_framework.request import Request
from rest_framework.response import Response

from profiles import selectors, services
from profiles.access import can_write, sees_every_profile
from profiles.definitions import definitions

from . import serializers as s
from .history import ProfileHistoryActions
from .mounted import MountedViewSet, document_response, etag, if_match_version
from .openapi import (
    AUTH,
    BODY,
    ETAG,
    IF_MATCH,
    LOCATION,
    REF_PATH,
    REGISTRY_PARAM,
    REGISTRY_PATH,
    RETRY_AFTER,
    SLUG_PATH,
    merge_patch_body,
    responses,
)
from .parsers import SafeJSONParser
from .throttling import ScopedRateThrottle

SESSION_KEY = "chat_profile:{mount}"
COOKIE_NAME = "chat_profile"


class TokenView(ObtainAuthToken):
    """`POST /api/auth/token {username, password}` -> `{token}`; throttled per client address."""

    parser_classes = [SafeJSONParser]
    throttle_classes = [ScopedRateThrottle]
    throttle_scope = "auth"

    @extend_schema(
        request=ObtainAuthToken.serializer_class,
        responses=responses({200: s.IssuedTokenSerializer}, BODY, 401, 429),
        parameters=[RETRY_AFTER],
    )
    def post(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        return super().post(request, *args, **kwargs)


class RegistryViewSet(MountedViewSet):
    write_permissions = {"partial_update": "profiles.change_registry"}
    merge_patch_actions = frozenset({"partial_update"})

    @extend_schema(responses=responses({200: s.RegistrySummarySerializer(many=True)}, AUTH))
    def list(self, request: Request) -> Response:
        registries = selectors.registry_list(user=request.user)
        context = {"editor": sees_every_profile(request.user)}
        return Response(s.RegistrySummarySerializer(registries, many=True, context=context).data)

    def _document(self, request: Request, slug: str) -> Response:
        registry = selectors.registry_detail(slug=slug, user=request.user)
        context = {"editor": sees_every_profile(request.user) or can_write(request.user, registry)}
        return Response(s.RegistryDocumentSerializer(registry, context=context).data, headers=etag(registry))

    @extend_schema(
        responses=responses({200: s.RegistryDocumentSerializer}, AUTH, 400, 404), parameters=[REGISTRY_PATH, ETAG]
    )
    def retrieve(self, request: Request, slug: str) -> Response:
        return self._document(request, slug)

    @extend_schema(
        request=merge_patch_body(s.RegistryMergePatchSerializer),
        responses=responses({200: s.RegistryDocumentSerializer}, AUTH, BODY, 403, 404, 409, 412),
        parameters=[REGISTRY_PATH, IF_MATCH, ETAG],
        description="JSON Merge Patch (RFC 7396) of the registry: each field named replaces the stored one, "
        "`null` empties an optional one; checked like any registry write, in one version step (the registry "
        "version: `expected_version` or `If-Match`).",
    )
    def partial_update(self, request: Request, slug: str) -> Response:
        body = s.RegistryMergePatchSerializer(data=request.data, context={"slug": slug.strip().lower()})
        body.is_valid(raise_exception=True)
        registry = services.registry_patch(
            slug=slug,
            patch=body.patch(),
            expected_version=body.validated_data.get("expected_version"),
            if_match=if_match_version(request),
            actor=request.user,
            source="api",
        )
        return self._document(request, registry.slug)


@extend_schema(parameters=[REGISTRY_PARAM])
class ProfileViewSet(ProfileHistoryActions):
    merge_patch_actions = frozenset({"partial_update"})

    @extend_schema(
        responses=responses(
            {
                200: PolymorphicProxySerializer(
                    component_name="ProfileListEntry",
                    serializers=[s.ProfileListItemSerializer, s.RestrictedProfileListItemSerializer],
                    resource_type_field_name=None,
                    many=True,
                )
            },
            AUTH,
            400,
            404,
        ),
        description="The registry's profiles the caller may use. Whoever may write the registry sees every "
        "slug of it: a profile they may not use (restricted to groups they are not in) is listed as "
        "`{registry, slug, restricted: true}` only.",
    )
    def list(self, request: Request) -> Response:
        registry = selectors.registry_get(self.registry_slug(request))
        # One item serializer for every row, not `many=True`: a ListSerializer and its child reference
        # each other, and that cycle would keep every row alive until a full garbage collection.
        item = s.ProfileListItemSerializer(context={"registry": registry})
        rows = selectors.profile_list(registry=registry, user=request.user, restricted=True)
        return Response([item.to_representation(row) for row in rows])

    @extend_schema(
        request=s.ProfileCreateSerializer,
        responses=responses({201: s.ProfileDocumentSerializer}, AUTH, BODY, 403, 404, 409),
        parameters=[ETAG, LOCATION],
    )
    def create(self, request: Request) -> Response:
        body = s.ProfileCreateSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        data = dict(body.validated_data)
        registry = self.registry_slug(request, data)
        data.pop("registry", None)
        profile = services.profile_create(registry_slug=registry, actor=request.user, source="api", **data)
        return document_response(
            profile, status=201, headers={"Location": self.profile_url(request, registry, profile.slug)}
        )

    @extend_schema(
        responses=responses({200: s.ProfileDocumentSerializer}, AUTH, 400, 403, 404), parameters=[SLUG_PATH, ETAG]
    )
    def retrieve(self, request: Request, slug: str) -> Response:
        return document_response(self._profile(request, slug))

    @extend_schema(
        request=merge_patch_body(s.ProfileMergePatchSerializer),
        responses=responses({200: s.ProfileDocumentSerializer}, AUTH, BODY, 403, 404, 409, 412),
        parameters=[SLUG_PATH, IF_MATCH, ETAG],
        description='JSON Merge Patch (RFC 7396) of the profile: `{"runtime": {"system_prompt": "x"}}` '
        "changes the prompt and keeps the middlewares and tools; arrays replace; `null` removes a key. The "
        "merged profile is checked like a created one; nothing is written when a check fails.",
    )
    def partial_update(self, request: Request, slug: str) -> Response:
        registry = self.registry_slug(request)
        body = s.ProfileMergePatchSerializer(
            data=request.data, context={"registry": registry, "slug": slug.strip().lower()}
        )
        body.is_valid(raise_exception=True)
        profile = services.profile_update(
            registry_slug=registry,
            slug=slug,
            changes=body.patch(),
            merge=True,
            expected_version=body.validated_data.get("expected_version"),
            if_match=if_match_version(request),
            set_default=body.validated_data["set_default"],
            actor=request.user,
            source="api",
        )
        return document_response(profile)

    @extend_schema(
        parameters=[
            SLUG_PATH,
            OpenApiParameter("expected_version", {"type": "integer", "minimum": 1}, description="Profile version"),
            IF_MATCH,
        ],
        responses=responses({204: None}, AUTH, 400, 403, 404, 409, 412),
    )
    def destroy(self, request: Request, slug: str) -> Response:
        services.profile_delete(
            registry_slug=self.registry_slug(request),
            slug=slug,
            expected_version=request.query_params.get("expected_version"),
            if_match=if_match_version(request),
            actor=request.user,
        )
        return Response(status=204)

    @extend_schema(
        request=s.ExpectedVersionSerializer,
        responses=responses({200: s.ProfileDocumentSerializer}, AUTH, BODY, 403, 404, 409, 412),
        parameters=[SLUG_PATH, IF_MATCH, ETAG],
    )
    def make_default(self, request: Request, slug: str) -> Response:
        body = s.ExpectedVersionSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        profile = services.registry_set_default(
            registry_slug=self.registry_slug(request),
            slug=slug,
            expected_version=body.validated_data.get("expected_version"),
            if_match=if_match_version(request),
            actor=request.user,
        )
        return document_response(profile)

    @extend_schema(
        request=s.ResolveSerializer,
        responses=responses({200: s.ResolutionSerializer}, AUTH, BODY, 403, 404, 409),
        parameters=[REF_PATH],
    )
    def resolve(self, request: Request, slug: str) -> Response:
        body = s.ResolveSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        resolution = selectors.profile_resolve(
            registry_slug=self.registry_slug(request),
            profile_slug=slug,
            request_overrides=body.validated_data.get("request_overrides"),
            user=request.user,
        )
        return Response(resolution.as_dict())


class CurrentProfileViewSet(MountedViewSet):
    """The caller's current profile for this mount, stored per user and mirrored in session and cookie."""

    def _current(self, request: Request) -> Response:
        # `?registry=` picks the registry to fall back to; it must exist like on every profile route.
        registry = selectors.registry_get(self.registry_slug(request)).slug
        current = selectors.current_profile(user=request.user, mount=self.mounted.name, default_registry=registry)
        body = {
            "registry": current.registry.slug,
            "slug": current.profile.slug,
            "ref": str(current.at.ref),
            "version": current.at.version,
            "label": current.at.label,
            "mode": current.at.ref.mode,
            "source": current.source,
            "profile": s.ProfileDocumentSerializer(current.profile).data,
        }
        if current.group:
            body["group"] = current.group
        if current.stale_selection:
            body["stale_selection"] = current.stale_selection
        value = f"{current.registry.slug}/{current.profile.slug}"
        if not isinstance(request.successful_authenticator, TokenAuthentication):
            request.session[SESSION_KEY.format(mount=self.mounted.name)] = value  # token clients get no session
        response = Response(body)
        response.set_cookie(COOKIE_NAME, value, path=self.mounted.path, samesite="Lax", max_age=365 * 24 * 3600)
        # "/" is a valid cookie octet (RFC 6265) but Python quotes it; clients read `<registry>/<slug>`.
        response.cookies[COOKIE_NAME].set(COOKIE_NAME, value, value)
        return response

    @extend_schema(responses=responses({200: s.CurrentProfileSerializer}, AUTH, 400, 404), parameters=[REGISTRY_PARAM])
    def retrieve(self, request: Request) -> Response:
        return self._current(request)

    @extend_schema(
        request=s.SelectProfileSerializer,
        responses=responses({200: s.CurrentProfileSerializer}, AUTH, BODY, 403, 404, 409),
        parameters=[REGISTRY_PARAM],
    )
    def select(self, request: Request) -> Response:
        body = s.SelectProfileSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        services.profile_select(
            user=request.user,
            mount=self.mounted.name,
            registry_slug=self.registry_slug(request, body.validated_data),
            slug=body.validated_data["slug"],
        )
        return self._current(request)


class SchemaViewSet(MountedViewSet):
    """What profiles may contain: published from the definitions the apps registered."""

    @extend_schema(responses=responses({200: s.MiddlewareSchemaSerializer(many=True)}, AUTH))
    def middlewares(self, request: Request) -> Response:
        return Response(
            [
                {
                    "name": d.name,
                    "version": d.version,
                    "display_name": d.display_name,
                    "description": d.description,
                    "schema": d.schema,
                }
                for _, d in sorted(definitions.middlewares.items())
            ]
        )

    @extend_schema(responses=responses({200: s.ToolSchemaSerializer(many=True)}, AUTH))
    def tools(self, request: Request) -> Response:
        return Response(
            [
                {"name": t.name, "description": t.description, "parameters": t.parameters, "writes": t.writes}
                for t in self.mounted.tools()
            ]
        )

    @extend_schema(responses=responses({200: s.ExtensionSchemaSerializer(many=True)}, AUTH))
    def extensions(self, request: Request) -> Response:
        return Response([{"key": key, "schema": c.schema} for key, c in sorted(definitions.extensions.items())])

    @extend_schema(responses=responses({200: s.StepSettingsSchemaSerializer}, AUTH))
    def step_settings(self, request: Request) -> Response:
        return Response(
            {
                "sections": [
                    {
                        "name": section,
                        "fields": [
                            {
                                "name": f.field,
                                "type": f.type,
                                "default": f.default,
                                "description": f.description,
                                "schema": f.json_schema(),
                                "secret": f.secret,
                            }
                            for f in fields
                        ],
                    }
                    for section, fields in definitions.step_setting_sections().items()
                ]
            }
        )
