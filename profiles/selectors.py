"""Reads of registries and profiles, including resolution. A fixed number of queries each."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.db.models import Count, QuerySet

from .errors import InvalidInput, NotFound
from .models import Profile, ProfileRevision, ProfileSelection, Registry
from .resolution import Resolution, public_url, resolve_runtime
from .validation import canonical_slug


def registry_list() -> QuerySet[Registry]:
    return Registry.objects.select_related("default_profile").annotate(profile_count=Count("profiles")).order_by("slug")


def registry_get(slug: str) -> Registry:
    slug = canonical_slug(slug, field="registry")
    try:
        return Registry.objects.select_related("default_profile").get(slug=slug)
    except Registry.DoesNotExist:
        raise NotFound(f"registry {slug!r} not found", field="registry") from None


def profile_list(*, registry: Registry) -> QuerySet[Profile, dict[str, Any]]:
    """The registry's profiles in slug order, as plain rows of the columns the list shows.

    One query whatever the number of profiles. Rows, not model instances: no `Registry` per row (the
    caller already holds it) and no per-row object graph, so a long list leaves no garbage cycles.
    """
    return (
        Profile.objects.filter(registry=registry)
        .order_by("slug")
        .values("id", "slug", "display_name", "description", "runtime", "extensions", "version")
    )


def profile_get(*, registry: Registry, slug: str) -> Profile:
    slug = canonical_slug(slug)
    try:
        profile = Profile.objects.get(registry=registry, slug=slug)
    except Profile.DoesNotExist:
        raise NotFound(f"profile {slug!r} not found in registry {registry.slug!r}", field="slug") from None
    profile.registry = registry
    return profile


def profile_revisions(*, profile: Profile) -> QuerySet[ProfileRevision]:
    return ProfileRevision.objects.filter(profile_id_at_write=profile.pk).order_by("-version")


def profile_revision_get(*, profile: Profile, version: int) -> ProfileRevision:
    revision = ProfileRevision.objects.filter(profile_id_at_write=profile.pk, version=version).first()
    if revision is None:
        raise NotFound(f"profile {profile.slug!r} has no version {version}", field="version")
    return revision


def server_engine_defaults() -> dict[str, dict[str, Any]]:
    """The lowest layer of engine settings; part of every fingerprint, so nothing changes unseen."""
    return {
        "ai-chat": {"ai-api-type": settings.CHAT_DEFAULT_API_TYPE, "ai-engine": settings.CHAT_DEFAULT_MODEL},
        "openai-chat": {"openai-base-url": public_url(settings.OPENAI_BASE_URL)},
        "anthropic-chat": {"anthropic-base-url": public_url(settings.ANTHROPIC_BASE_URL)},
    }


def _pick_profile(registry: Registry, slug: str | None) -> Profile:
    if slug is not None:
        return profile_get(registry=registry, slug=slug)
    if registry.default_profile is not None:
        return registry.default_profile
    fallback = Profile.objects.filter(registry=registry, slug="default").first()
    if fallback is None:
        raise InvalidInput("profile slug is required and registry has no default", field="profile.slug")
    return fallback


def profile_resolve(
    *, registry_slug: str, profile_slug: str | None = None, request_overrides: Any = None
) -> Resolution:
    """Registry (404) -> profile: given, else default, else `default`, else 400 -> overrides -> fingerprint.

    Costs at most two queries whatever the number of registries or profiles.
    """
    registry = registry_get(registry_slug)
    return profile_resolve_loaded(
        registry=registry, profile=_pick_profile(registry, profile_slug), request_overrides=request_overrides
    )


def profile_resolve_loaded(*, registry: Registry, profile: Profile, request_overrides: Any = None) -> Resolution:
    """Resolution of rows the caller has already loaded (no query)."""
    return resolve_runtime(
        registry=registry.slug,
        profile=profile.slug,
        profile_version=profile.version,
        runtime=profile.runtime,
        policy=profile.policy,
        extensions=profile.extensions,
        request_overrides=request_overrides,
        server_defaults=server_engine_defaults(),
    )


@dataclass(frozen=True)
class CurrentProfile:
    registry: Registry
    profile: Profile
    source: str  # "selection" | "default"
    # The stored selection that no longer resolves, so the UI can say what happened.
    stale_selection: dict[str, str] | None = None


def current_profile(*, user: Any, mount: str, default_registry: str) -> CurrentProfile:
    """The user's stored selection for this mount; a selection that no longer resolves falls back."""
    selection = None
    if getattr(user, "is_authenticated", False):
        selection = ProfileSelection.objects.filter(user=user, mount=mount).first()
    if selection is not None:
        profile = (
            Profile.objects.select_related("registry", "registry__default_profile")
            .filter(registry__slug=selection.registry_slug, slug=selection.profile_slug)
            .first()
        )
        if profile is not None:
            return CurrentProfile(registry=profile.registry, profile=profile, source="selection")
    try:
        registry = registry_get(selection.registry_slug if selection else default_registry)
    except NotFound:  # the selected registry itself is gone
        registry = registry_get(default_registry)
    stale = {"registry": selection.registry_slug, "slug": selection.profile_slug} if selection else None
    return CurrentProfile(
        registry=registry, profile=_pick_profile(registry, None), source="default", stale_selection=stale
    )
