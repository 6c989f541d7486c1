"""`mount_urls(mount)`: everything a mount serves (profile API, conversations, OpenAI-compatible API, page),
written once."""

from __future__ import annotations

from django.urls import URLPattern, URLResolver, path

from profiles.api.urls import profile_api_urls
from profiles.mounts import Mount

from .gateway.urls import gateway_urls
from .pages import page_view
from .views import ConversationViewSet


def mount_urls(mount: Mount) -> list[URLPattern | URLResolver]:
    def view(actions):
        return ConversationViewSet.as_view(actions, mount=mount)

    return [
        path("", page_view, {"mount": mount}, name="page"),
        *profile_api_urls(mount),
        path("api/chat/conversations", view({"get": "list", "post": "create"}), name="conversation-list"),
        path(
            "api/chat/conversations/<uuid:conv_id>",
            view({"get": "retrieve", "patch": "partial_update", "delete": "destroy"}),
            name="conversation-detail",
        ),
        path(
            "api/chat/conversations/<uuid:conv_id>/turns/<uuid:turn_id>",
            view({"get": "turn"}),
            name="conversation-turn",
        ),
        path(
            "api/chat/conversations/<uuid:conv_id>/turns/<uuid:turn_id>/regenerate",
            view({"post": "regenerate"}),
            name="conversation-turn-regenerate",
        ),
        path(
            "api/chat/conversations/<uuid:conv_id>/messages", view({"post": "messages"}), name="conversation-messages"
        ),
        path("api/chat/conversations/<uuid:conv_id>/events", view({"get": "events"}), name="conversation-events"),
        *gateway_urls(mount),  # the OpenAI-compatible API: v1/models, v1/chat/completions
    ]
