"""Profile writes (create, update, delete, restore) and a user's current selection."""

from __future__ import annotations

from typing import Any

from django.db import transaction

from .. import selectors
from ..audit import audit_record
from ..diff import document_diff
from ..errors import (
    ApprovalRequired,
    Conflict,
    InvalidInput,
    NotFound,
    ReadOnly,
    VersionConflict,
)
from ..models import (
    Profile,
    ProfileSelection,
    Registry,
)
from ..patches import profile_changes
from ..selectors import profile_at, profile_get, profile_resolve_at, registry_get
from ..timestamps import now_ms
from ..validation import (
    canonical_slug,
    ensure_storable,
    parse_profile_ref,
    validate_profile_content,
)
from ..webhooks import webhooks_emit
from .common import (
    CONTENT_FIELDS,
    EDITABLE_FIELDS,
    FILE_SOURCES,
    _actor_name,
    _audit_registry,
    _audit_value,
    _bump_registry,
    _check_default_is_everyones,
    _check_dependents,
    _check_editor,
    _check_group_defaults_visible,
    _check_stack,
    _check_visible,
    _dependents,
    _locked_profile,
    _locked_registry,
    _record_revision,
    _set_group_access,
    _validate_parts,
    check_version,
    profile_document,
)

# --------------------------------------------------------------------------- profiles


@transaction.atomic
def profile_create(
    *,
    registry_slug: str,
    slug: str,
    display_name: str | None = None,
    description: str = "",
    runtime: Any = None,
    policy: Any = None,
    extensions: Any = None,
    stack: Any = None,
    visible_to_groups: Any = None,
    tags: list[str] | None = None,
    set_default: bool = False,
    actor: Any = None,
    source: str = "api",
    check_stack: bool = True,
) -> Profile:
    """`check_stack` False: the caller checks the stack (`stack_check`) before its transaction ends (the
    importer: a layer may come later in its file)."""
    # First: text the database or the JSON encoder refuses must not reach a message or a row.
    ensure_storable(
        {
            "display_name": display_name,
            "description": description,
            "runtime": runtime,
            "policy": policy,
            "extensions": extensions,
            "stack": stack,
            "visible_to_groups": visible_to_groups,
            "tags": tags,
        },
        field="",
    )
    slug = canonical_slug(slug)
    registry_slug = canonical_slug(registry_slug, field="registry")
    content = validate_profile_content(runtime=runtime, policy=policy, extensions=extensions)
    access = _validate_parts({"stack": stack, "visible_to_groups": visible_to_groups}, registry=registry_slug)
    _check_text_fields(display_name=display_name, description=description)
    registry = _locked_registry(registry_slug)
    _check_editor(registry, actor, source)
    if Profile.objects.filter(registry=registry, slug=slug).exists():
        raise Conflict(f"profile {slug!r} already exists in registry {registry.slug!r}", field="slug")
    if check_stack:
        _check_stack(registry, slug, access["stack"], content, actor, source)
    stamp, who = now_ms(), _actor_name(actor)
    profile = Profile.objects.create(
        registry=registry,
        slug=slug,
        display_name=slug if display_name is None else display_name,
        description=description,
        version=1,
        tags=list(tags or []),
        created_at_ms=stamp,
        updated_at_ms=stamp,
        created_by=who,
        updated_by=who,
        source=source,
        **content,
        **access,
    )
    _set_group_access(profile, access["visible_to_groups"])
    if set_default or registry.default_profile_id is None:
        _check_default_is_everyones(profile, access["visible_to_groups"])
        _bump_registry(registry, by=2, default_profile=profile)
    else:
        _bump_registry(registry)
    _record_revision(profile, registry=registry, change="created")
    _audit_profile(
        "profile.created", registry, profile, actor, source, before={}, default=registry.is_default(profile.pk)
    )
    return profile


def _audit_profile(
    action: str, registry: Registry, profile: Profile, actor: Any, source: str, *, before: dict, **extra: Any
) -> None:
    """`changes`: the version, and the document's structured diff (`profiles.diff`) from `before`. A new
    version also goes to the registry's webhooks."""
    after = (
        profile_document(profile, registry_slug=registry.slug, is_default=False) if action != "profile.deleted" else {}
    )
    changes: dict[str, Any] = {"version": profile.version, **extra}
    if after:
        changes["diff"] = document_diff(before, after)
    audit_record(
        actor=actor,
        source=source,
        action=action,
        object_type="profile",
        registry=registry.slug,
        slug=profile.slug,
        changes=changes,
    )
    if action != "profile.deleted":
        webhooks_emit(
            registry=registry, event="version.created", actor=actor, profile=profile.slug, version=profile.version
        )


def _check_text_fields(**fields: Any) -> None:
    for name, value in fields.items():
        if value is not None and not isinstance(value, str):
            raise InvalidInput("must be a string", field=name)
        if name == "display_name" and value is not None and len(value) > 200:
            raise InvalidInput("at most 200 characters", field=name)
        if name == "display_name" and value is not None and not value.strip():
            raise InvalidInput("must not be blank (leave it out to use the slug)", field=name)


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
    check_stack: bool = True,
    merge: bool = False,
    action: str = "profile.updated",
) -> Profile:
    """Partial update: each of `runtime`, `policy`, `extensions` present in `changes` replaces the whole part;
    `merge`: `changes` is a JSON Merge Patch (RFC 7396) of those fields, merged into the stored current
    version under the registry lock (`patches.profile_changes`) and then checked like any write.

    A write that changes nothing keeps the version, unless `always_write` (a restore is a new version)."""
    ensure_storable(changes, field="")
    unknown = sorted(set(changes) - set(EDITABLE_FIELDS))
    if unknown:
        raise InvalidInput(f"field cannot be changed: {unknown[0]}", field=unknown[0])
    registry = _locked_registry(registry_slug)
    _check_editor(registry, actor, source)
    profile = _check_visible(registry, _locked_profile(registry, slug), actor, source)
    check_version(profile.version, expected_version=expected_version, if_match=if_match)
    if merge:
        changes = profile_changes({field: getattr(profile, field) for field in changes}, changes)
    _check_text_fields(**{k: v for k, v in changes.items() if k in ("display_name", "description")})
    validated = _validate_parts(changes, registry=registry.slug)
    fields = {**{k: v for k, v in changes.items() if k in ("display_name", "description")}, **validated}
    changed = sorted(k for k, v in fields.items() if getattr(profile, k) != v)
    writes = bool(changed) or always_write
    # A read-only profile refuses changes, but may still become the default (no content change).
    if writes and profile.is_read_only and source not in FILE_SOURCES:
        raise ReadOnly(f"profile {profile.slug!r} is read-only", field="policy.read_only")
    after = {part: fields.get(part, getattr(profile, part)) for part in ("runtime", "policy", "extensions", "stack")}
    if check_stack and {"runtime", "policy", "extensions", "stack"} & set(changed):
        _check_stack(registry, profile.slug, after["stack"], after, actor, source)
    groups = fields.get("visible_to_groups", profile.visible_to_groups)
    if "visible_to_groups" in changed:
        _check_group_defaults_visible(registry, profile, groups)
    if ("visible_to_groups" in changed or set_default) and (set_default or registry.is_default(profile.pk)):
        _check_default_is_everyones(profile, groups)
    if writes:
        before = profile_document(profile, registry_slug=registry.slug, is_default=False)
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
        if "visible_to_groups" in changed:
            _set_group_access(profile, profile.visible_to_groups)
        if check_stack and {"runtime", "policy", "extensions", "stack"} & set(changed):
            _check_dependents(profile)
        _record_revision(profile, registry=registry, change=change or f"updated {', '.join(changed)}")
        _audit_profile(action, registry, profile, actor, source, before=before)
    becomes_default = set_default and not registry.is_default(profile.pk)
    if becomes_default:
        default_before = _audit_value(registry.default_profile)
    if writes or becomes_default:
        _bump_registry(
            registry,
            by=int(writes) + int(becomes_default),
            **({"default_profile": profile} if becomes_default else {}),
        )
    if becomes_default:
        _audit_registry(registry, actor, source, {"default_profile": default_before}, {"default_profile": profile.slug})
    return profile


@transaction.atomic
def profile_delete(
    *,
    registry_slug: str,
    slug: str,
    expected_version: Any = None,
    if_match: int | None = None,
    actor: Any = None,
    source: str = "api",
) -> None:
    registry = _locked_registry(registry_slug)
    _check_editor(registry, actor, source)
    profile = _check_visible(registry, _locked_profile(registry, slug), actor, source)
    check_version(profile.version, expected_version=expected_version, if_match=if_match)
    if profile.is_read_only and source not in FILE_SOURCES:
        raise ReadOnly(f"profile {profile.slug!r} is read-only", field="policy.read_only")
    guarded = profile.labels.filter(name__in=registry.protected_labels or []).values_list("name", flat=True).first()
    if guarded and registry.required_approvals and source not in FILE_SOURCES:
        raise ApprovalRequired(
            f"profile {profile.slug!r} carries label {guarded!r}, which approvals guard: a superuser lowers "
            "the registry's required_approvals first",
            field="slug",
        )
    for entry in registry.group_defaults or []:
        if entry["profile"] == profile.slug:
            raise Conflict(
                f"profile {profile.slug!r} is the default of group {entry['group']!r}: change the registry's "
                "group defaults first",
                field="slug",
            )
    dependents = _dependents(profile)
    if dependents:
        raise Conflict(
            f"profile {profile.slug!r} is a base layer of {', '.join(dependents)}: remove it from their stacks first",
            field="slug",
        )
    if registry.is_default(profile.pk):
        if Profile.objects.filter(registry=registry).exclude(pk=profile.pk).exists():
            raise Conflict(f"profile {profile.slug!r} is the registry default: set another default first", field="slug")
        _bump_registry(registry, default_profile=None)
    else:
        _bump_registry(registry)
    _audit_profile("profile.deleted", registry, profile, actor, source, before={})
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
    _check_editor(registry, actor, source)
    profile = _check_visible(registry, _locked_profile(registry, slug), actor, source)
    revision = selectors.profile_revision_get(profile=profile, version=version)
    # Versions written before stacks existed have none.
    content = {k: revision.document.get(k, [] if k == "stack" else None) for k in CONTENT_FIELDS}
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
        action="profile.restored",
    )


# --------------------------------------------------------------------------- selection


@transaction.atomic
def profile_select(*, user: Any, mount: str, registry_slug: str, slug: str) -> ProfileSelection:
    """Store the user's current profile for a mount: a ref (`slug`, `slug@3`, `slug@label`) that must
    resolve now, stack included (a stored stack that does not is `ProfileUnavailable`, 409)."""
    ref = parse_profile_ref(slug, field="slug")
    registry = registry_get(registry_slug)
    at = profile_at(registry=registry, profile=profile_get(registry=registry, slug=ref.slug, user=user), ref=ref)
    if at.stack:
        profile_resolve_at(at=at, field="slug")
    selection, _ = ProfileSelection.objects.update_or_create(
        user=user,
        mount=mount,
        defaults={"registry_slug": registry.slug, "profile_slug": ref.slug, "profile_at": ref.at},
    )
    return selection
