"""Every write to registries and profiles: API, admin, import and seed all call these functions.

Each service runs in one transaction that locks the registry row first (one lock order, so no
deadlocks), then guards the profile version with a conditional UPDATE: on SQLite, where
`select_for_update()` does nothing, the conditional UPDATE is what enforces the version.
"""

from __future__ import annotations

from typing import Any

from django.db import IntegrityError, connection, transaction
from django.db.models import F

from . import selectors
from .access import can_use, require_editor
from .audit import audit_record, field_changes
from .diff import document_diff
from .errors import (
    ApprovalRequired,
    Conflict,
    Forbidden,
    InvalidInput,
    NotFound,
    PreconditionFailed,
    ReadOnly,
    VersionConflict,
)
from .models import (
    LabelRequest,
    Profile,
    ProfileGroupAccess,
    ProfileLabel,
    ProfileLabelMove,
    ProfileRevision,
    ProfileSelection,
    Registry,
    default_protected_labels,
)
from .patches import profile_changes, registry_changes
from .resolution import Layer, merge_validated, stack_merge
from .selectors import profile_at, profile_get, profile_resolve_at, registry_get
from .timestamps import now_ms
from .validation import (
    canonical_label,
    canonical_slug,
    ensure_storable,
    parse_profile_ref,
    parse_version,
    validate_extensions,
    validate_group_defaults,
    validate_group_names,
    validate_policy,
    validate_profile_content,
    validate_runtime,
    validate_stack,
)
from .webhooks import webhooks_emit

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
    merge_validated(runtime)


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
    editor_groups: Any = None,
    actor: Any = None,
    source: str = "api",
) -> Registry:
    """`protected_labels` None: `["production"]`; `serve_label` None or "": plain slugs serve the latest;
    `editor_groups` None or []: whoever has the model permissions edits it. (Group defaults name
    profiles: `registry_update` sets them once it has some.)"""
    ensure_storable(
        {"display_name": display_name, "description": description, "tags": tags, "editor_groups": editor_groups},
        field="",
    )
    slug = canonical_slug(slug, field="registry")
    labels = _label_settings(protected_labels=protected_labels, serve_label=serve_label)
    editors, errors = validate_group_names(editor_groups, field="editor_groups")
    if errors:
        raise InvalidInput.from_errors(errors)
    try:
        with transaction.atomic():
            registry = Registry.objects.create(
                slug=slug,
                display_name=display_name or slug,
                description=description,
                tags=list(tags or []),
                editor_groups=editors,
                **labels,
            )
    except IntegrityError:
        raise Conflict(f"registry {slug!r} already exists", field="registry") from None
    initial = {"display_name": registry.display_name, "editor_groups": editors, **labels}
    audit_record(
        actor=actor,
        source=source,
        action="registry.created",
        object_type="registry",
        registry=slug,
        changes=field_changes({}, initial),
    )
    return registry


@transaction.atomic
def registry_update(
    *,
    slug: str,
    display_name: str | None = None,
    description: str | None = None,
    default_profile: str | None = None,
    protected_labels: Any = None,
    serve_label: Any = None,
    editor_groups: Any = None,
    group_defaults: Any = None,
    required_approvals: Any = None,
    approver_groups: Any = None,
    expected_version: Any = None,
    if_match: int | None = None,
    actor: Any = None,
    source: str = "api",
) -> Registry:
    """Change any of the text, the default profile (by slug), the label settings, the editor groups, the
    group defaults and the approval settings in one version step; None leaves a field. `expected_version`
    is the registry version the caller read (409 when it moved meanwhile; `if_match`: 412). Only the
    registry's editors may (`actor`); weakening the approvals needs a superuser."""
    ensure_storable(
        {
            "display_name": display_name,
            "description": description,
            "editor_groups": editor_groups,
            "group_defaults": group_defaults,
            "approver_groups": approver_groups,
        },
        field="",
    )
    registry = _locked_registry(slug)
    _check_editor(registry, actor, source)
    check_version(registry.version, expected_version=expected_version, if_match=if_match, what="registry")
    fields: dict[str, Any] = {"display_name": display_name, "description": description}
    if editor_groups is not None:
        fields["editor_groups"], errors = validate_group_names(editor_groups, field="editor_groups")
        if errors:
            raise InvalidInput.from_errors(errors)
    if group_defaults is not None:
        fields["group_defaults"] = _group_defaults(registry, group_defaults)
    if protected_labels is not None or serve_label is not None:
        settings = _label_settings(protected_labels=protected_labels, serve_label=serve_label)
        fields |= {
            k: settings[k]
            for k, given in (("protected_labels", protected_labels), ("serve_label", serve_label))
            if given is not None
        }
    fields |= _approval_settings(registry, required_approvals, approver_groups, fields, actor, source)
    changes: dict[str, Any] = {k: v for k, v in fields.items() if v is not None and getattr(registry, k) != v}
    if default_profile is not None:
        try:
            profile = _locked_profile(registry, default_profile)
        except NotFound as exc:
            raise NotFound(exc.message, field="default_profile") from None
        _check_default_is_everyones(profile, profile.visible_to_groups, field="default_profile")
        if not registry.is_default(profile.pk):
            changes["default_profile"] = profile
    if changes:
        before = {k: _audit_value(getattr(registry, k)) for k in changes}
        _bump_registry(registry, **changes)
        registry.refresh_from_db()
        _audit_registry(registry, actor, source, before, {k: _audit_value(v) for k, v in changes.items()})
    return registry


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


def registry_patch(
    *,
    slug: str,
    patch: dict[str, Any],
    expected_version: Any = None,
    if_match: int | None = None,
    actor: Any = None,
    source: str = "api",
) -> Registry:
    """A JSON Merge Patch of the registry document (`patches.registry_changes`), written by
    `registry_update`: the same checks, one version step, nothing written when one fails."""
    return registry_update(
        slug=slug,
        **registry_changes(patch),
        expected_version=expected_version,
        if_match=if_match,
        actor=actor,
        source=source,
    )


MAX_APPROVALS = 10


def _approval_settings(
    registry: Registry, required: Any, groups: Any, changes: dict[str, Any], actor: Any, source: str
) -> dict[str, Any]:
    """Checked `required_approvals` and `approver_groups`. Fewer approvals, other approvers or fewer
    protected labels (`changes`: the other fields being written) would let an editor wave their own move
    through: only a superuser (or a file) may weaken them."""
    fields: dict[str, Any] = {}
    if required is not None:
        if isinstance(required, bool) or not isinstance(required, int) or not 0 <= required <= MAX_APPROVALS:
            raise InvalidInput(f"must be an integer from 0 to {MAX_APPROVALS}", field="required_approvals")
        fields["required_approvals"] = required
    if groups is not None:
        fields["approver_groups"], errors = validate_group_names(groups, field="approver_groups")
        if errors:
            raise InvalidInput.from_errors(errors)
    guarded = set(registry.protected_labels or []) if registry.required_approvals else set()
    weaker = {
        "required_approvals": fields.get("required_approvals", registry.required_approvals)
        < registry.required_approvals,
        "approver_groups": bool(guarded)
        and fields.get("approver_groups", registry.approver_groups) != registry.approver_groups,
        "protected_labels": bool(guarded - set(changes.get("protected_labels", registry.protected_labels) or [])),
    }
    if any(weaker.values()) and source not in FILE_SOURCES and not getattr(actor, "is_superuser", False):
        field = next(name for name, weakens in weaker.items() if weakens)
        raise Forbidden(
            "only a superuser may lower required_approvals, change the approver groups or unprotect a label "
            "that approvals guard",
            field=field,
        )
    return fields


def _group_defaults(registry: Registry, raw: Any) -> list[dict[str, str]]:
    """`[{group, profile}]`: each profile one of the registry's, visible to its group (400 on the entry)."""
    entries, errors = validate_group_defaults(raw)
    if not errors:
        visibility = dict(
            Profile.objects.filter(registry=registry, slug__in=[e["profile"] for e in entries]).values_list(
                "slug", "visible_to_groups"
            )
        )
        for i, entry in enumerate(entries):
            at = f"group_defaults[{i}].profile"
            if entry["profile"] not in visibility:
                errors.append((at, f"profile {entry['profile']!r} not found in registry {registry.slug!r}"))
            elif visibility[entry["profile"]] and entry["group"] not in visibility[entry["profile"]]:
                errors.append((at, f"profile {entry['profile']!r} is not visible to group {entry['group']!r}"))
    if errors:
        raise InvalidInput.from_errors(errors)
    return entries


@transaction.atomic
def registry_set_default(
    *,
    registry_slug: str,
    slug: str,
    expected_version: Any = None,
    if_match: int | None = None,
    actor: Any = None,
    source: str = "api",
) -> Profile:
    """Make `slug` the default. `expected_version` is the REGISTRY's version. Read-only profiles may be
    defaults; profiles restricted to groups may not (everyone falls back to the default)."""
    registry = _locked_registry(registry_slug)
    _check_editor(registry, actor, source)
    check_version(registry.version, expected_version=expected_version, if_match=if_match, what="registry")
    profile = _check_visible(registry, _locked_profile(registry, slug), actor, source)
    _check_default_is_everyones(profile, profile.visible_to_groups, field="slug")
    if not registry.is_default(profile.pk):
        before = _audit_value(registry.default_profile)
        _bump_registry(registry, default_profile=profile)
        _audit_registry(registry, actor, source, {"default_profile": before}, {"default_profile": profile.slug})
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
    """A protected label (the registry's `protected_labels`) moves only with `profiles.promote_profile`,
    and in a registry that requires approvals only through an approved request, for everyone (an approved
    request moves it without this check); the importer and the seed are the authority for their file."""
    if source in FILE_SOURCES or name not in (registry.protected_labels or []):
        return
    if registry.required_approvals:
        raise ApprovalRequired(
            f"label {name!r} of registry {registry.slug!r} moves only through a request approved by "
            f"{registry.required_approvals} approver(s): POST …/labels/{name}/requests",
            field="name",
        )
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
    request: LabelRequest | None = None,
) -> ProfileLabel:
    """Point label `name` at `version` of the profile (creating or moving it) and record the move.

    `expected_version` is the label's current version (absent label: none); a mismatch is 409.
    `request`: the approved request applied (`profiles.approvals`): its approvals stand for the editor and
    promotion checks, and the move names it. Any other pending request on the label becomes stale."""
    name = canonical_label(name)
    version = parse_version(version, field="version")
    registry = _locked_registry(registry_slug)
    if request is None:
        _check_editor(registry, actor, source)
    profile = _check_visible(registry, _locked_profile(registry, slug), actor, source)
    if request is None:
        _check_label_move(registry, name, actor, source)
    check_version_exists(profile, version)
    label = ProfileLabel.objects.select_for_update().filter(profile=profile, name=name).first()
    current = label.version if label is not None else None
    if expected_version is not None:
        expected = parse_version(expected_version, field="expected_version")
        if expected != current:
            raise VersionConflict(expected=expected, actual=current, what=f"label {name!r}")
    if label is not None and label.version == version:
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
        profile=profile,
        name=name,
        from_version=current,
        to_version=version,
        by=who,
        source=source,
        at_ms=stamp,
        request_id=request.pk if request is not None else None,
    )
    _close_requests(profile, name, stamp, keep=request)
    _audit_label(registry, profile, name, current, version, actor, source)
    return label


def check_version_exists(profile: Profile, version: int) -> None:
    if (
        version > profile.version
        or not ProfileRevision.objects.filter(profile_id_at_write=profile.pk, version=version).exists()
    ):
        raise NotFound(f"profile {profile.slug!r} has no version {version}", field="version")


def _close_requests(profile: Profile, name: str, stamp: int, *, keep: LabelRequest | None = None) -> None:
    """The label moved: the pending requests made before (from where it was) are stale."""
    pending = LabelRequest.objects.filter(profile=profile, name=name, status=LabelRequest.Status.PENDING)
    if keep is not None:
        pending = pending.exclude(pk=keep.pk)
    pending.update(status=LabelRequest.Status.STALE, decided_at_ms=stamp)


def _audit_label(
    registry: Registry, profile: Profile, name: str, before: int | None, after: int | None, actor: Any, source: str
) -> None:
    """The move in the audit log and to the registry's webhooks."""
    action = "label.moved" if after is not None else "label.removed"
    audit_record(
        actor=actor,
        source=source,
        action=action,
        object_type="label",
        registry=registry.slug,
        slug=profile.slug,
        changes={"label": name, "from_version": before, "to_version": after},
    )
    webhooks_emit(
        registry=registry,
        event=action,
        actor=actor,
        profile=profile.slug,
        label=name,
        version=after,
        from_version=before,
    )


@transaction.atomic
def label_delete(
    *, registry_slug: str, slug: str, name: Any, expected_version: Any = None, actor: Any = None, source: str = "api"
) -> None:
    """Remove label `name` (404 when the profile has none); the removal is recorded as a move to None."""
    name = canonical_label(name)
    registry = _locked_registry(registry_slug)
    _check_editor(registry, actor, source)
    profile = _check_visible(registry, _locked_profile(registry, slug), actor, source)
    _check_label_move(registry, name, actor, source)
    label = ProfileLabel.objects.select_for_update().filter(profile=profile, name=name).first()
    if label is None:
        raise NotFound(f"profile {profile.slug!r} has no label {name!r}", field="name")
    if expected_version is not None:
        expected = parse_version(expected_version, field="expected_version")
        if expected != label.version:
            raise VersionConflict(expected=expected, actual=label.version, what=f"label {name!r}")
    label.delete()
    stamp = now_ms()
    ProfileLabelMove.objects.create(
        profile=profile,
        name=name,
        from_version=label.version,
        to_version=None,
        by=_actor_name(actor),
        source=source,
        at_ms=stamp,
    )
    _close_requests(profile, name, stamp)
    _audit_label(registry, profile, name, label.version, None, actor, source)


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
