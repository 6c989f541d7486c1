from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.contrib.auth.decorators import login_required
from django.templatetags.static import static
from django.urls import URLPattern, URLResolver, include, path
from django.views.generic import RedirectView
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView

from chat.billing.views import BudgetViewSet, KeyViewSet, PriceViewSet, UsageViewSet
from chat.evaluations.views import evaluation_urls
from chat.gateway.urls import gateway_urls
from chat.mcp.views import mcp_server_urls
from chat.mounts import CHAT_MOUNT
from chat.pages import profile_version_admin
from chat.urls import conversation_urls, page_urls
from inventory.mounts import INVENTORY_MOUNT
from profiles.api.audit import AuditExportView, AuditLogView
from profiles.api.errors import ApiErrorPages
from profiles.api.urls import profile_api_urls
from profiles.api.views import TokenView
from profiles.mounts import Mount


def mount_urls(mount: Mount) -> list[URLPattern | URLResolver]:
    """Everything a mount serves, the same for every app: its page, the shared profile API, its
    conversations, the MCP servers its profiles' tools may come from and the OpenAI-compatible API (`v1/`)."""
    return [
        *page_urls(mount),
        *profile_api_urls(mount),
        *conversation_urls(mount),
        *mcp_server_urls(mount),
        *evaluation_urls(mount),
        *gateway_urls(mount),
    ]


urlpatterns = [
    path("favicon.ico", RedirectView.as_view(url=static("favicon.svg"), permanent=True)),
    path(
        "runtime/profile-version/<str:registry>/<str:slug>/<int:version>/",
        profile_version_admin,
        name="profile-version-admin",
    ),
    path("admin/", admin.site.urls),
    path("accounts/login/", auth_views.LoginView.as_view(), name="login"),
    path("accounts/logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("api/auth/token", TokenView.as_view(), name="api-token"),
    path("api/audit", AuditLogView.as_view(), name="audit-log"),
    path("api/audit/export", AuditExportView.as_view(), name="audit-export"),
    path("api/keys", KeyViewSet.as_view({"get": "list", "post": "create"}), name="api-keys"),
    path("api/keys/<int:key_id>", KeyViewSet.as_view({"delete": "destroy"}), name="api-key"),
    path("api/keys/<int:key_id>/rotate", KeyViewSet.as_view({"post": "rotate"}), name="api-key-rotate"),
    path("api/prices", PriceViewSet.as_view({"get": "list"}), name="prices"),
    path("api/prices/<str:api_type>/<path:model>", PriceViewSet.as_view({"put": "update"}), name="price"),
    path("api/usage", UsageViewSet.as_view({"get": "report"}), name="usage"),
    path("api/budgets", BudgetViewSet.as_view({"get": "list", "post": "create"}), name="budgets"),
    path("api/budgets/<int:budget_id>", BudgetViewSet.as_view({"delete": "destroy"}), name="budget"),
    path("api/schema/", SpectacularAPIView.as_view(), name="api-schema"),
    # A page for people: an anonymous browser is sent to the login page (the schema itself answers 401).
    path("api/docs/", login_required(SpectacularSwaggerView.as_view(url_name="api-schema")), name="api-docs"),
    path("inventory/api/", include("inventory.urls")),
    path("inventory/", include((mount_urls(INVENTORY_MOUNT), "inventory"), namespace=INVENTORY_MOUNT.name)),
    path("", include((mount_urls(CHAT_MOUNT), "chat"), namespace=CHAT_MOUNT.name)),
]

# Errors under every API prefix are JSON in the API's error shape (`{"error": {"code", "message"}}`),
# also for URLs no view matches and for unhandled exceptions; pages elsewhere keep Django's HTML.
# `/api/` is the chat mount's (and the token and schema routes'), `/inventory/api/` the inventory's.
error_pages = ApiErrorPages(mount.path + "api/" for mount in (CHAT_MOUNT, INVENTORY_MOUNT))
handler400 = error_pages.bad_request
handler403 = error_pages.permission_denied
handler404 = error_pages.page_not_found
handler500 = error_pages.server_error
