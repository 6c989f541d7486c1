"""Server-rendered pages. One view for both mounts: the mount decides registry, tools and title."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.contrib.admin.utils import quote
from django.contrib.admin.views.decorators import staff_member_required
from django.contrib.auth.decorators import login_required
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render, resolve_url
from django.templatetags.static import static
from django.urls import reverse
from django.views.decorators.csrf import ensure_csrf_cookie

from profiles.errors import ProfileError
from profiles.mounts import Mount
from profiles.selectors import profile_get, profile_list, registry_get

from .runtime.engines.offline import recognise

STARTERS_KEY = "webchat.starter_suggestions@v1"


def unavailable_starters(user: Any, mount: Mount) -> dict[str, list[str]]:
    """Starter suggestions of the mount's profiles that would run a writing tool the user may not use,
    by `registry/slug`: the page does not offer them (the tool would refuse). Two queries."""
    try:
        registry = registry_get(mount.default_registry)
    except ProfileError:
        return {}
    tools = {t.name: t for t in mount.tools() if t.implementation is not None}
    out: dict[str, list[str]] = {}
    for row in profile_list(registry=registry, user=user):
        items = ((row["extensions"] or {}).get(STARTERS_KEY) or {}).get("items") or []
        allowed = {
            name: tools[name].implementation for name in (row["runtime"] or {}).get("tools", []) if name in tools
        }
        denied = []
        for text in items:
            intent = recognise(text, allowed) if isinstance(text, str) and allowed else None
            tool = tools[intent.tool] if intent else None
            if tool is not None and tool.writes and tool.permission and not user.has_perm(tool.permission):
                denied.append(text)
        if denied:
            out[f"{registry.slug}/{row['slug']}"] = denied
    return out


def page_config(request: HttpRequest, mount: Mount) -> dict:
    """Everything the browser app needs to know about this mount (embedded with `json_script`)."""
    tools = mount.tools()
    return {
        "mount": mount.name,
        "title": mount.title,
        "api_base": f"{mount.path}api/chat/",
        "ws_path": f"{mount.path}ws/chat/",
        "default_registry": mount.default_registry,
        "empty_state": mount.empty_state,
        "panel": {"module": static(mount.panel.module), "options": dict(mount.panel.options)} if mount.panel else None,
        "username": request.user.get_username(),
        "is_staff": request.user.is_staff,
        # Tools of this mount that change data: their results make the mount's panel refresh.
        "writing_tools": sorted(t.name for t in tools if t.writes),
        "unavailable_starters": unavailable_starters(request.user, mount),
        # Staff: "open this profile version in the admin" from a turn's runtime record.
        "admin_profile_version_url": reverse("profile-version-admin", args=["REGISTRY", "SLUG", 0])
        if request.user.is_staff
        else None,
        "login_url": resolve_url(settings.LOGIN_URL),
    }


def chat_page(request: HttpRequest, *, mount: Mount) -> HttpResponse:
    panel_options = dict(mount.panel.options) if mount.panel else {}
    context = {"mount": mount, "page_config": page_config(request, mount), "panel_options": panel_options}
    return render(request, "chat/page.html", context)


page_view = login_required(ensure_csrf_cookie(chat_page))


@staff_member_required
def profile_version_admin(request: HttpRequest, registry: str, slug: str, version: int) -> HttpResponse:
    """A turn's profile version in the admin (the runtime record knows registry, slug and version)."""
    try:
        profile = profile_get(registry=registry_get(registry), slug=slug)
    except ProfileError:
        raise Http404(f"profile {registry}/{slug} no longer exists") from None
    return redirect(reverse("admin:profiles_profile_version", args=[quote(profile.pk), version]))
