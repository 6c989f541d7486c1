"""Server-rendered pages. One view for both mounts: the mount decides registry, tools and title."""

from __future__ import annotations

from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.views.decorators.csrf import ensure_csrf_cookie

from profiles.mounts import Mount


def chat_page(request: HttpRequest, *, mount: Mount) -> HttpResponse:
    context = {
        "mount": mount,
        "page_config": {
            "mount": mount.name,
            "title": mount.title,
            "api_base": f"{mount.path}api/chat/",
            "ws_path": f"{mount.path}ws/chat/",
            "default_registry": mount.default_registry,
            "inventory_api": "/inventory/api/" if mount.name == "inventory" else None,
            "username": request.user.get_username(),
            "is_staff": request.user.is_staff,
        },
    }
    return render(request, "chat/page.html", context)


page_view = login_required(ensure_csrf_cookie(chat_page))
