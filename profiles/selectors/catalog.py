"""Reads of registries, profiles, their versions, labels, stats and rollouts: what the admin, the API and
the release pages show. A fixed number of queries each (what a turn runs: `serving`)."""

from __future__ import annotations

from typing import Any

from django.db.models import BooleanField, Count, ExpressionWrapper, IntegerField, OuterRef, Q, QuerySet, Subquery
from django.db.models.functions import Coalesce

from ..access import can_use, can_write, visible_filter, write_filter
from ..definitions import definitions
from ..diff import document_diff
from ..errors import NotFound, NotVisible, Restricted
from ..models import LabelRequest, LabelRollout, Profile, ProfileLabel, ProfileLabelMove, ProfileRevision, Registry
from ..prepared import Param, Select
from ..validation import canonical_slug


def registry_list(*, user: Any = None) -> QuerySet[Registry]:
    """Every registry with its `profile_count`: the profiles `user` may see (None: all). One query."""
    registries = Registry.objects.select_related("default_profile").order_by("slug")
    visible = visible_filter(user)
    if visible is None:
        return registries.annotate(profile_count=Count("profiles"))
    counted = (
        Profile.objects.filter(registry=OuterRef("pk"))
        .filter(visible)
        .order_by()
        .values("registry")
        .annotate(n=Count("pk"))
        .values("n")
    )
    return registries.annotate(profile_count=Coalesce(Subquery(counted, output_field=IntegerField()), 0))


def registry_detail(*, slug: str, user: Any = None) -> Registry:
    """One registry with its `profile_count` as `registry_list` counts it (404 when it does not exist)."""
    slug = canonical_slug(slug, field="slug")
    registry = registry_list(user=user).filter(slug=slug).first()
    if registry is None:
        raise NotFound(f"registry {slug!r} not found", field="slug")
    return registry


# Every resolution (a turn's, a request's) reads these, compiled once (`profiles.prepared`).
_REGISTRY = Select(lambda: Registry.objects.select_related("default_profile").filter(slug=Param("slug")).order_by()[:1])
_PROFILE = Select(lambda: Profile.objects.filter(registry_id=Param("registry_id"), slug=Param("slug")).order_by()[:1])


def registry_get(slug: str) -> Registry:
    slug = canonical_slug(slug, field="registry")
    registry = _REGISTRY.first(slug=slug)
    if registry is None:
        raise NotFound(f"registry {slug!r} not found", field="registry")
    return registry


LIST_COLUMNS = ("id", "slug", "display_name", "description", "runtime", "extensions", "version")


def profile_list(*, registry: Registry, user: Any = None, restricted: bool = False) -> QuerySet[Profile, Any]:
    """The registry's profiles `user` may see (None: all), in slug order, as plain rows of the columns
    the list shows. `restricted`: also the others when `user` may write the registry (they see every
    slug of it, `profiles.access`); a row says `usable` False for those.

    One query whatever the number of profiles or of the user's groups (they are a subquery). Rows, not
    model instances: no `Registry` per row (the caller already holds it) and no per-row object graph, so
    a long list leaves no garbage cycles.
    """
    rows = Profile.objects.filter(registry=registry).order_by("slug")
    visible = visible_filter(user)
    if visible is None:
        return rows.values(*LIST_COLUMNS)
    if not restricted:
        return rows.filter(visible).values(*LIST_COLUMNS)
    usable = ExpressionWrapper(visible, output_field=BooleanField())
    return (
        rows.annotate(usable=usable)
        .filter(Q(usable=True) | write_filter(user, registry))
        .values(*LIST_COLUMNS, "usable")
    )


def _not_found(registry: Registry, slug: str, field: str = "slug") -> NotFound:
    return NotFound(f"profile {slug!r} not found in registry {registry.slug!r}", field=field)


def not_usable(registry: Registry, slug: str, user: Any, field: str = "slug") -> NotVisible:
    """The error for a profile `user` may not use: 404 like a missing one (nothing leaks), or 403 for the
    registry's writers, who see every slug of it anyway (`profiles.access`)."""
    if can_write(user, registry):
        return Restricted(
            f"profile {slug!r} in registry {registry.slug!r} is restricted to groups you are not in", field=field
        )
    return NotVisible(_not_found(registry, slug, field).message, field=field)


def profile_get(*, registry: Registry, slug: str, user: Any = None, field: str = "slug") -> Profile:
    """The profile, or 404; also 404 when `user` may not use it (403 for the registry's writers:
    `not_usable`). `user` None: no access check (the system's own reads)."""
    slug = canonical_slug(slug, field=field)
    profile = _PROFILE.first(registry_id=registry.pk, slug=slug)
    if profile is None:
        raise _not_found(registry, slug, field)
    profile.registry = registry
    if not can_use(user, profile):
        raise not_usable(registry, slug, user, field)
    return profile


def profile_revisions(*, profile: Profile) -> QuerySet[ProfileRevision]:
    return ProfileRevision.objects.filter(profile_id_at_write=profile.pk).order_by("-version")


def profile_revision_get(*, profile: Profile, version: int) -> ProfileRevision:
    revision = ProfileRevision.objects.filter(profile_id_at_write=profile.pk, version=version).first()
    if revision is None:
        raise NotFound(f"profile {profile.slug!r} has no version {version}", field="version")
    return revision


def profile_document_at(*, profile: Profile, version: int) -> dict[str, Any]:
    """The profile's document as it was at `version` (its stored revision); 404 for a version it never had."""
    return profile_revision_get(profile=profile, version=version).document


def profile_versions_diff(*, profile: Profile, old: int, new: int) -> list[dict[str, Any]]:
    """What changes from version `old` to version `new` of the profile (`[]`: the same content)."""
    return document_diff(
        profile_document_at(profile=profile, version=old), profile_document_at(profile=profile, version=new)
    )


def profile_restore_plan(*, profile: Profile, version: int) -> list[dict[str, Any]]:
    """The diff a restore of `version` would apply to the profile as it is now (nothing is written)."""
    current = profile_document_at(profile=profile, version=profile.version)
    # A restore keeps today's `visible_to_groups` (who may use it is not content).
    target = {**profile_document_at(profile=profile, version=version), "visible_to_groups": profile.visible_to_groups}
    return document_diff(current, target)


def label_list(*, profile: Profile) -> QuerySet[ProfileLabel]:
    return ProfileLabel.objects.filter(profile=profile).order_by("name")


def label_history(*, profile: Profile, name: str) -> QuerySet[ProfileLabelMove]:
    """Every move of the label, newest first (404 when it never existed)."""
    moves = ProfileLabelMove.objects.filter(profile=profile, name=name).order_by("-at_ms", "-id")
    if not moves.exists():
        raise NotFound(f"profile {profile.slug!r} never had a label {name!r}", field="name")
    return moves


# One row of per-version metrics (`GET .../profiles/{slug}/stats`): what a version with no turns shows.
EMPTY_VERSION_STATS: dict[str, Any] = {
    "turns": 0,
    "completed": 0,
    "failed": 0,
    "cancelled": 0,
    "interrupted": 0,
    "latency_ms_p50": None,
    "latency_ms_p95": None,
    "tokens_in": 0,
    "tokens_out": 0,
    "cost_usd": 0.0,
    "thumbs_up": 0,
    "thumbs_down": 0,
    "first_turn_at_ms": None,
    "last_turn_at_ms": None,
}


def profile_version_stats(*, profile: Profile, version: int | None = None, since_ms: int | None = None) -> list[dict]:
    """How each version (or one) behaved, from the turns recorded by the app that runs them
    (`definitions.version_stats`): a fixed number of queries whatever the number of turns."""
    if version is not None:
        profile_revision_get(profile=profile, version=version)  # 404 for a version it never had
    provider = definitions.version_stats
    computed = (
        provider(registry=profile.registry.slug, slug=profile.slug, version=version, since_ms=since_ms)
        if provider is not None
        else {}
    )
    versions = [version] if version is not None else range(1, profile.version + 1)
    return [{"version": v, **EMPTY_VERSION_STATS, **computed.get(v, {})} for v in versions]


def label_request_list(*, profile: Profile, name: str) -> list[LabelRequest]:
    """The requests to move one label of the profile (`profiles.approvals`), newest first."""
    return list(LabelRequest.objects.filter(profile=profile, name=name).select_related("profile").order_by("-id"))


# --------------------------------------------------------------------------- rollouts


def rollout_arm_stats(*, rollout: LabelRollout) -> dict[int, dict[str, Any]]:
    """Per arm version, the stats of the turns the rollout served (since it started), from the turns the
    app that runs them recorded (`definitions.version_stats`, filtered by rollout): three queries."""
    provider = definitions.version_stats
    if provider is None:
        return {}
    return provider(
        registry=rollout.profile.registry.slug,
        slug=rollout.profile.slug,
        since_ms=rollout.started_at_ms,
        rollout_id=rollout.pk,
    )


def rollout_detail(*, profile: Profile, name: str) -> dict[str, Any]:
    """The label's rollout (active or halted, else the last ended one) with each arm's stats; 404 when
    the label never had one."""
    label = ProfileLabel.objects.filter(profile=profile, name=name).first()
    if label is None:
        raise NotFound(f"profile {profile.slug!r} has no label {name!r}", field="name")
    rollouts = LabelRollout.objects.filter(profile=profile, name=name)
    rollout = rollouts.filter(pk=label.rollout_id).first() if label.rollout_id else rollouts.order_by("-id").first()
    if rollout is None:
        raise NotFound(f"label {name!r} of profile {profile.slug!r} has no rollout", field="name")
    rollout.profile = profile
    stats = rollout_arm_stats(rollout=rollout)
    return {
        "id": rollout.pk,
        "label": name,
        "label_version": label.version,
        "status": rollout.status,
        "arms": [{**arm, "stats": {**EMPTY_VERSION_STATS, **stats.get(arm["version"], {})}} for arm in rollout.arms],
        "sticky": rollout.sticky,
        "guard": rollout.guard,
        "halted_reason": rollout.halted_reason or None,
        "started_at_ms": rollout.started_at_ms,
        "updated_at_ms": rollout.updated_at_ms,
        "ended_at_ms": rollout.ended_at_ms,
        "by": rollout.by,
    }
