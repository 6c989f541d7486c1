"""Server-rendered pages. One view for both mounts: the mount decides registry, tools and title."""

from __future__ import annotations

from django.conf import settings
from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render, resolve_url
from django.templatetags.static import static
from django.views.decorators.csrf import ensure_csrf_cookie

from profiles.mounts import Mount


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
        "login_url": resolve_url(settings.LOGIN_URL),
    }


def chat_page(request: HttpRequest, *, mount: Mount) -> HttpResponse:
    panel_options = dict(mount.panel.options) if mount.panel else {}
    context = {"mount": mount, "page_config": page_config(request, mount), "panel_options": panel_options}
    return render(request, "chat/page.html", context)


page_view = login_required(ensure_csrf_cookie(chat_page))
