"""Websocket routes: the same consumer per mount, with the mount's options only."""

from __future__ import annotations

from django.urls import path

from profiles.mounts import Mount

from .consumers import ChatConsumer


def websocket_urls(mount: Mount) -> list:
    return [path(f"{mount.prefix}ws/chat/", ChatConsumer.as_asgi(mount=mount))]
