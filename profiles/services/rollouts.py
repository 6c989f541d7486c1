"""Rollouts on a label: start or change one (`rollout_set`), end it (`rollout_end`), and the guard that
halts it when an arm passes a bound (`rollout_guard_check`, called when a turn finishes or feedback
arrives). Each write is one transaction under the registry's lock, recorded like a label's move.

Serving is in `profiles.selectors.with_rollout_arm`; the rules without a database in `profiles.arms`."""

from __future__ import annotations

import logging
from typing import Any

from django.db import transaction

from ..arms import guard_breach, parse_rollout
from ..errors import NotFound
from ..models import LabelRequest, LabelRollout, Profile, ProfileLabel, Registry
from ..selectors import rollout_arm_stats
from ..timestamps import now_ms
from ..validation import canonical_label
from .common import _actor_name, _check_editor, _check_visible, _locked_profile, _locked_registry
from .labels import _check_label_move, check_app_rules, check_arm_versions, rollout_step

log = logging.getLogger(__name__)


def _locked_label(registry: Registry, profile: Profile, name: str) -> tuple[ProfileLabel, LabelRollout | None]:
    """The label (404 when the profile has none) and its rollout, active or halted; both locked."""
    label = ProfileLabel.objects.select_for_update().filter(profile=profile, name=name).first()
    if label is None:
        raise NotFound(f"profile {profile.slug!r} has no label {name!r}: set it first", field="name")
    if label.rollout_id is None:
        return label, None
    return label, LabelRollout.objects.select_for_update().get(pk=label.rollout_id)


@transaction.atomic
def rollout_set(
    *,
    registry_slug: str,
    slug: str,
    name: Any,
    body: Any,
    actor: Any = None,
    source: str = "api",
    request: LabelRequest | None = None,
) -> LabelRollout:
    """Split label `name`'s traffic between versions (`body`: `{arms, sticky?, guard?}`, see
    `profiles.arms.parse_rollout`). An active rollout is changed in place (its subjects keep their arms
    while those keep weight); a halted one is replaced by a new one. The same permission as moving the
    label; `request`: the approved request that starts it (`profiles.approvals`)."""
    name = canonical_label(name)
    registry = _locked_registry(registry_slug)
    if request is None:
        _check_editor(registry, actor, source)
    profile = _check_visible(registry, _locked_profile(registry, slug), actor, source)
    if request is None:
        _check_label_move(registry, name, actor, source)
    spec = parse_rollout(body)
    check_arm_versions(profile, spec.arms)
    label, current = _locked_label(registry, profile, name)
    check_app_rules(registry, profile, name, sorted({arm["version"] for arm in spec.arms} - {label.version}), source)
    stamp = now_ms()
    if current is not None and current.status == LabelRollout.Status.ACTIVE:
        before = {"arms": current.arms, "sticky": current.sticky, "guard": current.guard}
        if before == {"arms": spec.arms, "sticky": spec.sticky, "guard": spec.guard}:
            return current
        current.arms, current.sticky, current.guard, current.updated_at_ms = spec.arms, spec.sticky, spec.guard, stamp
        current.save(update_fields=["arms", "sticky", "guard", "updated_at_ms"])
        rollout_step(registry, profile, label, current, "changed", actor, source, request=request, before=before)
        return current
    if current is not None:  # halted: it stays in the history as it was, ended
        current.status, current.updated_at_ms = LabelRollout.Status.ENDED, stamp
        current.save(update_fields=["status", "updated_at_ms"])
    rollout = LabelRollout.objects.create(
        profile=profile,
        name=name,
        arms=spec.arms,
        sticky=spec.sticky,
        guard=spec.guard,
        started_at_ms=stamp,
        updated_at_ms=stamp,
        by=_actor_name(actor),
    )
    ProfileLabel.objects.filter(pk=label.pk).update(rollout=rollout)
    rollout_step(registry, profile, label, rollout, "started", actor, source, request=request)
    return rollout


@transaction.atomic
def rollout_end(*, registry_slug: str, slug: str, name: Any, actor: Any = None, source: str = "api") -> None:
    """End the label's rollout (active or halted): the label serves its own version again. Whoever may
    move the label, without an approval (nothing new is served)."""
    name = canonical_label(name)
    registry = _locked_registry(registry_slug)
    _check_editor(registry, actor, source)
    profile = _check_visible(registry, _locked_profile(registry, slug), actor, source)
    _check_label_move(registry, name, actor, source, approvals=False)
    label, rollout = _locked_label(registry, profile, name)
    if rollout is None:
        raise NotFound(f"label {name!r} of profile {profile.slug!r} has no rollout", field="name")
    stamp = now_ms()
    rollout.status, rollout.updated_at_ms = LabelRollout.Status.ENDED, stamp
    rollout.ended_at_ms = rollout.ended_at_ms or stamp
    rollout.save(update_fields=["status", "updated_at_ms", "ended_at_ms"])
    ProfileLabel.objects.filter(pk=label.pk).update(rollout=None)
    rollout_step(registry, profile, label, rollout, "ended", actor, source)


def rollout_guard_check(*, rollout_id: int) -> LabelRollout | None:
    """Halt the rollout when one of its arms passed a bound of its guard (`profiles.arms.guard_breach`):
    from the next turn every subject gets the label's own version. The stats are read without a lock;
    only a breach takes the registry's lock (and checks the rollout is still active). Returns the halted
    rollout, else None."""
    rollout = LabelRollout.objects.select_related("profile__registry").filter(pk=rollout_id).first()
    if rollout is None or rollout.status != LabelRollout.Status.ACTIVE or not rollout.guard:
        return None
    reason = guard_breach(rollout.guard, rollout.arms, rollout_arm_stats(rollout=rollout))
    if reason is None:
        return None
    with transaction.atomic():
        registry = _locked_registry(rollout.profile.registry.slug)
        halted = LabelRollout.objects.select_for_update().get(pk=rollout_id)
        label = ProfileLabel.objects.select_for_update().filter(profile_id=halted.profile_id, name=halted.name).first()
        if halted.status != LabelRollout.Status.ACTIVE or label is None or label.rollout_id != halted.pk:
            return None
        stamp = now_ms()
        halted.status, halted.halted_reason = LabelRollout.Status.HALTED, reason[:300]
        halted.updated_at_ms = halted.ended_at_ms = stamp
        halted.save(update_fields=["status", "halted_reason", "updated_at_ms", "ended_at_ms"])
        profile = halted.profile
        profile.registry = registry
        rollout_step(registry, profile, label, halted, "halted", None, "guard")
    log.warning("rollout %s of %s@%s halted: %s", halted.pk, profile.slug, halted.name, reason)
    return halted
