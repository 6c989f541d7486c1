"""Every write to registries and profiles: API, admin, import and seed all call these functions.

Each service runs in one transaction that locks the registry row first (one lock order, so no
deadlocks), then guards the profile version with a conditional UPDATE: on SQLite, where
`select_for_update()` does nothing, the conditional UPDATE is what enforces the version.
"""

from __future__ import annotations

from typing import Any

from django.db import IntegrityError, transaction
from django.db.models import F

from . import selectors
from .errors import Conflict, InvalidInput, NotFound, PreconditionFailed, ReadOnly, VersionConflict
from .models import Profile, ProfileRevision, ProfileSelection, Registry
from .timestamps import now_ms
from .validation import (
    canonical_slug,
    ensure_storable,
    parse_version,
    validate_extensions,
    validate_policy,
    validate_profile_content,
    validate_runtime,
)

EDITABLE_FIELDS = ("display_name", "description", "runtime", "policy", "extensions")
# Files are the authority for what they contain: import and seed may rewrite read-only profiles.
FILE_SOURCES = frozenset({"import", "seed"})


def _actor_name(actor: Any) -> str:
    return getattr(actor, "get_username", lambda: "")() if actor is not None else ""


def profile_document(profile: Profile, *, registry_slug: str | None = None, is_default: bool | None = None) -> dict:
    """The profile as the API returns it and as history stores it."""
    if is_default is None:
        is_default = profile.registry.is_default(profile.pk)
    return {
        "registry": registry_slug or profile.registry.slug,
        "slug": profile.slug,
        "display_name": profile.display_name,
        "description": profile.description,
        "runtime": profile.runtime,
        "policy": profile.policy,
        "extensions": profile.extensions,
        "metadata": {
            "version": profile.version,
            "created_at_ms": profile.created_at_ms,
            "updated_at_ms": profile.updated_at_ms,
            "created_by": profile.created_by,
            "updated_by": profile.updated_by,
            "source": profile.source,
            "tags": profile.tags,
        },
        "is_default": is_default,
    }


def check_version(
    actual: int, *, expected_version: Any = None, if_match: int | None = None, what: str = "profile"
) -> None:
    """`expected_version` (a body field) mismatch is 409, `if_match` (the version the view parsed from
    the `If-Match` header) mismatch is 412; absent means no check."""
    if expected_version is not None:
        expected = parse_version(expected_version, field="expected_version")
        if expected != actual:
            raise VersionConflict(expected=expected, actual=actual, what=what)
    if if_match is not None and if_match != actual:
        raise PreconditionFailed(expected=if_match, actual=actual)


def _locked_registry(slug: str) -> Registry:
    try:
        return Registry.objects.select_for_update().get(slug=canonical_slug(slug, field="registry"))
    except Registry.DoesNotExist:
        raise NotFound(f"registry {slug!r} not found", field="registry") from None


def _locked_profile(registry: Registry, slug: str) -> Profile:
    try:
        return Profile.objects.select_for_update().get(registry=registry, slug=canonical_slug(slug))
    except Profile.DoesNotExist:
        raise NotFound(f"profile {slug!r} not found in registry {registry.slug!r}", field="slug") from None


def _bump_registry(registry: Registry, *, by: int = 1, **changes: Any) -> None:
    """Each profile write and each default change adds 1 to the registry version."""
    Registry.objects.filter(pk=registry.pk).update(version=F("version") + by, **changes)
    registry.refresh_from_db(fields=["version", "default_profile"])


def _record_revision(profile: Profile, *, registry: Registry, change: str) -> None:
    ProfileRevision.objects.create(
        registry_slug=registry.slug,
        profile_slug=profile.slug,
        profile_id_at_write=profile.pk,
        version=profile.version,
        document=profile_document(profile, registry_slug=registry.slug, is_default=False),
        change=change,
        source=profile.source,
        updated_by=profile.updated_by,
        updated_at_ms=profile.updated_at_ms,
    )


# --------------------------------------------------------------------------- registries


@transaction.atomic
def registry_create(
    *, slug: str, display_name: str = "", description: str = "", tags: list[str] | None = None
) -> Registry:
    ensure_storable({"display_name": display_name, "description": description, "tags": tags}, field="")
    slug = canonical_slug(slug, field="registry")
    try:
        with transaction.atomic():
            return Registry.objects.create(
                slug=slug, display_name=display_name or slug, description=description, tags=list(tags or [])
            )
    except IntegrityError:
        raise Conflict(f"registry {slug!r} already exists", field="registry") from None


@transaction.atomic
def registry_update(
    *,
    slug: str,
    display_name: str | None = None,
    description: str | None = None,
    default_profile: str | None = None,
    expected_version: Any = None,
) -> Registry:
    """Change any of the text and the default profile (by slug) in one version step; None leaves a field.

    `expected_version` is the registry version the caller read (409 when it moved meanwhile)."""
    ensure_storable({"display_name": display_name, "description": description}, field="")
    registry = _locked_registry(slug)
    check_version(registry.version, expected_version=expected_version, what="registry")
    changes: dict[str, Any] = {
        k: v
        for k, v in {"display_name": display_name, "description": description}.items()
        if v is not None and getattr(registry, k) != v
    }
    if default_profile is not None:
        profile = _locked_profile(registry, default_profile)
        if not registry.is_default(profile.pk):
            changes["default_profile"] = profile
    if changes:
        _bump_registry(registry, **changes)
        registry.refresh_from_db()
    return registry


@transaction.atomic
def registry_set_default(
    *, registry_slug: str, slug: str, expected_version: Any = None, if_match: int | None = None
) -> Profile:
    """Make `slug` the default. `expected_version` is the REGISTRY's version. Read-only profiles may be defaults."""
    registry = _locked_registry(registry_slug)
    check_version(registry.version, expected_version=expected_version, if_match=if_match, what="registry")
    profile = _locked_profile(registry, slug)
    if not registry.is_default(profile.pk):
        _bump_registry(registry, default_profile=profile)
    return profile


# --------------------------------------------------------------------------- profiles


@transaction.atomic
def profile_create(
    *,
    registry_slug: str,
    slug: str,
    display_name: str = "",
    description: str = "",
    runtime: Any = None,
    policy: Any = None,
    extensions: Any = None,
    tags: list[str] | None = None,
    set_default: bool = False,
    actor: Any = None,
    source: str = "api",
) -> Profile:
    # First: text the database or the JSON encoder refuses must not reach a message or a row.
    ensure_storable(
        {
            "display_name": display_name,
            "description": description,
            "runtime": runtime,
            "policy": policy,
            "extensions": extensions,
            "tags": tags,
        },
        field="",
    )
    slug = canonical_slug(slug)
    content = validate_profile_content(runtime=runtime, policy=policy, extensions=extensions)
    _check_text_fields(display_name=display_name, description=description)
    registry = _locked_registry(registry_slug)
    if Profile.objects.filter(registry=registry, slug=slug).exists():
        raise Conflict(f"profile {slug!r} already exists in registry {registry.slug!r}", field="slug")
    stamp, who = now_ms(), _actor_name(actor)
    profile = Profile.objects.create(
        registry=registry,
        slug=slug,
        display_name=display_name or slug,
        description=description,
        version=1,
        tags=list(tags or []),
        created_at_ms=stamp,
        updated_at_ms=stamp,
        created_by=who,
        updated_by=who,
        source=source,
        **content,
    )
    if set_default or registry.default_profile_id is None:
        _bump_registry(registry, by=2, default_profile=profile)
    else:
        _bump_registry(registry)
    _record_revision(profile, registry=registry, change="created")
    return profile


def _check_text_fields(**fields: Any) -> None:
    for name, value in fields.items():
        if value is not None and not isinstance(value, str):
            raise InvalidInput("must be a string", field=name)
        if name == "display_name" and value is not None and len(value) > 200:
            raise InvalidInput("at most 200 characters", field=name)


@transaction.atomic
def profile_update(
    *,
    registry_slug: str,
    slug: str,
    changes: dict[str, Any],
    expected_version: Any = None,
    if_match: int | None = None,
    set_default: bool = False,
    actor: Any = None,
    source: str = "api",
    change: str | None = None,
    always_write: bool = False,
) -> Profile:
    """Partial update: each of `runtime`, `policy`, `extensions` present in `changes` replaces the whole part.

    A write that changes nothing keeps the version, unless `always_write` (a restore is a new version)."""
    ensure_storable(changes, field="")
    unknown = sorted(set(changes) - set(EDITABLE_FIELDS))
    if unknown:
        raise InvalidInput(f"field cannot be changed: {unknown[0]}", field=unknown[0])
    registry = _locked_registry(registry_slug)
    profile = _locked_profile(registry, slug)
    check_version(profile.version, expected_version=expected_version, if_match=if_match)
    _check_text_fields(**{k: v for k, v in changes.items() if k in ("display_name", "description")})
    validated = _validate_parts(changes)
    fields = {**{k: v for k, v in changes.items() if k in ("display_name", "description")}, **validated}
    changed = sorted(k for k, v in fields.items() if getattr(profile, k) != v)
    writes = bool(changed) or always_write
    # A read-only profile refuses changes, but may still become the default (no content change).
    if writes and profile.is_read_only and source not in FILE_SOURCES:
        raise ReadOnly(f"profile {profile.slug!r} is read-only", field="policy.read_only")
    if writes:
        stamp = now_ms()
        rows = Profile.objects.filter(pk=profile.pk, version=profile.version).update(
            **fields, version=profile.version + 1, updated_at_ms=stamp, updated_by=_actor_name(actor), source=source
        )
        if rows == 0:  # another writer got in first (SQLite has no row lock to stop it earlier)
            actual = Profile.objects.filter(pk=profile.pk).values_list("version", flat=True).first()
            if actual is None:  # ... and deleted the profile
                raise NotFound(f"profile {profile.slug!r} not found in registry {registry.slug!r}", field="slug")
            raise VersionConflict(expected=profile.version, actual=actual)
        profile.refresh_from_db()
        _record_revision(profile, registry=registry, change=change or f"updated {', '.join(changed)}")
    becomes_default = set_default and not registry.is_default(profile.pk)
    if writes or becomes_default:
        _bump_registry(
            registry,
            by=int(writes) + int(becomes_default),
            **({"default_profile": profile} if becomes_default else {}),
        )
    return profile


def _validate_parts(changes: dict[str, Any]) -> dict[str, Any]:
    errors: list[tuple[str, str]] = []
    out: dict[str, Any] = {}
    for part, validate in (
        ("runtime", validate_runtime),
        ("policy", validate_policy),
        ("extensions", validate_extensions),
    ):
        if part in changes:
            out[part], found = validate(changes[part])
            errors += found
    if errors:
        raise InvalidInput.from_errors(errors)
    return out


@transaction.atomic
def profile_delete(
    *, registry_slug: str, slug: str, expected_version: Any = None, if_match: int | None = None, actor: Any = None
) -> None:
    registry = _locked_registry(registry_slug)
    profile = _locked_profile(registry, slug)
    check_version(profile.version, expected_version=expected_version, if_match=if_match)
    if profile.is_read_only:
        raise ReadOnly(f"profile {profile.slug!r} is read-only", field="policy.read_only")
    if registry.is_default(profile.pk):
        if Profile.objects.filter(registry=registry).exclude(pk=profile.pk).exists():
            raise Conflict(f"profile {profile.slug!r} is the registry default: set another default first", field="slug")
        _bump_registry(registry, default_profile=None)
    else:
        _bump_registry(registry)
    profile.delete()


@transaction.atomic
def profile_restore(
    *,
    registry_slug: str,
    slug: str,
    version: int,
    expected_version: Any = None,
    if_match: int | None = None,
    actor: Any = None,
    source: str = "api",
) -> Profile:
    """Write version n's content as a new version (history is never rewritten)."""
    registry = _locked_registry(registry_slug)
    profile = _locked_profile(registry, slug)
    revision = selectors.profile_revision_get(profile=profile, version=version)
    content = {k: revision.document[k] for k in EDITABLE_FIELDS}
    return profile_update(
        registry_slug=registry.slug,
        slug=profile.slug,
        changes=content,
        expected_version=expected_version,
        if_match=if_match,
        actor=actor,
        source=source,
        change=f"restored from version {version}",
        always_write=True,
    )


# --------------------------------------------------------------------------- selection


@transaction.atomic
def profile_select(*, user: Any, mount: str, registry_slug: str, slug: str) -> ProfileSelection:
    """Store the user's current profile for a mount. The profile must exist now."""
    registry_slug = canonical_slug(registry_slug, field="registry")
    slug = canonical_slug(slug)
    if not Profile.objects.filter(registry__slug=registry_slug, slug=slug).exists():
        if not Registry.objects.filter(slug=registry_slug).exists():
            raise NotFound(f"registry {registry_slug!r} not found", field="registry")
        raise NotFound(f"profile {slug!r} not found in registry {registry_slug!r}", field="slug")
    selection, _ = ProfileSelection.objects.update_or_create(
        user=user, mount=mount, defaults={"registry_slug": registry_slug, "profile_slug": slug}
    )
    return selection
