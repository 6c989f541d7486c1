"""Writes of evaluations: datasets (and their cases from real turns, JSON lines in and out), runs (created,
claimed, each case's result recorded, finished), and label gates with the check that enforces them.

Datasets and runs are managed by users with the model permissions (`chat.add_dataset`, …); a run measures
a profile version the caller may use; a gate is set by whoever may edit the profile's registry.
"""

from __future__ import annotations

import json
import re
from typing import Any

from django.db import IntegrityError, transaction
from django.db.models import F

from profiles.access import require_editor
from profiles.api.parsers import refuse_constant, unique_keys
from profiles.audit import audit_record
from profiles.errors import Conflict, Forbidden, InvalidInput, NotFound
from profiles.mounts import Mount
from profiles.selectors import profile_get, profile_resolve, registry_get
from profiles.timestamps import now_ms
from profiles.validation import canonical_label, canonical_slug, ensure_storable

from ..models import Dataset, EvaluationRun, LabelGate
from ..services.common import MAX_PROMPT_CHARS, WORKER_ID
from . import selectors
from .scorers import MAX_CASES, validate_case, validate_cases

_SLUG = re.compile(r"^[a-z0-9][a-z0-9_-]{0,63}$")
LEASE_MS = 30_000
MAX_JSONL_BYTES = 5_000_000


class EvaluationRequired(Conflict):
    """409: the gated label moves only to a version with a good enough completed run on its fingerprint."""

    code = "evaluation_required"


def require_perm(actor: Any, action: str, model: str) -> None:
    if actor is None or not actor.is_authenticated or not actor.has_perm(f"chat.{action}_{model}"):
        raise Forbidden(f"this needs the permission chat.{action}_{model}")


def _audit(action: str, slug: str, actor: Any, changes: dict[str, Any], *, registry: str = "") -> None:
    """A dataset's entry (`dataset.*`), or a profile's gate (`label.gate_*`, with its registry)."""
    kind = "profile" if registry else "dataset"
    audit_record(
        actor=actor, source="api", action=action, object_type=kind, registry=registry, slug=slug, changes=changes
    )


# --------------------------------------------------------------------------- datasets


def _cases(raw: Any) -> list[dict[str, Any]]:
    ensure_storable(raw, field="cases")
    cases, errors = validate_cases(raw, max_input=MAX_PROMPT_CHARS)
    if errors:
        raise InvalidInput.from_errors(errors)
    return cases


def _description(raw: Any) -> str:
    if not isinstance(raw, str) or len(raw) > 2000:
        raise InvalidInput("must be a string of at most 2000 characters", field="description")
    ensure_storable(raw, field="description")
    return raw


@transaction.atomic
def dataset_create(*, actor: Any, slug: Any, description: Any = "", cases: Any = None) -> Dataset:
    require_perm(actor, "add", "dataset")
    if not isinstance(slug, str) or not _SLUG.match(slug):
        raise InvalidInput("must be 1-64 characters: lowercase letters, digits, '-' and '_'", field="slug")
    dataset = Dataset(slug=slug, description=_description(description), cases=_cases(cases or []))
    dataset.created_by = actor.get_username()
    try:
        with transaction.atomic():
            dataset.save(force_insert=True)
    except IntegrityError:
        raise Conflict(f"a dataset {slug!r} already exists", field="slug") from None
    _audit("dataset.created", slug, actor, {"cases": len(dataset.cases)})
    return dataset


@transaction.atomic
def dataset_update(*, actor: Any, slug: str, changes: dict[str, Any]) -> Dataset:
    """`description` and/or `cases` (the whole list)."""
    require_perm(actor, "change", "dataset")
    dataset = selectors.dataset_get(slug=slug, lock=True)
    if "description" in changes:
        dataset.description = _description(changes["description"])
    if "cases" in changes:
        dataset.cases = _cases(changes["cases"])
    dataset.save()
    _audit("dataset.updated", slug, actor, {"fields": sorted(changes), "cases": len(dataset.cases)})
    return dataset


@transaction.atomic
def dataset_delete(*, actor: Any, slug: str) -> None:
    """A dataset a gate names is kept (409); its runs stay, naming it."""
    require_perm(actor, "delete", "dataset")
    dataset = selectors.dataset_get(slug=slug, lock=True)
    gate = LabelGate.objects.filter(dataset=dataset).first()
    if gate is not None:
        raise Conflict(f"the gate of {gate.registry}/{gate.profile}@{gate.label} uses dataset {slug!r}", field="slug")
    _audit("dataset.deleted", slug, actor, {"cases": len(dataset.cases)})
    dataset.delete()


@transaction.atomic
def dataset_add_cases(*, actor: Any, slug: str, cases: list[dict[str, Any]]) -> Dataset:
    require_perm(actor, "change", "dataset")
    dataset = selectors.dataset_get(slug=slug, lock=True)
    if len(dataset.cases) + len(cases) > MAX_CASES:
        raise InvalidInput(f"a dataset holds at most {MAX_CASES} cases", field="cases")
    dataset.cases = _cases([*dataset.cases, *cases])
    dataset.save()
    _audit("dataset.updated", slug, actor, {"added": len(cases), "cases": len(dataset.cases)})
    return dataset


def dataset_cases_from_turns(*, actor: Any, slug: str, mount: Mount, params: dict[str, Any]) -> Dataset:
    """The prompts of real turns of a profile (its answers kept as `reference`): `profile` (a ref in the
    mount's default registry or `registry/slug`), `version`?, `feedback`? up|down, `since_ms`?, `limit`.
    People's prompts: staff only, of a profile they may use."""
    if not actor.is_staff:
        raise Forbidden("cases are copied from people's turns by staff")
    turns = selectors.turns_for_cases(mount=mount, user=actor, **params)
    cases = [{"input": prompt, "reference": text} for prompt, text in turns]
    return dataset_add_cases(actor=actor, slug=slug, cases=cases)


def dataset_export_jsonl(*, slug: str) -> str:
    """One case per line, as `dataset_import_jsonl` takes them."""
    cases = selectors.dataset_get(slug=slug).cases
    return "".join(json.dumps(case, ensure_ascii=False, sort_keys=True) + "\n" for case in cases)


def dataset_import_jsonl(*, actor: Any, slug: str, text: str) -> Dataset:
    """One case per line (blank lines skipped); the first bad line is a 400 `line N: cases[i].path: reason`."""
    if len(text.encode("utf-8", "surrogatepass")) > MAX_JSONL_BYTES:
        raise InvalidInput(f"at most {MAX_JSONL_BYTES} bytes", field="body")
    cases: list[Any] = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            cases.append(json.loads(line, parse_constant=refuse_constant, object_pairs_hook=unique_keys))
        except RecursionError:
            raise InvalidInput(f"line {number}: nested too deeply", field=f"line {number}") from None
        except ValueError as exc:  # not JSON, NaN or Infinity, a key given twice
            raise InvalidInput(f"line {number}: not valid JSON ({exc})", field=f"line {number}") from None
        errors: list[tuple[str, str]] = []
        validate_case(cases[-1], at=f"line {number}", errors=errors, max_input=MAX_PROMPT_CHARS)
        if errors:
            raise InvalidInput.from_errors(errors)
    return dataset_add_cases(actor=actor, slug=slug, cases=cases)


# --------------------------------------------------------------------------- runs


@transaction.atomic
def evaluation_create(*, actor: Any, mount: Mount, registry_slug: str, ref: str, dataset: Any) -> EvaluationRun:
    """A queued run of `dataset` on the version `ref` resolves to for the caller (pinned, so every case
    runs on it), keyed by its fingerprint. The worker's runner (`chat.evaluations.runner`) takes it."""
    require_perm(actor, "add", "evaluationrun")
    data = selectors.dataset_get(slug=canonical_slug(dataset, field="dataset"), field="dataset")
    if not data.cases:
        raise InvalidInput(f"dataset {dataset!r} has no cases", field="dataset")
    resolution = profile_resolve(registry_slug=registry_slug, profile_slug=ref, user=actor)
    stamp = now_ms()
    return EvaluationRun.objects.create(
        dataset=data,
        dataset_slug=data.slug,
        mount=mount.name,
        registry=resolution.registry,
        profile=resolution.profile,
        version=resolution.profile_version,
        fingerprint=resolution.fingerprint,
        cases=data.cases,
        results=[None] * len(data.cases),
        total=len(data.cases),
        created_by=actor,
        created_at_ms=stamp,
    )


def evaluation_claim(*, run_id: int, worker: str = WORKER_ID) -> EvaluationRun | None:
    """Take a run that is queued, or running on a lease that expired (its worker stopped): resumed from
    its first case without a result. One conditional UPDATE: one worker wins."""
    stamp = now_ms()
    claimed = EvaluationRun.objects.filter(
        pk=run_id, status__in=[EvaluationRun.Status.QUEUED, EvaluationRun.Status.RUNNING], lease_until_ms__lt=stamp
    ).update(status=EvaluationRun.Status.RUNNING, worker=worker, lease_until_ms=stamp + LEASE_MS)
    if not claimed:
        return None
    EvaluationRun.objects.filter(pk=run_id, started_at_ms__isnull=True).update(started_at_ms=stamp)
    return EvaluationRun.objects.select_related("created_by").get(pk=run_id)


def evaluation_renew(*, run_id: int, worker: str = WORKER_ID) -> bool:
    """Keep the lease; False when another worker took the run (this one stops)."""
    return bool(
        EvaluationRun.objects.filter(pk=run_id, worker=worker, status=EvaluationRun.Status.RUNNING).update(
            lease_until_ms=now_ms() + LEASE_MS
        )
    )


@transaction.atomic
def evaluation_record_case(*, run_id: int, index: int, result: dict[str, Any], worker: str = WORKER_ID) -> bool:
    """Store one case's outcome (under the run's row lock, so concurrent cases never lose each other's)."""
    run = EvaluationRun.objects.select_for_update().filter(pk=run_id, worker=worker).first()
    if run is None or run.results[index] is not None:
        return False
    run.results[index] = result
    EvaluationRun.objects.filter(pk=run_id).update(
        results=run.results,
        done=F("done") + 1,
        passed=F("passed") + (1 if result["passed"] else 0),
        failed=F("failed") + (0 if result["passed"] else 1),
        lease_until_ms=now_ms() + LEASE_MS,
    )
    return True


def evaluation_finish(*, run_id: int, error: str = "", worker: str = WORKER_ID) -> None:
    EvaluationRun.objects.filter(pk=run_id, worker=worker, status=EvaluationRun.Status.RUNNING).update(
        status=EvaluationRun.Status.FAILED if error else EvaluationRun.Status.COMPLETED,
        error=error,
        finished_at_ms=now_ms(),
        lease_until_ms=0,
    )


# --------------------------------------------------------------------------- gates


@transaction.atomic
def gate_set(*, actor: Any, registry_slug: str, slug: str, name: Any, dataset: Any, min_pass_rate: Any) -> LabelGate:
    registry = registry_get(registry_slug)
    require_editor(actor, registry)
    profile = profile_get(registry=registry, slug=slug)
    label = canonical_label(name)
    data = selectors.dataset_get(slug=canonical_slug(dataset, field="dataset"), lock=True, field="dataset")
    if isinstance(min_pass_rate, bool) or not isinstance(min_pass_rate, int | float) or not 0 <= min_pass_rate <= 1:
        raise InvalidInput("a pass rate from 0 to 1", field="min_pass_rate")
    gate, _ = LabelGate.objects.update_or_create(
        registry=registry.slug,
        profile=profile.slug,
        label=label,
        defaults={
            "dataset": data,
            "min_pass_rate": float(min_pass_rate),
            "created_by": actor.get_username(),
            "updated_at_ms": now_ms(),
        },
    )
    changes = {"label": label, "dataset": data.slug, "min_pass_rate": gate.min_pass_rate}
    _audit("label.gate_set", profile.slug, actor, changes, registry=registry.slug)
    return gate


@transaction.atomic
def gate_delete(*, actor: Any, registry_slug: str, slug: str, name: Any) -> None:
    registry = registry_get(registry_slug)
    require_editor(actor, registry)
    profile = profile_get(registry=registry, slug=slug)
    label = canonical_label(name)
    deleted, _ = LabelGate.objects.filter(registry=registry.slug, profile=profile.slug, label=label).delete()
    if not deleted:
        raise NotFound(f"label {label!r} of {slug!r} has no gate", field="name")
    _audit("label.gate_deleted", slug, actor, {"label": label}, registry=registry.slug)


def gate_check(*, registry: str, slug: str, label: str, versions: list[int]) -> None:
    """Registered with the platform (`Definitions.label_move_checks`): a gated label moves (or rolls out)
    only to versions with a completed run of the gate's dataset on their fingerprint at or above the rate."""
    gate = LabelGate.objects.select_related("dataset").filter(registry=registry, profile=slug, label=label).first()
    if gate is None:
        return
    for version in versions:
        fingerprint = profile_resolve(registry_slug=registry, profile_slug=f"{slug}@{version}").fingerprint
        best = selectors.best_run(registry=registry, slug=slug, fingerprint=fingerprint, dataset=gate.dataset)
        if best is not None and (best.pass_rate or 0) >= gate.min_pass_rate:
            continue
        found = "no completed run on that version's fingerprint"
        if best is not None:
            found = f"its best run, {best.pk}, passed {best.pass_rate:.0%}"
        raise EvaluationRequired(
            f"label {label!r} is gated: version {version} needs a run of dataset {gate.dataset.slug!r} passing at "
            f"least {gate.min_pass_rate:.0%} ({found}): POST …/profiles/{slug}@{version}/evaluations",
            field="version",
            dataset=gate.dataset.slug,
            min_pass_rate=gate.min_pass_rate,
            best_run=None if best is None else {"id": best.pk, "pass_rate": best.pass_rate},
        )
