"""Evaluations over REST (both mounts): datasets, runs per profile version, comparison, label gates. Thin
views over `chat.evaluations.services` and `selectors`."""

from __future__ import annotations

from typing import Any

from django.http import HttpResponse
from django.urls import URLPattern, path
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import permissions, serializers
from rest_framework.exceptions import UnsupportedMediaType
from rest_framework.parsers import BaseParser
from rest_framework.request import Request
from rest_framework.response import Response

from profiles.api.mounted import MountedViewSet
from profiles.api.openapi import AUTH, BODY, responses
from profiles.api.serializers import StrictKeysMixin
from profiles.mounts import Mount

from ..models import Dataset, EvaluationRun, LabelGate
from . import selectors, services
from .runner import runner

SLUG = OpenApiParameter("slug", str, location=OpenApiParameter.PATH)


class JsonLinesParser(BaseParser):
    """`application/x-ndjson` (JSON lines) bodies, as text: the service reads them line by line."""

    media_type = "application/x-ndjson"

    def parse(self, stream: Any, media_type: str | None = None, parser_context: Any = None) -> Any:
        return stream.read().decode("utf-8", "replace")


class DatasetSerializer(serializers.ModelSerializer):
    class Meta:
        model = Dataset
        fields = ["slug", "description", "cases", "created_by", "created_at_ms", "updated_at_ms"]


class DatasetWriteSerializer(StrictKeysMixin, serializers.Serializer):
    description = serializers.JSONField(required=False)
    cases = serializers.JSONField(required=False, help_text="[{input, expect?, judge?, reference?}]")


class DatasetCreateSerializer(DatasetWriteSerializer):
    slug = serializers.JSONField()


class FromTurnsSerializer(StrictKeysMixin, serializers.Serializer):
    profile = serializers.JSONField(help_text="slug or registry/slug")
    version = serializers.JSONField(required=False)
    feedback = serializers.JSONField(required=False, help_text="up or down")
    since_ms = serializers.JSONField(required=False)
    limit = serializers.JSONField(required=False, help_text="1-500, default 50")


class CompareParamsSerializer(serializers.Serializer):
    a = serializers.IntegerField(min_value=1, help_text="a run's id")
    b = serializers.IntegerField(min_value=1, help_text="another run's id")


class RunCreateSerializer(StrictKeysMixin, serializers.Serializer):
    dataset = serializers.JSONField(help_text="the dataset's slug")


class RunSerializer(serializers.ModelSerializer):
    pass_rate = serializers.FloatField(allow_null=True)
    profile_ref = serializers.SerializerMethodField()

    class Meta:
        model = EvaluationRun
        fields = [
            "id",
            "dataset_slug",
            "registry",
            "profile",
            "version",
            "profile_ref",
            "fingerprint",
            "status",
            "total",
            "done",
            "passed",
            "failed",
            "pass_rate",
            "error",
            "created_at_ms",
            "started_at_ms",
            "finished_at_ms",
        ]

    def get_profile_ref(self, run: EvaluationRun) -> str:
        return f"{run.profile}@{run.version}"


class RunDetailSerializer(RunSerializer):
    cases = serializers.SerializerMethodField(help_text="one per case: null until it is scored")

    class Meta(RunSerializer.Meta):
        fields = [*RunSerializer.Meta.fields, "cases"]

    def get_cases(self, run: EvaluationRun) -> list[Any]:
        return [
            result or {"input": case["input"], "pending": True}
            for case, result in zip(run.cases, run.results, strict=False)
        ]


class GateSerializer(serializers.ModelSerializer):
    dataset = serializers.CharField(source="dataset.slug")

    class Meta:
        model = LabelGate
        fields = ["registry", "profile", "label", "dataset", "min_pass_rate", "created_by", "updated_at_ms"]


class GateSetSerializer(StrictKeysMixin, serializers.Serializer):
    dataset = serializers.JSONField()
    min_pass_rate = serializers.JSONField(help_text="from 0 to 1")


class EvaluationViewSet(MountedViewSet):
    permission_classes = [permissions.IsAuthenticated]

    def get_parsers(self) -> list[Any]:
        return [*super().get_parsers(), JsonLinesParser()]

    # ------------------------------------------------------------------ datasets

    @extend_schema(responses=responses({200: DatasetSerializer(many=True)}, AUTH, 403))
    def dataset_list(self, request: Request) -> Response:
        services.require_perm(request.user, "view", "dataset")
        return Response(DatasetSerializer(selectors.dataset_list(), many=True).data)

    @extend_schema(request=DatasetCreateSerializer, responses=responses({201: DatasetSerializer}, AUTH, BODY, 403, 409))
    def dataset_create(self, request: Request) -> Response:
        body = DatasetCreateSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        return Response(DatasetSerializer(services.dataset_create(actor=request.user, **body.validated_data)).data, 201)

    @extend_schema(responses=responses({200: DatasetSerializer}, AUTH, 403, 404), parameters=[SLUG])
    def dataset_get(self, request: Request, slug: str) -> Response:
        services.require_perm(request.user, "view", "dataset")
        return Response(DatasetSerializer(selectors.dataset_get(slug=slug)).data)

    @extend_schema(
        request=DatasetWriteSerializer,
        responses=responses({200: DatasetSerializer}, AUTH, BODY, 403, 404),
        parameters=[SLUG],
    )
    def dataset_update(self, request: Request, slug: str) -> Response:
        body = DatasetWriteSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        dataset = services.dataset_update(actor=request.user, slug=slug, changes=dict(body.validated_data))
        return Response(DatasetSerializer(dataset).data)

    @extend_schema(responses=responses({204: None}, AUTH, 403, 404, 409), parameters=[SLUG])
    def dataset_delete(self, request: Request, slug: str) -> Response:
        services.dataset_delete(actor=request.user, slug=slug)
        return Response(status=204)

    @extend_schema(
        request=FromTurnsSerializer,
        responses=responses({200: DatasetSerializer}, AUTH, BODY, 403, 404),
        parameters=[SLUG],
    )
    def cases_from_turns(self, request: Request, slug: str) -> Response:
        body = FromTurnsSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        dataset = services.dataset_cases_from_turns(
            actor=request.user, slug=slug, mount=self.mounted, params=dict(body.validated_data)
        )
        return Response(DatasetSerializer(dataset).data)

    @extend_schema(
        responses={(200, "application/x-ndjson"): OpenApiTypes.STR, **responses({}, AUTH, 403, 404)},
        parameters=[SLUG],
    )
    def dataset_export(self, request: Request, slug: str) -> HttpResponse:
        services.require_perm(request.user, "view", "dataset")
        return HttpResponse(
            services.dataset_export_jsonl(slug=slug), content_type="application/x-ndjson; charset=utf-8"
        )

    @extend_schema(
        request={"application/x-ndjson": OpenApiTypes.STR},
        responses=responses({200: DatasetSerializer}, AUTH, BODY, 403, 404),
        parameters=[SLUG],
    )
    def dataset_import(self, request: Request, slug: str) -> Response:
        if not isinstance(request.data, str):  # a JSON body: JSON lines only
            raise UnsupportedMediaType(request.content_type, detail="send the cases as application/x-ndjson")
        text = request.data
        return Response(DatasetSerializer(services.dataset_import_jsonl(actor=request.user, slug=slug, text=text)).data)

    # ------------------------------------------------------------------ runs

    @extend_schema(
        request=RunCreateSerializer, responses=responses({202: RunSerializer}, AUTH, BODY, 403, 404), parameters=[SLUG]
    )
    def run_create(self, request: Request, slug: str) -> Response:
        body = RunCreateSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        run = services.evaluation_create(
            actor=request.user,
            mount=self.mounted,
            registry_slug=self.registry_slug(request),
            ref=slug,
            dataset=body.validated_data["dataset"],
        )
        runner.poke()
        return Response(RunSerializer(run).data, status=202)

    @extend_schema(responses=responses({200: RunSerializer(many=True)}, AUTH, 400, 403, 404), parameters=[SLUG])
    def run_list(self, request: Request, slug: str) -> Response:
        services.require_perm(request.user, "view", "evaluationrun")
        runs = selectors.run_list(registry=self.registry_slug(request), slug=slug, user=request.user)
        return Response(RunSerializer(runs, many=True).data)

    @extend_schema(responses=responses({200: RunDetailSerializer}, AUTH, 403, 404))
    def run_get(self, request: Request, run_id: str) -> Response:
        services.require_perm(request.user, "view", "evaluationrun")
        return Response(RunDetailSerializer(selectors.run_get(run_id=run_id, user=request.user)).data)

    @extend_schema(
        parameters=[OpenApiParameter("a", int, required=True), OpenApiParameter("b", int, required=True)],
        responses=responses({200: OpenApiTypes.OBJECT}, AUTH, 400, 403, 404),
    )
    def compare(self, request: Request) -> Response:
        services.require_perm(request.user, "view", "evaluationrun")
        params = CompareParamsSerializer(data=request.query_params)
        params.is_valid(raise_exception=True)
        a = selectors.run_get(run_id=params.validated_data["a"], user=request.user, field="a")
        b = selectors.run_get(run_id=params.validated_data["b"], user=request.user, field="b")
        return Response(selectors.compare(a=a, b=b))

    # ------------------------------------------------------------------ gates

    @extend_schema(
        request=GateSetSerializer, responses=responses({200: GateSerializer}, AUTH, BODY, 403, 404), parameters=[SLUG]
    )
    def gate_set(self, request: Request, slug: str, name: str) -> Response:
        body = GateSetSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        gate = services.gate_set(
            actor=request.user, registry_slug=self.registry_slug(request), slug=slug, name=name, **body.validated_data
        )
        return Response(GateSerializer(gate).data)

    @extend_schema(responses=responses({200: GateSerializer}, AUTH, 400, 404), parameters=[SLUG])
    def gate_get(self, request: Request, slug: str, name: str) -> Response:
        gate = selectors.gate_get(registry=self.registry_slug(request), slug=slug, name=name, user=request.user)
        return Response(GateSerializer(gate).data)

    @extend_schema(responses=responses({204: None}, AUTH, 400, 403, 404), parameters=[SLUG])
    def gate_delete(self, request: Request, slug: str, name: str) -> Response:
        services.gate_delete(actor=request.user, registry_slug=self.registry_slug(request), slug=slug, name=name)
        return Response(status=204)


def evaluation_urls(mount: Mount) -> list[URLPattern]:
    def view(actions: dict[str, Any]) -> Any:
        return EvaluationViewSet.as_view(actions, mount=mount)

    datasets = "api/chat/datasets"
    return [
        path(datasets, view({"get": "dataset_list", "post": "dataset_create"}), name="dataset-list"),
        path(
            f"{datasets}/<str:slug>",
            view({"get": "dataset_get", "patch": "dataset_update", "delete": "dataset_delete"}),
            name="dataset-detail",
        ),
        path(f"{datasets}/<str:slug>/cases/from-turns", view({"post": "cases_from_turns"}), name="dataset-from-turns"),
        path(f"{datasets}/<str:slug>/export", view({"get": "dataset_export"}), name="dataset-export"),
        path(f"{datasets}/<str:slug>/import", view({"post": "dataset_import"}), name="dataset-import"),
        path("api/chat/evaluations/compare", view({"get": "compare"}), name="evaluation-compare"),
        path("api/chat/evaluations/<str:run_id>", view({"get": "run_get"}), name="evaluation-detail"),
        path(
            "api/chat/profiles/<str:slug>/evaluations",
            view({"get": "run_list", "post": "run_create"}),
            name="profile-evaluations",
        ),
        path(
            "api/chat/profiles/<str:slug>/labels/<str:name>/gate",
            view({"get": "gate_get", "put": "gate_set", "delete": "gate_delete"}),
            name="profile-label-gate",
        ),
    ]
