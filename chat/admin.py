"""Prices, budgets, MCP servers and evaluations in the admin. Prices: a new price (from now, or a later time) is written by `chat.billing.prices.price_set`
through the platform's admin pattern; a price set is history (never changed or deleted: set a new one)."""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse
from django.template.response import TemplateResponse
from django.urls import URLPattern, path

from profiles.admin import ServiceFormAdmin
from profiles.admin.common import InspectOnlyAdmin, _when
from profiles.forms import ServiceModelForm

from .billing.budgets import budget_create, budget_delete, budget_used
from .billing.prices import price_set
from .billing.usage import GROUPINGS, usage_report
from .evaluations import selectors as evaluation_selectors
from .evaluations.services import dataset_create, dataset_delete, dataset_update
from .mcp.services import mcp_server_create, mcp_server_delete, mcp_server_refresh, mcp_server_update
from .models import Budget, Dataset, EvaluationRun, LabelGate, McpServer, Price


class PriceAdminForm(ServiceModelForm):
    what = "price"
    # Not the model field: empty means now (the service's default).
    effective_from_ms = forms.IntegerField(
        required=False, min_value=0, help_text="milliseconds since the epoch; empty: now"
    )

    class Meta:
        model = Price
        fields = ("api_type", "model", "input_usd_per_mtok", "output_usd_per_mtok")

    def _write(self) -> Price:
        data = self.cleaned_data
        return price_set(
            api_type=data["api_type"],
            model=data["model"],
            input_usd_per_mtok=str(data["input_usd_per_mtok"]),
            output_usd_per_mtok=str(data["output_usd_per_mtok"]),
            effective_from_ms=data.get("effective_from_ms"),
            actor=self.actor,
        )


@admin.register(Price)
class PriceAdmin(ServiceFormAdmin):
    form = PriceAdminForm
    fields = ("api_type", "model", "input_usd_per_mtok", "output_usd_per_mtok", "effective_from_ms")
    list_display = ("api_type", "model", "input_usd_per_mtok", "output_usd_per_mtok", "effective", "created_by")
    list_filter = ("api_type",)
    search_fields = ("model",)

    @admin.display(description="effective from", ordering="effective_from_ms")
    def effective(self, obj: Price) -> str | None:
        return _when(obj.effective_from_ms)

    def get_urls(self) -> list[URLPattern]:
        usage_view = self.admin_site.admin_view(self.usage_view)  # login, staff and CSRF protection
        return [path("usage/", usage_view, name="chat_price_usage"), *super().get_urls()]

    def usage_view(self, request: HttpRequest) -> HttpResponse:
        """Turns, tokens and cost per user, group, profile, key or day (`?group_by=`; staff see everyone's)."""
        group_by = request.GET.get("group_by", "user")
        if group_by not in GROUPINGS:
            group_by = "user"
        context = {
            **self.admin_site.each_context(request),
            "opts": self.opts,
            "title": "Usage",
            "report": usage_report(user=request.user, group_by=group_by),
            "groupings": list(GROUPINGS),
        }
        return TemplateResponse(request, "admin/chat/price/usage.html", context)

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False  # history: a new price is a new row

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


class BudgetAdminForm(ServiceModelForm):
    what = "budget"

    class Meta:
        model = Budget
        fields = ("scope_type", "scope_id", "amount_usd", "period")
        help_texts = {"scope_id": "the user's id, the group's name, registry/slug, or the API key's id"}

    def _write(self) -> Budget:
        data = self.cleaned_data
        return budget_create(
            scope={"type": data["scope_type"], "id": data["scope_id"]},
            amount_usd=str(data["amount_usd"]),
            period=data["period"],
            actor=self.actor,
        )


@admin.register(Budget)
class BudgetAdmin(ServiceFormAdmin):
    """Budgets with what is used of them now; added and deleted through the service (audited)."""

    form = BudgetAdminForm
    list_display = ("scope_type", "scope_id", "amount_usd", "period", "used", "created_by")
    list_filter = ("scope_type", "period")
    actions = ["remove"]

    @admin.display(description="used now (US$)")
    def used(self, obj: Budget) -> str:
        return f"{budget_used(obj):.6f}"

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False  # delete it and set another

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False  # the `remove` action deletes through the service

    def get_actions(self, request: HttpRequest) -> dict[str, Any]:
        return {k: v for k, v in super().get_actions(request).items() if k != "delete_selected"}

    @admin.action(description="Delete the selected budgets")
    def remove(self, request: HttpRequest, queryset: QuerySet[Budget]) -> None:
        for budget in queryset:
            budget_delete(budget_id=budget.pk, actor=request.user)
        self.message_user(request, "budgets deleted", messages.SUCCESS)


class McpServerAdminForm(ServiceModelForm):
    what = "MCP server"
    url = forms.URLField(max_length=500, assume_scheme="https", help_text="its streamable HTTP endpoint")

    class Meta:
        model = McpServer
        fields = ("slug", "url", "headers_from_env", "visible_to_groups", "timeout_seconds")
        help_texts = {
            "headers_from_env": "header -> NAME of the environment variable holding its value, e.g. "
            '{"Authorization": "ACME_MCP_TOKEN"} (values are never stored)',
            "visible_to_groups": 'names of the groups whose members may call its tools, e.g. ["support"]; '
            "empty: everyone",
        }

    def _write(self) -> McpServer:
        data = self.cleaned_data
        fields = {name: data[name] for name in ("url", "headers_from_env", "visible_to_groups", "timeout_seconds")}
        if self.instance.pk is None:
            return mcp_server_create(actor=self.actor, slug=data["slug"], **fields)
        return mcp_server_update(actor=self.actor, slug=self.instance.slug, changes=fields)


@admin.register(McpServer)
class McpServerAdmin(ServiceFormAdmin):
    """MCP servers through the services (audited): their tools are fetched on save and by the action."""

    form = McpServerAdminForm
    list_display = ("slug", "url", "tool_names", "fetched", "tools_error")
    readonly_fields = ("tool_names", "fetched", "tools_error")
    actions = ["refresh", "remove"]

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> tuple[str, ...]:
        return (*self.readonly_fields, "slug") if obj is not None else self.readonly_fields

    @admin.display(description="tools")
    def tool_names(self, obj: McpServer) -> str:
        return ", ".join(tool["name"] for tool in obj.tools) or "—"

    @admin.display(description="tools fetched", ordering="tools_fetched_at_ms")
    def fetched(self, obj: McpServer) -> str | None:
        return _when(obj.tools_fetched_at_ms) if obj.tools_fetched_at_ms else None

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False  # the `remove` action deletes through the service

    def get_actions(self, request: HttpRequest) -> dict[str, Any]:
        return {k: v for k, v in super().get_actions(request).items() if k != "delete_selected"}

    @admin.action(description="Fetch the tools of the selected servers again")
    def refresh(self, request: HttpRequest, queryset: QuerySet[McpServer]) -> None:
        for server in queryset:
            fetched = mcp_server_refresh(actor=request.user, slug=server.slug)
            level = messages.WARNING if fetched.tools_error else messages.SUCCESS
            detail = f": {fetched.tools_error}" if fetched.tools_error else ""
            self.message_user(request, f"{server.slug}: {len(fetched.tools)} tool(s){detail}", level)

    @admin.action(description="Delete the selected MCP servers")
    def remove(self, request: HttpRequest, queryset: QuerySet[McpServer]) -> None:
        for server in queryset:
            mcp_server_delete(actor=request.user, slug=server.slug)
        self.message_user(request, "MCP servers deleted", messages.SUCCESS)


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
