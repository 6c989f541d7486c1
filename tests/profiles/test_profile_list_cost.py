"""The profile list stays cheap as registries grow: a fixed number of queries, no per-row garbage
cycles, and the same body as the list item shape says. Through both mounts, via the real URLs."""

from __future__ import annotations

import gc

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import resolve
from rest_framework.test import APIRequestFactory, force_authenticate

from profiles import services
from profiles.api.serializers import ProfileListItemSerializer
from profiles.models import Profile

from .support import SEED_PROFILES, MountCase

pytestmark = pytest.mark.django_db

STARTER = "webchat.starter_suggestions@v1"


def add_profiles(registry: str, upto: int) -> None:
    """Grow `registry` to hold `upto` extra profiles, each with a prompt and extensions to show."""
    existing = Profile.objects.filter(registry__slug=registry, slug__startswith="bulk-").count()
    for i in range(existing, upto):
        services.profile_create(
            registry_slug=registry,
            slug=f"bulk-{i:03d}",
            runtime={"system_prompt": f"prompt {i}", "tools": ["calculator"]},
            extensions={STARTER: {"items": [f"question {i}"]}},
        )


def list_queries(client, mount: MountCase) -> int:
    with CaptureQueriesContext(connection) as queries:
        response = client.get(mount.url("/profiles"))
    assert response.status_code == 200
    return len(queries.captured_queries)


def test_the_list_costs_the_same_queries_at_5_and_at_50_profiles(mount, seeded, api_reader):
    add_profiles(mount.registry, 5)
    at_5 = list_queries(api_reader, mount)
    add_profiles(mount.registry, 50)
    at_50 = list_queries(api_reader, mount)
    assert len(api_reader.get(mount.url("/profiles")).json()) == 50 + len(SEED_PROFILES[mount.registry])
    assert at_50 == at_5 == 2  # the registry, then its rows


def cyclic_garbage_of_one_list(mount: MountCase, user) -> int:
    """Objects a list request leaves to the cycle collector (reference counting cannot free them)."""
    view = resolve(mount.url("/profiles")).func
    request = APIRequestFactory().get(mount.url("/profiles"))
    force_authenticate(request, user=user)
    gc.collect()
    gc.disable()
    try:
        response = view(request)
        response.render()
        assert response.status_code == 200
        del response, request
        return gc.collect()
    finally:
        gc.enable()


def test_the_list_leaves_no_garbage_cycles_per_profile(mount, seeded, reader):
    add_profiles(mount.registry, 5)
    cyclic_garbage_of_one_list(mount, reader)  # warm-up: first-use caches are not garbage
    at_5 = cyclic_garbage_of_one_list(mount, reader)
    add_profiles(mount.registry, 50)
    at_50 = cyclic_garbage_of_one_list(mount, reader)
    # 45 more profiles; a single cyclic object per row would add at least 45.
    assert at_50 - at_5 < 45, (at_5, at_50)


def test_list_items_are_the_shape_the_serializer_declares(mount, seeded, api_editor, editor):
    prompt, extensions = "You answer in haiku.", {STARTER: {"items": ["Why?", "ünïcode ✓"]}}
    services.profile_create(
        registry_slug=mount.registry,
        slug="haiku",
        display_name="Haiku",
        description='Short "quoted" answers.',
        runtime={"system_prompt": prompt},
        extensions=extensions,
        set_default=True,
        actor=editor,
    )
    services.profile_create(registry_slug=mount.registry, slug="bare", actor=editor)
    services.profile_update(
        registry_slug=mount.registry, slug="bare", changes={"description": "now described"}, actor=editor
    )

    items = {item["slug"]: item for item in api_editor.get(mount.url("/profiles")).json()}

    expected = {
        "haiku": {
            "registry": mount.registry,
            "slug": "haiku",
            "display_name": "Haiku",
            "description": 'Short "quoted" answers.',
            "default_prompt": prompt,
            "extensions": extensions,
            "is_default": True,
            "version": 1,
        },
        "bare": {
            "registry": mount.registry,
            "slug": "bare",
            "display_name": "bare",  # profile_create defaults the display name to the slug
            "description": "now described",
            "default_prompt": "",
            "extensions": {},
            "is_default": False,
            "version": 2,
        },
    }
    for slug, want in expected.items():
        assert items[slug] == want
        # Same keys in the same order as the fields the OpenAPI schema publishes for a list item.
        assert list(items[slug]) == list(ProfileListItemSerializer().fields)
    assert items[mount.default_profile]["is_default"] is False  # the default moved to `haiku`
