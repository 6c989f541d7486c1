"""What every view of the shared profile API shares: routed per mount (`Mounted`), the write permission,
the version preconditions (`If-Match`, the ETag) and, under `profiles/<slug>`, the profile in the URL."""

from __future__ import annotations

import builtins
from typing import Any

from django.urls import reverse
from rest_framework import permissions, viewsets
from rest_framework.request import Request
from rest_framework.response import Response

from profiles import selectors
from profiles.mounts import Mount
from profiles.validation import canonical_slug, parse_version

from . import serializers as s
from .parsers import MergePatchParser


class ProfileWritePermission(permissions.BasePermission):
    """Reads are open to any authenticated user; writes need the Django model permission (per action:
    `required`, or the view's own `write_permissions`)."""

    required = {
        "create": "profiles.add_profile",
        "partial_update": "profiles.change_profile",
        "make_default": "profiles.change_profile",
        "restore": "profiles.change_profile",
        "destroy": "profiles.delete_profile",
        # A protected label also needs `profiles.promote_profile` (the label service checks it).
        "label_set": "profiles.change_profile",
        "label_delete": "profiles.change_profile",
    }

    def has_permission(self, request: Request, view: Any) -> bool:
        required = getattr(view, "write_permissions", None) or self.required
        perm = required.get(getattr(view, "action", None) or "")
        return perm is None or request.user.has_perm(perm)


def release_after_render(response: Response) -> None:
    """Drop DRF's links that put a rendered response in reference cycles (response -> renderer
    context -> response, and -> view -> response). Nothing reads them once the body is rendered;
    without them the response data is freed by reference counting when the request ends instead of
    waiting, with every row it holds, for a full garbage collection."""
    context = response.renderer_context or {}  # type: ignore[attr-defined]  # set by finalize_response; not in the stubs
    context.pop("response", None)
    view = context.pop("view", None)
    if getattr(view, "response", None) is response:
        view.response = None


# A view routed per mount (`as_view(mount=...)`): `mounted` is the mount it serves. Comments, not
# docstrings, on these bases: drf-spectacular publishes the nearest docstring of a view's classes as the
# description of every operation that has none of its own.
class Mounted:
    mount: Mount | None = None  # set per mount by the URLs

    @property
    def mounted(self) -> Mount:
        assert self.mount is not None, "a mounted view is routed with as_view(mount=...)"
        return self.mount


class MountedViewSet(Mounted, viewsets.ViewSet):
    permission_classes = [permissions.IsAuthenticated, ProfileWritePermission]
    merge_patch_actions: frozenset[str] = frozenset()  # actions whose body may be `application/merge-patch+json`

    def get_parsers(self) -> builtins.list[Any]:
        """JSON everywhere; also the JSON Merge Patch media type for the actions that take one. Asked
        before DRF sets `action`, so the action comes from the request's method."""
        parsers = super().get_parsers()
        method = (getattr(getattr(self, "request", None), "method", None) or "").lower()
        action = getattr(self, "action", None) or (getattr(self, "action_map", None) or {}).get(method)
        if action in self.merge_patch_actions:
            parsers.append(MergePatchParser())
        return parsers

    def finalize_response(self, request: Request, response: Any, *args: Any, **kwargs: Any) -> Any:
        response = super().finalize_response(request, response, *args, **kwargs)
        if isinstance(response, Response):
            response.add_post_render_callback(release_after_render)
        return response

    def registry_slug(self, request: Request, body: dict[str, Any] | None = None) -> str:
        raw = (body or {}).get("registry") or request.query_params.get("registry") or self.mounted.default_registry
        return canonical_slug(raw, field="registry")

    def profile_url(self, request: Request, registry: str, slug: str) -> str:
        url = reverse(f"{self.mounted.name}:profile-detail", kwargs={"slug": slug})
        return request.build_absolute_uri(
            url + ("" if registry == self.mounted.default_registry else f"?registry={registry}")
        )


def if_match_version(request: Request) -> int | None:
    """The version in the request's `If-Match` header (`"3"`, `W/"3"` or `3`), if it has one."""
    header = request.headers.get("If-Match")
    return None if header is None else parse_version(header, field="If-Match")


def etag(versioned: Any) -> dict[str, str]:
    """The version of a profile (or a registry) as an ETag: what `If-Match` sends back."""
    return {"ETag": f'"{versioned.version}"'}


def document_response(profile: Any, *, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(
        s.ProfileDocumentSerializer(profile).data, status=status, headers={**etag(profile), **(headers or {})}
    )


# Routes under `profiles/<slug>`.
class ProfileScoped(MountedViewSet):
    lookup_field = "slug"

    def _profile(self, request: Request, slug: str) -> Any:
        """The profile in the URL; 404 when it does not exist or the caller may not use it (403 for the
        registry's writers, who see its slug: `selectors.not_usable`)."""
        registry = selectors.registry_get(self.registry_slug(request))
        return selectors.profile_get(registry=registry, slug=slug, user=request.user)
