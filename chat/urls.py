"""`mount_urls(mount)`: everything a mount serves (profile API, conversations, page), written once."""

from __future__ import annotations

from django.urls import URLPattern, URLResolver

from profiles.api.urls import profile_api_urls
from profiles.mounts import Mount


def mount_urls(mount: Mount) -> list[URLPattern | URLResolver]:
    return [*profile_api_urls(mount)]
