"""`profile_api_urls(mount)`: the same routes for every mount; only the options differ."""

from __future__ import annotations

from django.urls import URLPattern, path

from profiles.mounts import Mount

from .approvals import LabelRequestViewSet
from .rollouts import RolloutViewSet
from .views import CurrentProfileViewSet, ProfileViewSet, RegistryViewSet, SchemaViewSet
from .webhooks import WebhookViewSet


def profile_api_urls(mount: Mount) -> list[URLPattern]:
    def view(viewset, actions):
        return viewset.as_view(actions, mount=mount)

    profiles = ProfileViewSet
    return [
        path("api/chat/registries", view(RegistryViewSet, {"get": "list"}), name="registry-list"),
        path(
            "api/chat/registries/<str:slug>",
            view(RegistryViewSet, {"get": "retrieve", "patch": "partial_update"}),
            name="registry-detail",
        ),
        path(
            "api/chat/registries/<str:slug>/webhooks",
            view(WebhookViewSet, {"get": "list", "post": "create"}),
            name="registry-webhooks",
        ),
        path(
            "api/chat/registries/<str:slug>/webhooks/<int:webhook_id>",
            view(WebhookViewSet, {"delete": "destroy"}),
            name="registry-webhook",
        ),
        path(
            "api/chat/registries/<str:slug>/webhooks/<int:webhook_id>/deliveries",
            view(WebhookViewSet, {"get": "deliveries"}),
            name="registry-webhook-deliveries",
        ),
        path("api/chat/profiles", view(profiles, {"get": "list", "post": "create"}), name="profile-list"),
        path(
            "api/chat/profiles/<str:slug>",
            view(profiles, {"get": "retrieve", "patch": "partial_update", "delete": "destroy"}),
            name="profile-detail",
        ),
        path("api/chat/profiles/<str:slug>/default", view(profiles, {"post": "make_default"}), name="profile-default"),
        path("api/chat/profiles/<str:slug>/versions", view(profiles, {"get": "versions"}), name="profile-versions"),
        path(
            "api/chat/profiles/<str:slug>/versions/<int:version>",
            view(profiles, {"get": "version_detail"}),
            name="profile-version-detail",
        ),
        path(
            "api/chat/profiles/<str:slug>/versions/<int:version>/restore",
            view(profiles, {"post": "restore"}),
            name="profile-restore",
        ),
        path("api/chat/profiles/<str:slug>/resolve", view(profiles, {"post": "resolve"}), name="profile-resolve"),
        path("api/chat/profiles/<str:slug>/labels", view(profiles, {"get": "labels"}), name="profile-labels"),
        path(
            "api/chat/profiles/<str:slug>/labels/<str:name>",
            view(profiles, {"put": "label_set", "delete": "label_delete"}),
            name="profile-label",
        ),
        path(
            "api/chat/profiles/<str:slug>/labels/<str:name>/history",
            view(profiles, {"get": "label_history"}),
            name="profile-label-history",
        ),
        path(
            "api/chat/profiles/<str:slug>/labels/<str:name>/rollout",
            view(RolloutViewSet, {"get": "retrieve", "put": "update", "delete": "destroy"}),
            name="label-rollout",
        ),
        path(
            "api/chat/profiles/<str:slug>/labels/<str:name>/requests",
            view(LabelRequestViewSet, {"get": "list", "post": "create"}),
            name="label-requests",
        ),
        path(
            "api/chat/profiles/<str:slug>/labels/<str:name>/requests/<int:request_id>/approve",
            view(LabelRequestViewSet, {"post": "approve"}),
            name="label-request-approve",
        ),
        path(
            "api/chat/profiles/<str:slug>/labels/<str:name>/requests/<int:request_id>/reject",
            view(LabelRequestViewSet, {"post": "reject"}),
            name="label-request-reject",
        ),
        path(
            "api/chat/profiles/<str:slug>/versions/diff", view(profiles, {"get": "versions_diff"}), name="profile-diff"
        ),
        path(
            "api/chat/profiles/<str:slug>/versions/<int:version>/stats",
            view(profiles, {"get": "version_stats"}),
            name="profile-version-stats",
        ),
        path("api/chat/profiles/<str:slug>/stats", view(profiles, {"get": "stats"}), name="profile-stats"),
        path(
            "api/chat/profile",
            view(CurrentProfileViewSet, {"get": "retrieve", "post": "select"}),
            name="current-profile",
        ),
        path("api/chat/schemas/middlewares", view(SchemaViewSet, {"get": "middlewares"}), name="schema-middlewares"),
        path("api/chat/schemas/tools", view(SchemaViewSet, {"get": "tools"}), name="schema-tools"),
        path("api/chat/schemas/extensions", view(SchemaViewSet, {"get": "extensions"}), name="schema-extensions"),
        path(
            "api/chat/schemas/step-settings", view(SchemaViewSet, {"get": "step_settings"}), name="schema-step-settings"
        ),
    ]
