"""Reads of evaluations: datasets, runs (and the best one on a fingerprint), the turns cases come from, and
the comparison of two runs."""

from __future__ import annotations

from typing import Any

from django.db.models import F, FloatField, QuerySet
from django.db.models.functions import Cast

from profiles.errors import InvalidInput, NotFound
from profiles.mounts import Mount
from profiles.selectors import profile_get, registry_get
from profiles.timestamps import now_ms
from profiles.validation import canonical_label, canonical_slug, parse_profile_ref

from ..models import Dataset, EvaluationRun, LabelGate, Turn

MAX_FROM_TURNS = 500


def dataset_list() -> QuerySet[Dataset]:
    return Dataset.objects.all()


def dataset_get(*, slug: str, lock: bool = False, field: str = "slug") -> Dataset:
    rows = Dataset.objects.select_for_update() if lock else Dataset.objects.all()
    dataset = rows.filter(slug=slug).first()
    if dataset is None:
        raise NotFound(f"no dataset {slug!r}", field=field)
    return dataset


def _usable(*, registry: str, slug: str, user: Any, field: str = "slug") -> None:
    """A 404 (as for a missing profile) when `user` may not use the profile: its runs and gates show its
    answers and its rules."""
    profile_get(registry=registry_get(registry), slug=slug, user=user, field=field)


def run_get(*, run_id: Any, user: Any, field: str = "id") -> EvaluationRun:
    run = EvaluationRun.objects.filter(pk=run_id).first() if str(run_id).isdigit() else None
    if run is None:
        raise NotFound(f"no evaluation run {run_id}", field=field)
    try:
        _usable(registry=run.registry, slug=run.profile, user=user)
    except NotFound:
        raise NotFound(f"no evaluation run {run_id}", field=field) from None
    return run


def run_list(*, registry: str, slug: str, user: Any) -> QuerySet[EvaluationRun]:
    _usable(registry=registry, slug=slug, user=user)
    return EvaluationRun.objects.filter(registry=registry, profile=slug).defer("cases", "results")


def runs_due() -> list[int]:
    """Runs no worker holds: queued, or running on an expired lease (a worker that stopped)."""
    statuses = [EvaluationRun.Status.QUEUED, EvaluationRun.Status.RUNNING]
    rows = EvaluationRun.objects.filter(status__in=statuses, lease_until_ms__lt=now_ms()).order_by("created_at_ms")
    return list(rows.values_list("pk", flat=True)[:20])


def best_run(*, registry: str, slug: str, fingerprint: str, dataset: Dataset) -> EvaluationRun | None:
    """The completed run of `dataset` on `fingerprint` with the highest pass rate (then the latest)."""
    rows = EvaluationRun.objects.filter(
        registry=registry, profile=slug, fingerprint=fingerprint, dataset=dataset, status=EvaluationRun.Status.COMPLETED
    ).filter(done__gt=0)
    rate = Cast(F("passed"), FloatField()) / Cast(F("done"), FloatField())
    return rows.annotate(rate=rate).order_by("-rate", "-created_at_ms").defer("cases", "results").first()


def turns_for_cases(
    *,
    mount: Mount,
    user: Any,
    profile: Any,
    version: Any = None,
    feedback: Any = None,
    since_ms: Any = None,
    limit: Any = 50,
) -> list[tuple[str, str]]:
    """(prompt, answer) of the completed turns of a profile (`[registry/]slug`), newest first; `feedback`:
    only those someone rated up or down; `version`, `since_ms`: only those."""
    if not isinstance(profile, str) or not profile.strip():
        raise InvalidInput("the profile, as slug or registry/slug", field="profile")
    registry, _, ref = profile.rpartition("/")
    registry = canonical_slug(registry or mount.default_registry, field="profile")
    slug = parse_profile_ref(ref, field="profile").slug
    _usable(registry=registry, slug=slug, user=user, field="profile")
    rows = Turn.objects.filter(registry=registry, profile_slug=slug, status=Turn.Status.COMPLETED)
    rows = rows.filter(conversation__purpose="")  # never an evaluation's own turns
    if version is not None:
        if isinstance(version, bool) or not isinstance(version, int) or version < 1:
            raise InvalidInput("a version number", field="version")
        rows = rows.filter(profile_version=version)
    if feedback is not None:
        if feedback not in ("up", "down"):
            raise InvalidInput("up or down", field="feedback")
        rows = rows.filter(feedback__rating=feedback)
    if since_ms is not None:
        if isinstance(since_ms, bool) or not isinstance(since_ms, int) or since_ms < 0:
            raise InvalidInput("milliseconds since the epoch", field="since_ms")
        rows = rows.filter(created_at_ms__gte=since_ms)
    if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= MAX_FROM_TURNS:
        raise InvalidInput(f"from 1 to {MAX_FROM_TURNS}", field="limit")
    return list(rows.order_by("-created_at_ms").distinct().values_list("prompt", "text")[:limit])


def compare(*, a: EvaluationRun, b: EvaluationRun) -> dict[str, Any]:
    """Per case (matched by input, and by order among cases with the same input), both outputs and
    outcomes; cases whose outcome changed come first."""
    by_input: dict[tuple[str, int], dict[str, Any]] = {}
    for side, run in (("a", a), ("b", b)):
        seen: dict[str, int] = {}
        for case, result in zip(run.cases, run.results, strict=False):
            nth = seen[case["input"]] = seen.get(case["input"], -1) + 1
            row = by_input.setdefault((case["input"], nth), {"input": case["input"], "a": None, "b": None})
            row[side] = None if result is None else {k: result.get(k) for k in ("output", "passed", "reasons")}
    rows = list(by_input.values())
    for row in rows:
        row["changed"] = (row["a"] or {}).get("passed") != (row["b"] or {}).get("passed")
    rows.sort(key=lambda row: not row["changed"])  # stable: the dataset's order within each group
    return {"a": summary(a), "b": summary(b), "cases": rows}


def summary(run: EvaluationRun) -> dict[str, Any]:
    return {
        "id": run.pk,
        "dataset": run.dataset_slug,
        "profile": run.profile,
        "registry": run.registry,
        "version": run.version,
        "fingerprint": run.fingerprint,
        "status": run.status,
        "passed": run.passed,
        "failed": run.failed,
        "pass_rate": run.pass_rate,
    }


def gate_get(*, registry: str, slug: str, name: str, user: Any) -> LabelGate:
    _usable(registry=registry, slug=slug, user=user)
    label = canonical_label(name)
    gate = LabelGate.objects.select_related("dataset").filter(registry=registry, profile=slug, label=label).first()
    if gate is None:
        raise NotFound(f"label {name!r} of {slug!r} has no gate", field="name")
    return gate
