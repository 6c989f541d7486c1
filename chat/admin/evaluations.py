"""Evaluations in the admin: datasets written through `chat.evaluations.services`, runs with their progress
and a side-by-side comparison of two, gates listed."""

from __future__ import annotations

from typing import Any

from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse
from django.template.response import TemplateResponse

from profiles.admin import ServiceFormAdmin
from profiles.admin.common import InspectOnlyAdmin
from profiles.forms import ServiceModelForm

from ..evaluations import selectors as evaluation_selectors
from ..evaluations.services import dataset_create, dataset_delete, dataset_update
from ..models import Dataset, EvaluationRun, LabelGate


class DatasetAdminForm(ServiceModelForm):
    what = "dataset"

    class Meta:
        model = Dataset
        fields = ("slug", "description", "cases")
        help_texts = {"cases": '[{"input": "...", "expect": {"contains": "..."}}, ...]: see docs/evaluations.md'}

    def _write(self) -> Dataset:
        data = self.cleaned_data
        if self.instance.pk is None:
            return dataset_create(
                actor=self.actor, slug=data["slug"], description=data["description"], cases=data["cases"]
            )
        changes = {"description": data["description"], "cases": data["cases"]}
        return dataset_update(actor=self.actor, slug=self.instance.slug, changes=changes)


@admin.register(Dataset)
class DatasetAdmin(ServiceFormAdmin):
    form = DatasetAdminForm
    list_display = ("slug", "description", "case_count", "created_by")
    actions = ["remove"]

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> tuple[str, ...]:
        return ("slug",) if obj is not None else ()

    @admin.display(description="cases")
    def case_count(self, obj: Dataset) -> int:
        return len(obj.cases)

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False  # the `remove` action deletes through the service

    def get_actions(self, request: HttpRequest) -> dict[str, Any]:
        return {k: v for k, v in super().get_actions(request).items() if k != "delete_selected"}

    @admin.action(description="Delete the selected datasets")
    def remove(self, request: HttpRequest, queryset: QuerySet[Dataset]) -> None:
        for dataset in queryset:
            dataset_delete(actor=request.user, slug=dataset.slug)
        self.message_user(request, "datasets deleted", messages.SUCCESS)


@admin.register(EvaluationRun)
class EvaluationRunAdmin(InspectOnlyAdmin):
    """Runs as they go (progress, pass rate); two selected runs side by side (`compare`). Runs start over
    REST (`POST …/profiles/{ref}/evaluations`)."""

    list_display = ("id", "dataset_slug", "profile_ref", "status", "progress", "rate", "fingerprint", "created_at_ms")
    list_filter = ("status", "dataset_slug", "profile")
    actions = ["compare"]
    readonly_fields = ("profile_ref", "status", "progress", "rate", "fingerprint", "error", "outcomes")
    fields = readonly_fields

    @admin.display(description="profile")
    def profile_ref(self, obj: EvaluationRun) -> str:
        return f"{obj.registry}/{obj.profile}@{obj.version}"

    @admin.display(description="progress")
    def progress(self, obj: EvaluationRun) -> str:
        return f"{obj.done}/{obj.total}"

    @admin.display(description="pass rate")
    def rate(self, obj: EvaluationRun) -> str:
        return "—" if obj.pass_rate is None else f"{obj.pass_rate:.0%} ({obj.passed} passed, {obj.failed} failed)"

    @admin.display(description="cases")
    def outcomes(self, obj: EvaluationRun) -> str:
        lines = []
        for case, result in zip(obj.cases, obj.results, strict=False):
            outcome = "pending" if result is None else ("passed" if result["passed"] else "; ".join(result["reasons"]))
            lines.append(f"{case['input'][:80]} → {outcome}")
        return "\n".join(lines)

    @admin.action(description="Compare the two selected runs side by side")
    def compare(self, request: HttpRequest, queryset: QuerySet[EvaluationRun]) -> HttpResponse | None:
        runs = list(queryset.order_by("created_at_ms")[:3])
        if len(runs) != 2:
            self.message_user(request, "select exactly two runs to compare", messages.WARNING)
            return None
        context = {
            **self.admin_site.each_context(request),
            "opts": self.opts,
            "title": f"Run {runs[0].pk} and run {runs[1].pk}",
            "comparison": evaluation_selectors.compare(a=runs[0], b=runs[1]),
        }
        return TemplateResponse(request, "admin/chat/evaluationrun/compare.html", context)


@admin.register(LabelGate)
class LabelGateAdmin(InspectOnlyAdmin):
    """Gates are set over REST (`PUT …/labels/{name}/gate`, by the registry's editors); listed here."""

    list_display = ("registry", "profile", "label", "dataset", "min_pass_rate", "created_by")
