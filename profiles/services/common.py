"""What every write service shares: the editable fields, the registry lock, version and access checks, revision and audit records."""

from __future__ import annotations

from typing import Any

from django.db import connection
from django.db.models import F

from .. import selectors
from ..access import can_use, require_editor
from ..audit import audit_record, field_changes
from ..errors import (
    Conflict,
    InvalidInput,
    NotFound,
    PreconditionFailed,
    VersionConflict,
)
from ..models import (
    Profile,
    ProfileGroupAccess,
    ProfileRevision,
    Registry,
)
from ..resolution import merge_validated
from ..selectors import profile_get, registry_get
from ..stacking import Layer, stack_merge
from ..validation import (
    canonical_slug,
    parse_version,
    validate_extensions,
    validate_group_names,
    validate_policy,
    validate_runtime,
    validate_stack,
)

EDITABLE_FIELDS = ("display_name", "description", "runtime", "policy", "extensions", "stack", "visible_to_groups")
# What a version holds and a restore writes back. Who may use a profile is not content: a restore keeps
# today's `visible_to_groups` (an old version must not reopen a profile that was restricted since).
CONTENT_FIELDS = ("display_name", "description", "runtime", "policy", "extensions", "stack")
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
        # Present when set (a profile without them reads as before).
        **({"stack": profile.stack} if profile.stack else {}),
        **({"visible_to_groups": profile.visible_to_groups} if profile.visible_to_groups else {}),
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


STACK_LOCK = 0x70726F66  # the advisory lock every profile write takes first on PostgreSQL ("prof")


def _lock_stacks() -> None:
    """Stacks span registries: a write in one registry may make a cycle or a dangling layer with a write
    in another, which each lock only their own registry. So every write that locks a registry first
    takes one lock for all of them (`_locked_registry`): always in that order, so two writes never wait
    for each other crosswise. SQLite's IMMEDIATE transactions already let one writer in at a time."""
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_xact_lock(%s)", [STACK_LOCK])


def _locked_registry(slug: str) -> Registry:
    _lock_stacks()
    try:
        return Registry.objects.select_for_update().get(slug=canonical_slug(slug, field="registry"))
    except Registry.DoesNotExist:
        raise NotFound(f"registry {slug!r} not found", field="registry") from None


def _locked_profile(registry: Registry, slug: str) -> Profile:
    try:
        return Profile.objects.select_for_update().get(registry=registry, slug=canonical_slug(slug))
    except Profile.DoesNotExist:
        raise NotFound(f"profile {slug!r} not found in registry {registry.slug!r}", field="slug") from None


def _check_visible(registry: Registry, profile: Profile, actor: Any, source: str) -> Profile:
    """A profile the acting user may not see is a 404 for them, like a missing one (nothing leaks), or a
    403 for the registry's writers, who see its slug (`selectors.not_usable`)."""
    profile.registry = registry
    if source not in FILE_SOURCES and not can_use(actor, profile):
        raise selectors.not_usable(registry, profile.slug, actor)
    return profile


def _check_editor(registry: Registry, actor: Any, source: str) -> None:
    """A registry that names `editor_groups` is edited by their members only (and superusers); the
    importer and the seed are the authority for their files."""
    if source not in FILE_SOURCES:
        require_editor(actor, registry)


def _check_default_is_everyones(profile: Profile, groups: list[str], *, field: str = "visible_to_groups") -> None:
    """Invariant: the registry default is everyone's fallback, so it is visible to everyone (409)."""
    if groups:
        raise Conflict(
            f"profile {profile.slug!r} is restricted to groups, and the registry default is everyone's fallback: "
            "it cannot be both (set another default first)",
            field=field,
        )


def _check_group_defaults_visible(registry: Registry, profile: Profile, groups: list[str]) -> None:
    """A group default must stay visible to its group."""
    for entry in registry.group_defaults or []:
        if entry["profile"] == profile.slug and groups and entry["group"] not in groups:
            raise Conflict(
                f"profile {profile.slug!r} is the default of group {entry['group']!r}, which would no longer "
                "see it: change the registry's group defaults first",
                field="visible_to_groups",
            )


def _set_group_access(profile: Profile, groups: list[str]) -> None:
    """The rows the list filters on (`ProfileGroupAccess`), written with `visible_to_groups`."""
    ProfileGroupAccess.objects.filter(profile=profile).exclude(group_name__in=groups).delete()
    have = set(ProfileGroupAccess.objects.filter(profile=profile).values_list("group_name", flat=True))
    ProfileGroupAccess.objects.bulk_create(
        [ProfileGroupAccess(profile=profile, group_name=name) for name in groups if name not in have]
    )


def _check_stack(
    registry: Registry, slug: str, stack: list[dict[str, Any]], content: dict[str, Any], actor: Any, source: str
) -> None:
    """The stack's layers exist (and the acting user may see them), make no cycle, stay within the
    lineage size, and merge with this profile's own content into a valid runtime: 400 on `stack[i]`."""
    if not stack:
        return
    user = None if source in FILE_SOURCES else actor
    layers = selectors.stack_layers(registry=registry.slug, slug=slug, stack=stack, user=user)
    own = Layer(registry.slug, slug, 0, content["runtime"], content["policy"], content["extensions"])
    runtime, _, _, _ = stack_merge([*layers, own])
    # The profile's own tools were checked with its content; a base layer's stored tools may name an MCP
    # server that went away since, which makes no dependent unsavable.
    merge_validated(runtime, check_sources=False)


def stack_check(*, registry_slug: str, slug: str) -> None:
    """Check a stored profile's stack as a write would (400 on `stack[i]`): for the importer, once every
    profile of its file is in."""
    registry = registry_get(registry_slug)
    profile = profile_get(registry=registry, slug=slug)
    content = {"runtime": profile.runtime, "policy": profile.policy, "extensions": profile.extensions}
    _check_stack(registry, profile.slug, profile.stack, content, None, "import")


def validate_access(access: dict[str, Any], *, registry: str) -> None:
    """The shape of `stack` and `visible_to_groups` (400 on their paths), without writing anything."""
    _validate_parts(access, registry=registry)


def _dependents(profile: Profile) -> list[str]:
    """`registry/slug` of the profiles whose stack names `profile` (any version)."""
    target = {"registry": profile.registry.slug, "slug": profile.slug}
    rows = Profile.objects.exclude(stack=[]).values_list("registry__slug", "slug", "stack")
    return sorted(
        f"{reg}/{slug}"
        for reg, slug, stack in rows
        if any({"registry": e.get("registry"), "slug": e.get("slug")} == target for e in stack or [])
    )


def _check_dependents(profile: Profile) -> None:
    """A new version of a base layer must leave every profile built on it (directly or not) a valid
    merged runtime: otherwise the write is refused (400 on the field that breaks it, naming the
    dependent) and rolled back with the rest of the transaction. One scan of the stacked profiles."""
    rows = list(Profile.objects.exclude(stack=[]).values_list("registry__slug", "slug", "stack"))
    done: set[tuple[str, str]] = set()
    todo = [(profile.registry.slug, profile.slug)]
    while todo:
        base = todo.pop()
        for reg, slug, stack in rows:
            if (reg, slug) in done or not any((e.get("registry"), e.get("slug")) == base for e in stack or []):
                continue
            done.add((reg, slug))
            todo.append((reg, slug))
            try:
                stack_check(registry_slug=reg, slug=slug)
            except InvalidInput as exc:
                detail = exc.errors[0][1] if exc.errors else exc.message
                raise InvalidInput(
                    f"{reg}/{slug}, which is built on this profile, would break: {exc.field}: {detail}",
                    field="runtime",
                ) from None


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


def _audit_value(value: Any) -> Any:
    """A registry field as the audit log shows it (the default profile by slug)."""
    return value.slug if isinstance(value, Profile) else value


def _audit_registry(registry: Registry, actor: Any, source: str, before: dict, after: dict) -> None:
    audit_record(
        actor=actor,
        source=source,
        action="registry.updated",
        object_type="registry",
        registry=registry.slug,
        changes=field_changes(before, after),
    )


def _validate_parts(changes: dict[str, Any], *, registry: str) -> dict[str, Any]:
    errors: list[tuple[str, str]] = []
    out: dict[str, Any] = {}
    for part, validate in (
        ("runtime", validate_runtime),
        ("policy", validate_policy),
        ("extensions", validate_extensions),
        ("stack", lambda raw: validate_stack(raw, registry=registry)),
        ("visible_to_groups", lambda raw: validate_group_names(raw, field="visible_to_groups")),
    ):
        if part in changes:
            out[part], found = validate(changes[part])
            errors += found
    if errors:
        raise InvalidInput.from_errors(errors)
    return out
