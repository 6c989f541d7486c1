"""Label writes: set (move) and delete, with their history, audit entries, webhooks and stale requests;
and how a rollout's step on a label is recorded (`rollouts` writes rollouts; a move ends one)."""

from __future__ import annotations

from typing import Any

from django.db import transaction

from ..audit import audit_record
from ..definitions import definitions
from ..errors import (
    ApprovalRequired,
    Forbidden,
    InvalidInput,
    NotFound,
    VersionConflict,
)
from ..models import (
    LabelRequest,
    LabelRollout,
    Profile,
    ProfileLabel,
    ProfileLabelMove,
    ProfileRevision,
    Registry,
)
from ..timestamps import now_ms
from ..validation import (
    canonical_label,
    parse_version,
)
from ..webhooks import webhooks_emit
from .common import (
    FILE_SOURCES,
    PROMOTE_PERMISSION,
    _actor_name,
    _check_editor,
    _check_visible,
    _locked_profile,
    _locked_registry,
)

# --------------------------------------------------------------------------- labels


def _check_label_move(registry: Registry, name: str, actor: Any, source: str, *, approvals: bool = True) -> None:
    """A protected label (the registry's `protected_labels`) moves only with `profiles.promote_profile`,
    and in a registry that requires approvals only through an approved request, for everyone (an approved
    request moves it without this check; `approvals` False: a step back to the label's own version, such
    as ending its rollout); the importer and the seed are the authority for their file."""
    if source in FILE_SOURCES or name not in (registry.protected_labels or []):
        return
    if approvals and registry.required_approvals:
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
    check_app_rules(registry, profile, name, [version], source)
    if label is not None:
        _end_rollout(registry, profile, label, actor, source)
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


def check_app_rules(registry: Registry, profile: Profile, name: str, versions: list[int], source: str) -> None:
    """What apps add to moving a label to `versions` (an evaluation gate: `Definitions.label_move_checks`);
    the importer and the seed are the authority for their file."""
    if versions and source not in FILE_SOURCES:
        definitions.check_label_move(registry=registry.slug, slug=profile.slug, label=name, versions=versions)


def check_version_exists(profile: Profile, version: int) -> None:
    if (
        version > profile.version
        or not ProfileRevision.objects.filter(profile_id_at_write=profile.pk, version=version).exists()
    ):
        raise NotFound(f"profile {profile.slug!r} has no version {version}", field="version")


def check_arm_versions(profile: Profile, arms: list[dict[str, int]], *, field: str = "arms") -> None:
    """Every arm of a rollout names a version the profile has: else 400 on the arm's path."""
    for i, arm in enumerate(arms):
        try:
            check_version_exists(profile, arm["version"])
        except NotFound as exc:
            raise InvalidInput(exc.message, field=f"{field}[{i}].version") from None


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
    _end_rollout(registry, profile, label, actor, source)
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


# --------------------------------------------------------------------------- rollout steps


def rollout_step(
    registry: Registry,
    profile: Profile,
    label: ProfileLabel,
    rollout: LabelRollout,
    event: str,
    actor: Any,
    source: str,
    *,
    request: LabelRequest | None = None,
    before: dict[str, Any] | None = None,
) -> None:
    """A rollout's step (`started`, `changed`, `halted`, `ended`) in the label's history (the label's own
    version stays), the audit log (`rollout.<event>`) and to the webhooks (`rollout.halted`, else
    `rollout.changed`)."""
    step: dict[str, Any] = {"event": event, "id": rollout.pk, "arms": rollout.arms, "sticky": rollout.sticky}
    if rollout.halted_reason:
        step["halted_reason"] = rollout.halted_reason
    ProfileLabelMove.objects.create(
        profile=profile,
        name=label.name,
        from_version=label.version,
        to_version=label.version,
        by=_actor_name(actor) or source,
        source=source,
        at_ms=rollout.updated_at_ms,
        request_id=request.pk if request is not None else None,
        rollout=step,
    )
    changes = {"label": label.name, **step, "guard": rollout.guard, "status": rollout.status}
    audit_record(
        actor=actor,
        source=source,
        action=f"rollout.{event}",
        object_type="rollout",
        registry=registry.slug,
        slug=profile.slug,
        changes={**changes, "before": before} if before else changes,
    )
    webhooks_emit(
        registry=registry,
        event="rollout.halted" if event == "halted" else "rollout.changed",
        actor=actor,
        profile=profile.slug,
        label=label.name,
        version=label.version,
        request=request.pk if request is not None else None,
        rollout={k: v for k, v in changes.items() if k not in ("label", "event")} | {"event": event},
    )


def _end_rollout(registry: Registry, profile: Profile, label: ProfileLabel, actor: Any, source: str) -> None:
    """The label moves or goes: its rollout (active or halted) ends with it."""
    if label.rollout_id is None:
        return
    rollout = LabelRollout.objects.select_for_update().get(pk=label.rollout_id)
    stamp = now_ms()
    rollout.status, rollout.updated_at_ms = LabelRollout.Status.ENDED, stamp
    rollout.ended_at_ms = rollout.ended_at_ms or stamp
    rollout.save(update_fields=["status", "updated_at_ms", "ended_at_ms"])
    ProfileLabel.objects.filter(pk=label.pk).update(rollout=None)
    label.rollout_id = None
    rollout_step(registry, profile, label, rollout, "ended", actor, source)
