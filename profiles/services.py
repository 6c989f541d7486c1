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
from .errors import Conflict, Forbidden, InvalidInput, NotFound, PreconditionFailed, ReadOnly, VersionConflict
from .models import (
    Profile,
    ProfileLabel,
    ProfileLabelMove,
    ProfileRevision,
    ProfileSelection,
    Registry,
    default_protected_labels,
)
from .selectors import profile_at, profile_get, registry_get
from .timestamps import now_ms
from .validation import (
    canonical_label,
    canonical_slug,
    ensure_storable,
    parse_profile_ref,
    parse_version,
    validate_extensions,
    validate_policy,
    validate_profile_content,
    validate_runtime,
)

EDITABLE_FIELDS = ("display_name", "description", "runtime", "policy", "extensions")
# Files are the authority for what they contain: import and seed may rewrite read-only profiles.
FILE_SOURCES = frozenset({"import", "seed"})
# Moving or removing a protected label (promoting a version) needs this on top of the model permissions.
PROMOTE_PERMISSION = "profiles.promote_profile"


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
    *,
    slug: str,
    display_name: str = "",
    description: str = "",
    tags: list[str] | None = None,
    protected_labels: Any = None,
    serve_label: Any = None,
) -> Registry:
    """`protected_labels` None: `["production"]`; `serve_label` None or "": plain slugs serve the latest."""
    ensure_storable({"display_name": display_name, "description": description, "tags": tags}, field="")
    slug = canonical_slug(slug, field="registry")
    labels = _label_settings(protected_labels=protected_labels, serve_label=serve_label)
    try:
        with transaction.atomic():
            return Registry.objects.create(
                slug=slug, display_name=display_name or slug, description=description, tags=list(tags or []), **labels
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
    protected_labels: Any = None,
    serve_label: Any = None,
    expected_version: Any = None,
) -> Registry:
    """Change any of the text, the default profile (by slug) and the label settings in one version step;
    None leaves a field. `expected_version` is the registry version the caller read (409 when it moved
    meanwhile)."""
    ensure_storable({"display_name": display_name, "description": description}, field="")
    registry = _locked_registry(slug)
    check_version(registry.version, expected_version=expected_version, what="registry")
    fields = {"display_name": display_name, "description": description}
    if protected_labels is not None or serve_label is not None:
        settings = _label_settings(protected_labels=protected_labels, serve_label=serve_label)
        fields |= {
            k: settings[k]
            for k, given in (("protected_labels", protected_labels), ("serve_label", serve_label))
            if given is not None
        }
    changes: dict[str, Any] = {k: v for k, v in fields.items() if v is not None and getattr(registry, k) != v}
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


def _label_settings(*, protected_labels: Any, serve_label: Any) -> dict[str, Any]:
    """Canonical `protected_labels` (sorted, unique) and `serve_label` ("" = none)."""
    if protected_labels is None:
        protected = default_protected_labels()
    elif isinstance(protected_labels, list):
        protected = sorted({canonical_label(n, field="protected_labels") for n in protected_labels})
    else:
        raise InvalidInput("must be a list of label names", field="protected_labels")
    serve = "" if serve_label in (None, "") else canonical_label(serve_label, field="serve_label")
    return {"protected_labels": protected, "serve_label": serve}


# --------------------------------------------------------------------------- labels


def _check_label_move(registry: Registry, name: str, actor: Any, source: str) -> None:
    """A protected label (the registry's `protected_labels`) moves only with `profiles.promote_profile`;
    the importer and the seed are the authority for what their file says."""
    if source in FILE_SOURCES or name not in (registry.protected_labels or []):
        return
    if actor is None or not actor.has_perm(PROMOTE_PERMISSION):
        raise Forbidden(f"label {name!r} is protected: moving it needs {PROMOTE_PERMISSION}", field="name")


@transaction.atomic
def label_set(
    *,
    registry_slug: str,
    slug: str,
    name: Any,
    version: Any,
    expected_version: Any = None,
    actor: Any = None,
    source: str = "api",
) -> ProfileLabel:
    """Point label `name` at `version` of the profile (creating or moving it) and record the move.

    `expected_version` is the label's current version (absent label: none); a mismatch is 409."""
    name = canonical_label(name)
    version = parse_version(version, field="version")
    registry = _locked_registry(registry_slug)
    profile = _locked_profile(registry, slug)
    _check_label_move(registry, name, actor, source)
    if (
        version > profile.version
        or not ProfileRevision.objects.filter(profile_id_at_write=profile.pk, version=version).exists()
    ):
        raise NotFound(f"profile {profile.slug!r} has no version {version}", field="version")
    label = ProfileLabel.objects.select_for_update().filter(profile=profile, name=name).first()
    current = label.version if label is not None else None
    if expected_version is not None:
        expected = parse_version(expected_version, field="expected_version")
        if expected != current:
            raise VersionConflict(expected=expected, actual=current, what=f"label {name!r}")
    if current == version:
        return label
    stamp, who = now_ms(), _actor_name(actor)
    if label is None:
        label = ProfileLabel.objects.create(
            profile=profile, name=name, version=version, updated_at_ms=stamp, updated_by=who
        )
    else:
        ProfileLabel.objects.filter(pk=label.pk).update(version=version, updated_at_ms=stamp, updated_by=who)
        label.version, label.updated_at_ms, label.updated_by = version, stamp, who
    ProfileLabelMove.objects.create(
        profile=profile, name=name, from_version=current, to_version=version, by=who, source=source, at_ms=stamp
    )
    return label


@transaction.atomic
def label_delete(
    *, registry_slug: str, slug: str, name: Any, expected_version: Any = None, actor: Any = None, source: str = "api"
) -> None:
    """Remove label `name` (404 when the profile has none); the removal is recorded as a move to None."""
    name = canonical_label(name)
    registry = _locked_registry(registry_slug)
    profile = _locked_profile(registry, slug)
    _check_label_move(registry, name, actor, source)
    label = ProfileLabel.objects.select_for_update().filter(profile=profile, name=name).first()
    if label is None:
        raise NotFound(f"profile {profile.slug!r} has no label {name!r}", field="name")
    if expected_version is not None:
        expected = parse_version(expected_version, field="expected_version")
        if expected != label.version:
            raise VersionConflict(expected=expected, actual=label.version, what=f"label {name!r}")
    label.delete()
    ProfileLabelMove.objects.create(
        profile=profile,
        name=name,
        from_version=label.version,
        to_version=None,
        by=_actor_name(actor),
        source=source,
        at_ms=now_ms(),
    )


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
    """Store the user's current profile for a mount: a ref (`slug`, `slug@3`, `slug@label`) that must
    resolve now."""
    ref = parse_profile_ref(slug, field="slug")
    registry = registry_get(registry_slug)
    profile_at(registry=registry, profile=profile_get(registry=registry, slug=ref.slug), ref=ref)
    selection, _ = ProfileSelection.objects.update_or_create(
        user=user,
        mount=mount,
        defaults={"registry_slug": registry.slug, "profile_slug": ref.slug, "profile_at": ref.at},
    )
    return selection
