"""MCP tools in profiles (#21): `mcp:<server>/<tool>` in `runtime.tools`, checked on write, fingerprinted by
schema hash (a changed tool switches open conversations with `tools_changed`), called through the SDK
against a real MCP server for the user whose turn it is, and failing (error, timeout, server down,
no access) as a failed tool call of a turn that goes on and ends."""

from __future__ import annotations

import json
import time

import pytest
from rest_framework.test import APIClient

from chat.mcp.services import mcp_server_refresh
from chat.models import Turn
from profiles import services
from profiles.errors import InvalidInput
from profiles.resolution import fingerprint

from .factories import UserFactory

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("fast_turns")]


def make_profile(slug: str = "acme-helper", tools: list[str] | None = None, **fields) -> None:
    services.profile_create(
        registry_slug="default",
        slug=slug,
        display_name=slug.title(),
        runtime={"system_prompt": "Be concise.", "tools": tools or ["mcp:acme/add", "mcp:acme/fail", "calculator"]},
        **fields,
    )


def ask(client: APIClient, conv: str, prompt: str) -> dict:
    response = client.post(f"/api/chat/conversations/{conv}/messages?wait=1", {"prompt": prompt}, format="json")
    assert response.status_code in (200, 201), response.content
    return response.json()


def conversation(client: APIClient, profile: str = "acme-helper") -> str:
    return client.post("/api/chat/conversations", {"profile": profile}, format="json").json()["conv_id"]


@pytest.fixture
def helper(seeded_registries, acme_registered) -> None:
    make_profile()


# --------------------------------------------------------------------------- writes


@pytest.mark.usefixtures("seeded_registries", "acme_registered")
@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("mcp:nowhere/add", "no MCP server 'nowhere'"),
        ("mcp:acme/subtract", "the MCP server 'acme' has no tool 'subtract' (its tools: add, fail, hang, whoami)"),
        ("mcp:acme", "is not an MCP tool name"),
    ],
)
def test_a_write_naming_a_missing_server_or_tool_is_a_400_on_its_path(name, message):
    with pytest.raises(InvalidInput) as refused:
        make_profile(tools=["calculator", name])
    assert refused.value.field == "runtime.tools[1]"
    assert message in refused.value.message


@pytest.mark.usefixtures("seeded_registries", "acme_registered")
def test_the_rest_api_answers_400_with_the_field_path(chat_user):
    editor = APIClient()
    editor.force_authenticate(UserFactory(username="editor", is_staff=True, is_superuser=True))
    body = {"slug": "x", "display_name": "X", "runtime": {"tools": ["mcp:acme/nope"]}}
    response = editor.post("/api/chat/profiles", body, format="json")
    assert response.status_code == 400
    assert response.json()["error"]["field"] == "runtime.tools[0]"


# --------------------------------------------------------------------------- fingerprints


@pytest.mark.usefixtures("helper")
def test_the_fingerprint_carries_each_mcp_tools_schema_hash(acme_registered):
    from profiles.selectors import profile_resolve

    resolution = profile_resolve(registry_slug="default", profile_slug="acme-helper")
    hashes = {tool["name"]: tool["schema_hash"] for tool in acme_registered.tools}

    assert resolution.tool_schemas == {"mcp:acme/add": hashes["add"], "mcp:acme/fail": hashes["fail"]}
    without = fingerprint(
        registry="default",
        profile="acme-helper",
        profile_version=1,
        effective_runtime=resolution.effective_runtime,
        engine_settings=resolution.engine["settings"],
    )
    assert resolution.fingerprint != without  # the hashes are part of it


@pytest.mark.usefixtures("helper")
def test_a_changed_tool_switches_open_conversations_with_tools_changed(chat_api, acme, mcp_admin):
    conv = conversation(chat_api)
    first = ask(chat_api, conv, 'use mcp:acme/add with {"a": 2, "b": 40}')
    acme.change_add()
    mcp_server_refresh(actor=mcp_admin, slug="acme")

    second = ask(chat_api, conv, 'use mcp:acme/add with {"a": 1, "b": 2, "c": 3}')

    assert first["runtime"]["fingerprint"] != second["runtime"]["fingerprint"]
    switched = [
        e
        for e in chat_api.get(f"/api/chat/conversations/{conv}/events").json()["frames"]
        if e["type"] == "runtime.switched"
    ]
    assert [s["data"]["reason"] for s in switched] == ["tools_changed"]
    assert switched[0]["data"]["tools"] == ["mcp:acme/add"]
    assert second["tool_calls"][0]["result"]["structured_content"] == {"result": 6}


@pytest.mark.usefixtures("helper")
def test_a_refresh_that_changes_nothing_keeps_the_fingerprint(chat_api, mcp_admin):
    conv = conversation(chat_api)
    first = ask(chat_api, conv, "hello")
    mcp_server_refresh(actor=mcp_admin, slug="acme")
    second = ask(chat_api, conv, "hello again")
    assert first["runtime"]["fingerprint"] == second["runtime"]["fingerprint"]


# --------------------------------------------------------------------------- calls


@pytest.mark.usefixtures("helper")
def test_the_offline_engine_calls_an_mcp_tool_and_the_turn_records_its_result(chat_api, acme):
    answer = ask(chat_api, conversation(chat_api), 'use mcp:acme/add with {"a": 2, "b": 40}')

    assert answer["status"] == "completed", answer
    (call,) = answer["tool_calls"]
    assert call["name"] == "mcp:acme/add" and call["input"] == {"a": 2, "b": 40}
    assert call["result"] == {"text": "42", "structured_content": {"result": 42}}
    assert "42" in answer["text"]
    assert acme.calls == ["add"]
    assert "mcp:acme/add" in answer["tools"]


@pytest.mark.usefixtures("helper")
def test_a_failing_tool_is_a_failed_call_and_the_turn_still_ends(chat_api):
    answer = ask(chat_api, conversation(chat_api), 'use mcp:acme/fail with {"reason": "no stock"}')

    assert answer["status"] == "completed", answer
    (call,) = answer["tool_calls"]
    assert "the tool mcp:acme/fail failed" in call["error"] and "no stock" in call["error"]
    assert "failed" in answer["text"]


@pytest.mark.usefixtures("seeded_registries", "acme_registered")
def test_a_hanging_tool_times_out_and_nothing_stays_running(chat_api, acme):
    make_profile(tools=["mcp:acme/hang"])
    started = time.monotonic()
    answer = ask(chat_api, conversation(chat_api), 'use mcp:acme/hang with {"seconds": 30}')

    assert answer["status"] == "completed", answer
    assert "did not answer within 2s" in answer["tool_calls"][0]["error"]
    assert time.monotonic() - started < 10
    assert Turn.objects.get(pk=answer["turn_id"]).status == "completed"


@pytest.mark.usefixtures("helper")
def test_a_server_that_is_down_is_a_failed_call(chat_api, acme):
    acme.__exit__()
    answer = ask(chat_api, conversation(chat_api), 'use mcp:acme/add with {"a": 1, "b": 1}')

    assert answer["status"] == "completed", answer
    assert answer["tool_calls"][0]["error"].startswith("the MCP server 'acme' failed: ")
    assert acme.url not in answer["tool_calls"][0]["error"]  # named, never its address


@pytest.mark.usefixtures("seeded_registries")
def test_headers_come_from_the_environment_and_are_never_stored_or_shown(acme, mcp_admin, monkeypatch, chat_api):
    from chat.mcp.services import mcp_server_create

    monkeypatch.setenv("MCP_ACME_TOKEN", "Bearer s3cret-value")
    server = mcp_server_create(
        actor=mcp_admin, slug="acme", url=acme.url, headers_from_env={"Authorization": "MCP_ACME_TOKEN"}
    )
    make_profile(tools=["mcp:acme/whoami"])

    answer = ask(chat_api, conversation(chat_api), "use mcp:acme/whoami with {}")

    assert answer["tool_calls"][0]["result"]["structured_content"] == {"authorization": "Bearer s3cret-value"}
    server.refresh_from_db()
    stored = json.dumps([server.headers_from_env, server.tools, server.tools_error])
    assert "s3cret" not in stored and "MCP_ACME_TOKEN" in stored
    listed = APIClient()
    listed.force_authenticate(mcp_admin)
    assert "s3cret" not in listed.get("/api/chat/mcp-servers").content.decode()


@pytest.mark.usefixtures("seeded_registries")
def test_a_missing_environment_variable_is_said_by_the_failed_call(acme, mcp_admin, chat_api):
    from chat.mcp.services import mcp_server_create

    server = mcp_server_create(actor=mcp_admin, slug="acme", url=acme.url)
    server.headers_from_env = {"Authorization": "MCP_NOT_SET_ANYWHERE"}
    server.save()
    make_profile(tools=["mcp:acme/add"])

    answer = ask(chat_api, conversation(chat_api), 'use mcp:acme/add with {"a": 1, "b": 1}')

    assert "MCP_NOT_SET_ANYWHERE" in answer["tool_calls"][0]["error"]
    assert acme.calls == []


# --------------------------------------------------------------------------- who may call


@pytest.mark.usefixtures("seeded_registries", "acme_registered")
def test_access_is_checked_for_the_user_whose_turn_it_is_not_the_profiles_author(acme, mcp_admin):
    from django.contrib.auth.models import Group

    from chat.mcp.services import mcp_server_update

    mcp_server_update(actor=mcp_admin, slug="acme", changes={"visible_to_groups": ["finance"]})
    make_profile(actor=mcp_admin)  # written by someone who may use the server
    finance = UserFactory(username="fiona")
    finance.groups.add(Group.objects.create(name="finance"))
    outsider = UserFactory(username="oscar")
    calls = {}
    for user in (finance, outsider):
        client = APIClient()
        client.force_authenticate(user)
        calls[user.username] = ask(client, conversation(client), 'use mcp:acme/add with {"a": 2, "b": 2}')

    assert calls["fiona"]["tool_calls"][0]["result"]["structured_content"] == {"result": 4}
    assert calls["oscar"]["tool_calls"][0]["error"] == "permission denied: you may not use the MCP server 'acme'"
    assert calls["oscar"]["status"] == "completed"
    assert acme.calls == ["add"]  # the outsider's call never reached the server


@pytest.mark.usefixtures("helper")
def test_a_deleted_server_leaves_the_profile_usable_without_its_tools(chat_api, mcp_admin):
    from chat.mcp.services import mcp_server_delete

    mcp_server_delete(actor=mcp_admin, slug="acme")
    answer = ask(chat_api, conversation(chat_api), 'use calculator with {"expression": "1 + 1"}')

    assert answer["status"] == "completed"
    assert answer["tools"] == ["calculator"]


@pytest.mark.usefixtures("seeded_registries")
def test_a_header_value_with_a_line_break_is_refused_and_never_shown(acme, mcp_admin, monkeypatch, chat_api):
    from chat.mcp.services import mcp_server_create

    monkeypatch.setenv("MCP_ACME_TOKEN", "Bearer sk-SECRET123\n")
    server = mcp_server_create(
        actor=mcp_admin, slug="acme", url=acme.url, headers_from_env={"Authorization": "MCP_ACME_TOKEN"}
    )
    make_profile(tools=["calculator"])

    assert "line break" in server.tools_error and "SECRET123" not in server.tools_error
    assert acme.calls == []


@pytest.mark.usefixtures("seeded_registries", "acme_registered")
def test_a_stored_header_variable_without_the_prefix_is_refused_at_call_time(acme, chat_api, monkeypatch):
    from chat.models import McpServer

    monkeypatch.setenv("SECRET_KEY", "the-django-secret")
    McpServer.objects.filter(slug="acme").update(headers_from_env={"X-Leak": "SECRET_KEY"})  # older data
    make_profile(tools=["mcp:acme/whoami"])

    answer = ask(chat_api, conversation(chat_api), "use mcp:acme/whoami with {}")

    assert "must be the name of an environment variable starting with MCP_" in answer["tool_calls"][0]["error"]
    assert acme.calls == []


@pytest.mark.usefixtures("seeded_registries", "acme_registered")
def test_saving_a_profile_stacked_on_one_whose_server_is_gone_still_works(mcp_admin):
    from chat.mcp.services import mcp_server_delete

    make_profile(slug="base-with-mcp", tools=["mcp:acme/add"])
    mcp_server_delete(actor=mcp_admin, slug="acme")

    services.profile_create(
        registry_slug="default",
        slug="on-top",
        display_name="On top",
        runtime={"system_prompt": "More."},
        stack=[{"slug": "base-with-mcp"}],
    )
