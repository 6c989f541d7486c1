"""The project's ASGI application plus one baseline route, for figure 7 (`daphne bench.asgi_with_baseline:application`).

`GET /bench/plain-profiles?registry=<slug>` is a plain Django view returning `JsonResponse` of
`Profile.objects.values(...)` with the fields of the profile list API (no DRF, no auth). It runs
through a Django ASGI handler with the same settings and middleware as the real API, served by the
same daphne process; every other request goes to `config.asgi.application` unchanged.
"""

from __future__ import annotations

from django.core.handlers.asgi import ASGIHandler
from django.http import JsonResponse
from django.urls import ResolverMatch

from config.asgi import application as project_application
from profiles.models import Profile

PATH = "/bench/plain-profiles"


def plain_profiles(request):
    rows = (
        Profile.objects.filter(registry__slug=request.GET.get("registry", "default"))
        .order_by("slug")
        .values(
            "id",
            "slug",
            "display_name",
            "description",
            "runtime",
            "extensions",
            "version",
            "registry__slug",
            "registry__default_profile_id",
        )
    )
    data = [
        {
            "registry": row["registry__slug"],
            "slug": row["slug"],
            "display_name": row["display_name"],
            "description": row["description"],
            "default_prompt": (row["runtime"] or {}).get("system_prompt", ""),
            "extensions": row["extensions"],
            "is_default": row["id"] == row["registry__default_profile_id"],
            "version": row["version"],
        }
        for row in rows
    ]
    return JsonResponse(data, safe=False)


class PlainHandler(ASGIHandler):
    """Django's ASGI handler (same middleware) whose only view is `plain_profiles`."""

    def resolve_request(self, request):
        match = ResolverMatch(plain_profiles, (), {}, route=PATH.lstrip("/"))
        request.resolver_match = match
        return match


plain_application = PlainHandler()


async def application(scope, receive, send):
    if scope["type"] == "http" and scope["path"] == PATH:
        return await plain_application(scope, receive, send)
    return await project_application(scope, receive, send)
