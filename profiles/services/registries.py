"""Registry writes: create, update (text, default, label settings, access, approvals), the default profile."""

from __future__ import annotations

from typing import Any

from django.db import IntegrityError, transaction

from ..audit import audit_record, field_changes
from ..errors import (
    Conflict,
    Forbidden,
    InvalidInput,
    NotFound,
)
from ..models import (
    Profile,
    Registry,
    default_protected_labels,
)
from ..patches import registry_changes
from ..validation import (
    canonical_label,
    canonical_slug,
    ensure_storable,
    validate_group_defaults,
    validate_group_names,
)
from .common import (
    FILE_SOURCES,
    _audit_registry,
    _audit_value,
    _bump_registry,
    _check_default_is_everyones,
    _check_editor,
    _check_visible,
    _locked_profile,
    _locked_registry,
    check_version,
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
