"""`gateway_urls(mount)`: the OpenAI-compatible routes, the same for every mount (`v1/` under its prefix)."""

from __future__ import annotations

from django.urls import URLPattern, path, re_path

from profiles.mounts import Mount

from .errors import route_not_found
from .views import ChatCompletionView, ModelDetailView, ModelListView, ResponseCreateView, ResponseDetailView


def gateway_urls(mount: Mount) -> list[URLPattern]:
    return [
        path("v1/models", ModelListView.as_view(mount=mount), name="openai-models"),
        path("v1/models/<path:model>", ModelDetailView.as_view(mount=mount), name="openai-model"),
        path("v1/chat/completions", ChatCompletionView.as_view(mount=mount), name="openai-chat-completions"),
        path("v1/responses", ResponseCreateView.as_view(mount=mount), name="openai-responses"),
        path("v1/responses/<str:response_id>", ResponseDetailView.as_view(mount=mount), name="openai-response"),
        re_path(
            r"^v1/", route_not_found, {"mount": mount}, name="openai-not-found"
        ),  # OpenAI's 404 for any other v1 path
    ]
