"""Approvals: in a registry with `required_approvals: n`, a protected label moves only through a request
that n approvers (members of its `approver_groups`, or superusers; never the request's author) approve.
The last approval moves the label (recorded in its history with the request id); a request whose label
moved meanwhile is stale. Each write here is one transaction under the registry's lock, with its audit
entry."""

from __future__ import annotations

from typing import Any

from django.db import transaction

from .access import can_approve
from .arms import parse_rollout
from .audit import audit_record
from .errors import Conflict, Forbidden, InvalidInput, NotFound, RequestClosed
from .models import LabelRequest, Profile, ProfileLabel, Registry
from .services import check_version_exists, label_set, rollout_set
from .services.common import _check_editor, _check_visible, _locked_profile, _locked_registry
from .services.labels import check_arm_versions
from .timestamps import now_ms
from .validation import canonical_label, ensure_storable, parse_version
from .webhooks import webhooks_emit

MAX_NOTE_CHARS = 2000


def _target(registry_slug: str, slug: str, name: Any, actor: Any) -> tuple[Registry, Profile, str]:
    """The registry (locked), the profile and the label name of a request route."""
    name = canonical_label(name)
    registry = _locked_registry(registry_slug)
    profile = _check_visible(registry, _locked_profile(registry, slug), actor, "api")
    return registry, profile, name


def _audit(action: str, registry: Registry, request: LabelRequest, actor: Any, **changes: Any) -> None:
    """The step in the audit log and to the registry's webhooks."""
    webhooks_emit(
        registry=registry,
        event=action,
        actor=actor,
        profile=request.profile.slug,
        label=request.name,
        version=request.version,
        from_version=request.from_version,
        request=request.pk,
    )
    audit_record(
        actor=actor,
        source="api",
        action=action,
        object_type="request",
        registry=registry.slug,
        slug=request.profile.slug,
        changes={"request": request.pk, "label": request.name, "version": request.version, **changes},
    )


@transaction.atomic
def label_request_create(
    *, registry_slug: str, slug: str, name: Any, version: Any = None, rollout: Any = None, note: Any = "", actor: Any
) -> LabelRequest:
    """Ask for label `name` to point at `version`, or for `rollout` (`{arms, sticky?, guard?}`) to start on
    it. Only where approvals are required (elsewhere the label is moved directly), by an editor of the
    registry."""
    registry, profile, name = _target(registry_slug, slug, name, actor)
    _check_editor(registry, actor, "api")
    if not registry.required_approvals or name not in (registry.protected_labels or []):
        raise Conflict(
            f"label {name!r} of registry {registry.slug!r} needs no approval: move it directly", field="name"
        )
    spec = None
    if rollout is not None:
        spec = parse_rollout(rollout, field="rollout")
        check_arm_versions(profile, spec.arms, field="rollout.arms")
        version = None
    else:
        version = parse_version(version, field="version")
        check_version_exists(profile, version)
    if not isinstance(note, str) or len(note) > MAX_NOTE_CHARS:
        raise InvalidInput(f"must be a string of at most {MAX_NOTE_CHARS} characters", field="note")
    ensure_storable(note, field="note")
    current = ProfileLabel.objects.filter(profile=profile, name=name).values_list("version", flat=True).first()
    if spec is None and current == version:
        raise Conflict(f"label {name!r} already points at version {version}", field="version")
    if spec is not None and current is None:
        raise NotFound(f"profile {profile.slug!r} has no label {name!r}: set it first", field="name")
    request = LabelRequest.objects.create(
        profile=profile,
        name=name,
        version=version,
        rollout=None if spec is None else {"arms": spec.arms, "sticky": spec.sticky, "guard": spec.guard},
        from_version=current,
        note=note,
        by=actor,
        by_username=actor.get_username(),
        created_at_ms=now_ms(),
    )
    _audit("request.created", registry, request, actor, from_version=current, note=note)
    return request


def _pending(profile: Profile, name: str, request_id: Any) -> LabelRequest:
    request = LabelRequest.objects.select_for_update().filter(profile=profile, name=name, pk=request_id).first()
    if request is None:
        raise NotFound(f"label {name!r} of profile {profile.slug!r} has no request {request_id}", field="request_id")
    if request.status != LabelRequest.Status.PENDING:
        why = " (its label moved since it was made)" if request.status == LabelRequest.Status.STALE else ""
        raise RequestClosed(f"request {request.pk} is {request.status}{why}", field="request_id")
    return request


def _check_approver(registry: Registry, request: LabelRequest, actor: Any) -> None:
    if actor is None or actor.pk == request.by_id:
        raise Forbidden("the author of a request cannot approve or reject it", field="request_id")
    if not can_approve(actor, registry):
        raise Forbidden(
            f"approving requests of registry {registry.slug!r} needs membership of its approver groups "
            f"({', '.join(registry.approver_groups or []) or 'none: superusers only'})",
            field="request_id",
        )


@transaction.atomic
def label_request_approve(*, registry_slug: str, slug: str, name: Any, request_id: Any, actor: Any) -> LabelRequest:
    """Approve; the approval that reaches the registry's `required_approvals` moves the label."""
    registry, profile, name = _target(registry_slug, slug, name, actor)
    request = _pending(profile, name, request_id)
    _check_approver(registry, request, actor)
    if any(a["id"] == actor.pk for a in request.approvals):
        raise Conflict(f"you approved request {request.pk} already", field="request_id")
    stamp = now_ms()
    request.approvals = [*request.approvals, {"id": actor.pk, "username": actor.get_username(), "at_ms": stamp}]
    _audit("request.approved", registry, request, actor, approvals=len(request.approvals))
    if len(request.approvals) >= registry.required_approvals and request.rollout is not None:
        rollout_set(
            registry_slug=registry.slug,
            slug=profile.slug,
            name=name,
            body=request.rollout,
            actor=actor,
            request=request,
        )
        request.status, request.decided_at_ms = LabelRequest.Status.APPLIED, stamp
        _audit("request.applied", registry, request, actor, rollout=request.rollout)
    elif len(request.approvals) >= registry.required_approvals:
        label_set(
            registry_slug=registry.slug,
            slug=profile.slug,
            name=name,
            version=request.version,
            actor=actor,
            request=request,
        )
        request.status, request.decided_at_ms = LabelRequest.Status.APPLIED, stamp
        _audit("request.applied", registry, request, actor, from_version=request.from_version)
    request.save(update_fields=["approvals", "status", "decided_at_ms"])
    return request


@transaction.atomic
def label_request_reject(*, registry_slug: str, slug: str, name: Any, request_id: Any, actor: Any) -> LabelRequest:
    """Close a pending request without moving the label (an approver's decision)."""
    registry, profile, name = _target(registry_slug, slug, name, actor)
    request = _pending(profile, name, request_id)
    _check_approver(registry, request, actor)
    request.status, request.decided_at_ms = LabelRequest.Status.REJECTED, now_ms()
    request.save(update_fields=["status", "decided_at_ms"])
    _audit("request.rejected", registry, request, actor)
    return request
