"""Reads of conversations and turns for the REST API."""

from __future__ import annotations

from typing import Any

from django.db.models import QuerySet

from profiles.mounts import Mount

from .models import Conversation, Turn


def conversation_list(*, user: Any, mount: Mount) -> QuerySet[Conversation]:
    return Conversation.objects.filter(owner=user, mount=mount.name).order_by("-created_at")


def turn_get(*, turn_id: Any) -> Turn:
    return Turn.objects.get(pk=turn_id)
