"""`/api/chat/mcp-servers` (#21) on both mounts, against a real MCP server: staff with the model permissions
create, read, change, refresh and delete servers; the tools are fetched from the server; secrets are only
names of environment variables; errors carry field paths; every write is in the audit log; the admin
writes through the same services."""

from __future__ import annotations

import pytest
from rest_framework.test import APIClient

from chat.models import McpServer
from profiles.models import AuditEvent

from .factories import UserFactory

pytestmark = pytest.mark.django_db(transaction=True)

MANAGER_PERMS = ["chat.add_mcpserver", "chat.change_mcpserver", "chat.delete_mcpserver", "chat.view_mcpserver"]


@pytest.fixture
def staff_api(db) -> APIClient:
    client = APIClient()
    client.force_authenticate(UserFactory(username="ops", is_staff=True, perms=MANAGER_PERMS))
    return client


@pytest.mark.parametrize("prefix", ["", "/inventory"])
def test_staff_add_a_server_and_its_tools_are_fetched(staff_api, acme, prefix, monkeypatch):
    monkeypatch.setenv("MCP_ACME_TOKEN", "Bearer s3cret")
    response = staff_api.post(
        f"{prefix}/api/chat/mcp-servers",
        {"slug": "acme", "url": acme.url, "headers_from_env": {"Authorization": "MCP_ACME_TOKEN"}},
        format="json",
    )

    assert response.status_code == 201, response.content
    body = response.json()
    assert body["tools"] == ["add", "fail", "hang", "whoami"]
    assert body["headers_from_env"] == {"Authorization": "MCP_ACME_TOKEN"}
    assert body["tools_error"] == "" and "s3cret" not in response.content.decode()
    assert staff_api.get(f"{prefix}/api/chat/mcp-servers").json()[0]["slug"] == "acme"


def test_a_header_variable_missing_on_the_server_is_said_and_fetches_nothing(staff_api, acme):
    body = {"slug": "acme", "url": acme.url, "headers_from_env": {"Authorization": "MCP_NOT_SET_ANYWHERE"}}
    response = staff_api.post("/api/chat/mcp-servers", body, format="json").json()

    assert response["tools"] == []
    assert response["tools_error"] == (
        "the environment variable MCP_NOT_SET_ANYWHERE (header Authorization) is not set on the server"
    )
    assert acme.calls == []


def test_the_tools_route_gives_names_descriptions_schemas_and_hashes(staff_api, acme):
    staff_api.post("/api/chat/mcp-servers", {"slug": "acme", "url": acme.url}, format="json")

    tools = {t["name"]: t for t in staff_api.get("/api/chat/mcp-servers/acme/tools").json()}

    assert set(tools) == {"add", "fail", "hang", "whoami"}
    assert tools["add"]["description"] == "Add two integers."
    assert tools["add"]["input_schema"]["required"] == ["a", "b"]
    assert tools["add"]["schema_hash"].startswith("sha256:")


def test_refresh_fetches_again_and_a_changed_schema_changes_its_hash(staff_api, acme):
    staff_api.post("/api/chat/mcp-servers", {"slug": "acme", "url": acme.url}, format="json")
    before = {t["name"]: t["schema_hash"] for t in staff_api.get("/api/chat/mcp-servers/acme/tools").json()}
    acme.change_add()

    response = staff_api.post("/api/chat/mcp-servers/acme/refresh")

    after = {t["name"]: t["schema_hash"] for t in staff_api.get("/api/chat/mcp-servers/acme/tools").json()}
    assert response.status_code == 200
    assert after["add"] != before["add"] and after["fail"] == before["fail"]
    assert AuditEvent.objects.filter(action="mcp_server.tools_changed", slug="acme").count() == 1


def test_a_server_that_cannot_be_reached_is_saved_with_the_reason(staff_api):
    response = staff_api.post(
        "/api/chat/mcp-servers", {"slug": "gone", "url": "http://127.0.0.1:9/mcp", "timeout_seconds": 1}, format="json"
    )
    assert response.status_code == 201
    assert response.json()["tools"] == []
    assert response.json()["tools_error"].startswith("the MCP server 'gone' failed: ")


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"slug": "Bad Slug", "url": "http://127.0.0.1:9/mcp"}, "slug"),
        ({"slug": "x"}, "url"),
        ({"slug": "x", "url": "ftp://127.0.0.1/mcp"}, "url"),
        ({"slug": "x", "url": "http://user:secret@127.0.0.1/mcp"}, "url"),
        ({"slug": "x", "url": "http://127.0.0.1/mcp?token=abc"}, "url"),
        (
            {"slug": "x", "url": "http://127.0.0.1:9/mcp", "headers_from_env": {"Authorization": "Bearer abc"}},
            "headers_from_env.Authorization",
        ),
        (
            {"slug": "x", "url": "http://127.0.0.1:9/mcp", "headers_from_env": {"Bad Header": "TOKEN"}},
            "headers_from_env.Bad Header",
        ),
        ({"slug": "x", "url": "http://127.0.0.1:9/mcp", "timeout_seconds": 0}, "timeout_seconds"),
        ({"slug": "x", "url": "http://127.0.0.1:9/mcp", "timeout_seconds": "NaN"}, "timeout_seconds"),
        ({"slug": "x", "url": "http://127.0.0.1:9/mcp", "visible_to_groups": [""]}, "visible_to_groups[0]"),
        ({"slug": "x", "url": "http://127.0.0.1:9/mcp", "secret": "abc"}, "secret"),
        ({"slug": "x", "url": "http://10.1.2.3/mcp"}, "url"),
        ({"slug": "x", "url": "http://169.254.169.254/mcp"}, "url"),
        ({"slug": "x", "url": "http://127.0.0.1:9/mcp", "headers_from_env": {"X": "SECRET_KEY"}}, "headers_from_env.X"),
    ],
)
def test_bad_input_is_a_400_on_its_path_and_stores_nothing(staff_api, body, field):
    response = staff_api.post("/api/chat/mcp-servers", body, format="json")

    assert response.status_code == 400, response.content
    error = response.json()["error"]
    assert error.get("field") == field or field in str(error), error
    assert not McpServer.objects.exists() and not AuditEvent.objects.exists()


def test_a_taken_slug_is_a_409(staff_api, acme):
    staff_api.post("/api/chat/mcp-servers", {"slug": "acme", "url": acme.url}, format="json")
    response = staff_api.post("/api/chat/mcp-servers", {"slug": "acme", "url": acme.url}, format="json")
    assert response.status_code == 409


def test_patch_changes_fields_and_a_new_url_fetches_again(staff_api, acme):
    staff_api.post(
        "/api/chat/mcp-servers", {"slug": "acme", "url": "http://127.0.0.1:9/mcp", "timeout_seconds": 1}, format="json"
    )
    response = staff_api.patch(
        "/api/chat/mcp-servers/acme", {"url": acme.url, "visible_to_groups": ["finance"]}, format="json"
    )
    assert response.status_code == 200, response.content
    assert response.json()["tools"] == ["add", "fail", "hang", "whoami"] and response.json()["tools_error"] == ""
    assert response.json()["visible_to_groups"] == ["finance"]
    change = AuditEvent.objects.get(action="mcp_server.updated")
    assert set(change.changes) == {"url", "visible_to_groups", "tools"}


def test_delete_removes_it_and_is_audited(staff_api, acme):
    staff_api.post("/api/chat/mcp-servers", {"slug": "acme", "url": acme.url}, format="json")
    assert staff_api.delete("/api/chat/mcp-servers/acme").status_code == 204
    assert staff_api.get("/api/chat/mcp-servers/acme").status_code == 404
    assert list(AuditEvent.objects.order_by("id").values_list("action", flat=True)) == [
        "mcp_server.created",
        "mcp_server.deleted",
    ]


@pytest.mark.parametrize("user_kind", ["plain", "staff_without_perms"])
def test_only_staff_with_the_model_permissions_manage_servers(user_kind, acme):
    user = UserFactory(username=user_kind, is_staff=user_kind != "plain")
    client = APIClient()
    client.force_authenticate(user)

    assert client.get("/api/chat/mcp-servers").status_code == 403
    assert client.post("/api/chat/mcp-servers", {"slug": "acme", "url": acme.url}, format="json").status_code == 403
    assert not McpServer.objects.exists()


def test_anonymous_callers_get_401():
    assert APIClient().get("/api/chat/mcp-servers").status_code == 401


def test_the_admin_adds_a_server_through_the_service_and_refreshes_it(client, acme):
    admin_user = UserFactory(username="root", is_staff=True, is_superuser=True)
    client.force_login(admin_user)

    response = client.post(
        "/admin/chat/mcpserver/add/",
        {
            "slug": "acme",
            "url": acme.url,
            "headers_from_env": "{}",
            "visible_to_groups": '["finance"]',
            "timeout_seconds": "5",
        },
    )
    assert response.status_code == 302, response.content.decode()[:2000]
    server = McpServer.objects.get(slug="acme")
    assert [t["name"] for t in server.tools] == ["add", "fail", "hang", "whoami"]
    assert server.visible_to_groups == ["finance"]
    acme.change_add()
    client.post("/admin/chat/mcpserver/", {"action": "refresh", "_selected_action": [server.pk]})

    assert AuditEvent.objects.filter(action="mcp_server.tools_changed").count() == 1
    page = client.get(f"/admin/chat/mcpserver/{server.pk}/change/").content.decode()
    assert "add, fail, hang, whoami" in page


def test_a_private_address_is_refused_naming_the_setting_that_allows_it(staff_api, settings):
    response = staff_api.post("/api/chat/mcp-servers", {"slug": "lan", "url": "http://10.1.2.3/mcp"}, format="json")
    assert response.status_code == 400
    assert "MCP_ALLOWED_HOSTS" in response.json()["error"]["message"]

    settings.MCP_ALLOWED_HOSTS = ["10.1.2.3"]
    allowed = staff_api.post(
        "/api/chat/mcp-servers", {"slug": "lan", "url": "http://10.1.2.3:9/mcp", "timeout_seconds": 0.5}, format="json"
    )
    assert allowed.status_code == 201
