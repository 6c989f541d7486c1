"""`conversation_urls(mount)`: the conversation routes and the page of a mount. `config.urls` composes
each mount's URLs from these, the profile API and the OpenAI-compatible API."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from django.http import HttpResponseBase
from django.urls import URLPattern, path

from profiles.mounts import Mount

from .pages import page_view
from .views import ConversationMessagesView, ConversationViewSet


def page_urls(mount: Mount) -> list[URLPattern]:
    return [path("", page_view, {"mount": mount}, name="page")]


def conversation_urls(mount: Mount) -> list[URLPattern]:
    def view(actions: dict[str, Any]) -> Callable[..., HttpResponseBase]:
        return ConversationViewSet.as_view(actions, mount=mount)

    return [
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
            "api/chat/conversations/<uuid:conv_id>/turns/<uuid:turn_id>/feedback",
            view({"put": "feedback_set", "delete": "feedback_delete"}),
            name="conversation-turn-feedback",
        ),
        path(
            "api/chat/conversations/<uuid:conv_id>/messages",
            ConversationMessagesView.as_view(mount=mount),
            name="conversation-messages",
        ),
        path("api/chat/conversations/<uuid:conv_id>/events", view({"get": "events"}), name="conversation-events"),
    ]
