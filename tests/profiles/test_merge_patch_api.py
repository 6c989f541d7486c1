"""PATCH is a JSON Merge Patch (RFC 7396), on profiles and on registries, through both mounts.

`{"runtime": {"system_prompt": "x"}}` changes the prompt and keeps the middlewares and tools; arrays
replace; `null` removes an optional key and is a 400 on a required one; the merged result is checked like
a created profile and nothing is written when it fails; `application/merge-patch+json` is accepted as
well as `application/json`; optimistic concurrency (`expected_version`, `If-Match`) is as before; the
OpenAPI schema documents the body as a merge patch with both media types.
"""

from __future__ import annotations

import json

import pytest
from rest_framework.test import APIClient

from profiles import services
from profiles.models import Profile, ProfileRevision, Registry

from .factories import EditorFactory, join
from .support import MountCase, error_of

pytestmark = pytest.mark.django_db

MERGE_PATCH = "application/merge-patch+json"
STARTER = "webchat.starter_suggestions@v1"


def agent_url(mount: MountCase, suffix: str = "") -> str:
    """The demo `agent` profile (registry `default`), through `mount`."""
    return mount.url(f"/profiles/agent{suffix}?registry=default")


def merge(client: APIClient, url: str, body: dict, **extra):
    """A PATCH with the merge patch media type."""
    return client.generic("PATCH", url, json.dumps(body), content_type=MERGE_PATCH, **extra)


def stored(slug: str = "agent", registry: str = "default") -> Profile:
    return Profile.objects.get(registry__slug=registry, slug=slug)


@pytest.fixture
def agent(seeded) -> Profile:
    return stored()


# --------------------------------------------------------------------------- profiles


def test_patching_the_system_prompt_keeps_the_middlewares_and_tools(mount, agent, api_editor):
    response = api_editor.patch(agent_url(mount), {"runtime": {"system_prompt": "Be terse."}}, format="json")

    assert response.status_code == 200, response.content
    runtime = response.json()["runtime"]
    assert runtime == {**agent.runtime, "system_prompt": "Be terse."}
    assert [m["name"] for m in runtime["middlewares"]] == ["redact", "agent_mode"]
    assert runtime["tools"] == ["calculator", "current_time"]
    assert stored().runtime == runtime
    assert stored().version == agent.version + 1


def test_the_merge_patch_media_type_is_accepted_and_means_the_same(mount, agent, api_editor):
    response = merge(api_editor, agent_url(mount), {"runtime": {"system_prompt": "Be terse."}})

    assert response.status_code == 200, response.content
    assert response.json()["runtime"] == {**agent.runtime, "system_prompt": "Be terse."}


def test_other_media_types_stay_refused_and_the_merge_patch_type_is_for_patch_only(mount, seeded, api_editor):
    response = api_editor.generic("PATCH", agent_url(mount), "description=x", content_type="text/plain")
    assert (response.status_code, error_of(response)["code"]) == (415, "unsupported_media_type")
    response = api_editor.generic("POST", mount.url("/profiles"), json.dumps({"slug": "mp"}), content_type=MERGE_PATCH)
    assert response.status_code == 415
    assert not Profile.objects.filter(slug="mp").exists()


def test_arrays_replace_whole(mount, agent, api_editor):
    response = api_editor.patch(agent_url(mount), {"runtime": {"tools": ["current_time"]}}, format="json")

    runtime = response.json()["runtime"]
    assert runtime["tools"] == ["current_time"]
    assert runtime["middlewares"] == agent.runtime["middlewares"]
    assert runtime["system_prompt"] == agent.runtime["system_prompt"]


def test_null_removes_an_optional_key(mount, agent, api_editor):
    response = merge(api_editor, agent_url(mount), {"runtime": {"system_prompt": None}, "description": None})

    doc = response.json()
    assert "system_prompt" not in doc["runtime"]
    assert doc["runtime"]["tools"] == agent.runtime["tools"]
    assert doc["description"] == ""


def test_null_removes_one_extension_and_keeps_the_others(mount, seeded, api_editor):
    services.profile_create(
        registry_slug=mount.registry, slug="ext", extensions={STARTER: {"items": ["Hi"]}, "acme.notes@v1": {"a": 1}}
    )
    response = merge(api_editor, mount.url("/profiles/ext"), {"extensions": {"acme.notes@v1": None}})
    assert response.json()["extensions"] == {STARTER: {"items": ["Hi"]}}


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"display_name": None}, "display_name"),
        ({"extensions": {STARTER: {"items": None}}}, f"extensions[{STARTER}]"),
        ({"runtime": {"middlewares": [{"name": "no-such-middleware"}]}}, "runtime.middlewares[0].name"),
        ({"runtime": {"system_prompt": 7}}, "runtime.system_prompt"),
        ({"runtime": {"tools": ["calculator", "calculator"]}}, "runtime.tools[1]"),
        ({"policy": {"allowed_override_keys": ["tools"], "denied_override_keys": ["tools"]}}, "policy.override_keys"),
    ],
)
def test_a_merged_result_that_breaks_a_rule_is_a_400_with_its_path_and_nothing_is_written(
    mount, seeded, api_editor, body, field
):
    services.profile_create(
        registry_slug=mount.registry,
        slug="target",
        runtime={"system_prompt": "Kept.", "tools": ["calculator"]},
        extensions={STARTER: {"items": ["Hi"]}},
    )
    before = (stored("target", mount.registry).version, ProfileRevision.objects.count())

    response = merge(api_editor, mount.url("/profiles/target"), {"description": "half?", **body})

    assert response.status_code == 400, response.content
    assert error_of(response)["field"].startswith(field)
    after = stored("target", mount.registry)
    assert (after.version, ProfileRevision.objects.count()) == before
    assert (after.description, after.runtime) == ("", {"system_prompt": "Kept.", "tools": ["calculator"]})


def test_the_merged_result_gets_the_same_check_as_a_create(mount, agent, api_editor):
    patched = merge(api_editor, agent_url(mount), {"runtime": {"middlewares": [{"name": "redact", "config": 1}]}})
    created = api_editor.post(
        mount.url("/profiles"),
        {"slug": "twin", "runtime": {**agent.runtime, "middlewares": [{"name": "redact", "config": 1}]}},
        format="json",
    )
    assert patched.status_code == created.status_code == 400
    assert error_of(patched) == error_of(created)


def test_patches_merge_into_the_current_version_one_after_the_other(mount, agent, api_editor):
    merge(api_editor, agent_url(mount), {"runtime": {"system_prompt": "First."}})
    merge(api_editor, agent_url(mount), {"runtime": {"tools": []}})

    assert stored().runtime == {**agent.runtime, "system_prompt": "First.", "tools": []}
    assert stored().version == agent.version + 2


def test_a_merge_that_changes_nothing_writes_no_version(mount, agent, api_editor):
    response = merge(api_editor, agent_url(mount), {"runtime": {"tools": agent.runtime["tools"]}})
    assert (response.status_code, stored().version) == (200, agent.version)


def test_expected_version_and_if_match_are_checked_before_the_merge(mount, agent, api_editor):
    stale = agent.version - 1 or 99
    response = merge(api_editor, agent_url(mount), {"runtime": {"system_prompt": "x"}, "expected_version": stale})
    assert (response.status_code, error_of(response)["code"]) == (409, "version_conflict")
    response = merge(api_editor, agent_url(mount), {"runtime": {"system_prompt": "x"}}, HTTP_IF_MATCH=f'"{stale}"')
    assert (response.status_code, error_of(response)["code"]) == (412, "precondition_failed")
    assert stored().runtime == agent.runtime

    body = {"runtime": {"system_prompt": "x"}, "expected_version": agent.version}
    response = merge(api_editor, agent_url(mount), body, HTTP_IF_MATCH=f'"{agent.version}"')
    assert response.status_code == 200
    assert response.headers["ETag"] == f'"{agent.version + 1}"'


# --------------------------------------------------------------------------- registries


@pytest.fixture
def registry_editor(db):
    """May change registries and profiles."""
    return EditorFactory(username="registry-editor", perms=["profiles.change_registry", "profiles.change_profile"])


@pytest.fixture
def api_registry_editor(registry_editor) -> APIClient:
    client = APIClient()
    client.force_authenticate(registry_editor)
    return client


def registry_url(mount: MountCase, slug: str | None = None) -> str:
    return mount.url(f"/registries/{slug or mount.registry}")


def test_a_registry_reads_as_a_document_with_its_etag(mount, seeded, api_reader):
    response = api_reader.get(registry_url(mount))
    assert response.status_code == 200, response.content
    registry = Registry.objects.get(slug=mount.registry)
    doc = response.json()
    assert doc["slug"] == mount.registry
    assert (doc["version"], doc["default_profile_slug"]) == (registry.version, mount.default_profile)
    assert (doc["protected_labels"], doc["serve_label"]) == (["production"], "")
    assert response.headers["ETag"] == f'"{registry.version}"'
    assert api_reader.get(mount.url("/registries/nothing-here")).status_code == 404


def test_a_registry_patch_changes_the_fields_it_names_in_one_version_step(mount, seeded, api_registry_editor):
    before = Registry.objects.get(slug=mount.registry)
    response = merge(
        api_registry_editor,
        registry_url(mount),
        {"description": "Merged.", "default_profile_slug": "analyst", "serve_label": "production"},
    )
    assert response.status_code == 200, response.content
    doc = response.json()
    assert (doc["description"], doc["default_profile_slug"], doc["serve_label"]) == ("Merged.", "analyst", "production")
    assert doc["display_name"] == before.display_name  # not named: unchanged
    after = Registry.objects.get(slug=mount.registry)
    assert after.version == doc["version"] == before.version + 1
    assert response.headers["ETag"] == f'"{after.version}"'


def test_null_empties_an_optional_registry_field(mount, seeded, api_registry_editor):
    services.registry_update(slug=mount.registry, description="Some.", serve_label="production")
    response = api_registry_editor.patch(
        registry_url(mount), {"description": None, "serve_label": None, "protected_labels": None}, format="json"
    )
    assert response.status_code == 200, response.content
    registry = Registry.objects.get(slug=mount.registry)
    assert (registry.description, registry.serve_label, registry.protected_labels) == ("", "", [])


@pytest.mark.parametrize("field", ["display_name", "default_profile_slug"])
def test_null_on_a_required_registry_field_is_a_400_and_nothing_changes(mount, seeded, api_registry_editor, field):
    before = Registry.objects.get(slug=mount.registry).version
    response = merge(api_registry_editor, registry_url(mount), {"description": "half?", field: None})
    assert response.status_code == 400
    assert error_of(response)["field"] == field
    assert Registry.objects.get(slug=mount.registry).version == before


def test_a_registry_patch_is_checked_like_any_registry_write(mount, seeded, api_registry_editor):
    before = Registry.objects.get(slug=mount.registry).version
    response = merge(api_registry_editor, registry_url(mount), {"default_profile_slug": "nothing-here"})
    assert (response.status_code, error_of(response)["field"]) == (404, "default_profile")
    bad = {"description": "half?", "group_defaults": [{"group": "g", "profile": "nothing-here"}]}
    response = merge(api_registry_editor, registry_url(mount), bad)
    assert (response.status_code, error_of(response)["field"]) == (400, "group_defaults[0].profile")
    response = merge(api_registry_editor, registry_url(mount), {"colour": "blue"})
    assert (response.status_code, error_of(response)["field"]) == (400, "colour")
    response = merge(api_registry_editor, registry_url(mount), {"slug": "renamed"})
    assert (response.status_code, error_of(response)["field"]) == (400, "slug")
    assert Registry.objects.get(slug=mount.registry).version == before


def test_a_registry_document_read_back_can_be_patched_as_is(mount, seeded, api_registry_editor):
    document = api_registry_editor.get(registry_url(mount)).json()
    response = merge(api_registry_editor, registry_url(mount), document)
    assert response.status_code == 200, response.content
    assert response.json() == document  # nothing changed, no version step


def test_registry_optimistic_concurrency(mount, seeded, api_registry_editor):
    version = Registry.objects.get(slug=mount.registry).version
    response = merge(api_registry_editor, registry_url(mount), {"description": "x", "expected_version": version + 1})
    assert (response.status_code, error_of(response)["code"]) == (409, "version_conflict")
    response = merge(api_registry_editor, registry_url(mount), {"description": "x"}, HTTP_IF_MATCH=f'"{version + 1}"')
    assert (response.status_code, error_of(response)["code"]) == (412, "precondition_failed")
    response = merge(
        api_registry_editor,
        registry_url(mount),
        {"description": "x", "expected_version": version},
        HTTP_IF_MATCH=str(version),
    )
    assert response.status_code == 200
    assert Registry.objects.get(slug=mount.registry).description == "x"


def test_a_registry_patch_needs_the_change_registry_permission_and_its_editor_groups(
    mount, seeded, api_editor, api_registry_editor, registry_editor
):
    response = merge(api_editor, registry_url(mount), {"description": "x"})  # profile permissions only
    assert (response.status_code, error_of(response)["code"]) == (403, "permission_denied")

    services.registry_update(slug=mount.registry, editor_groups=["registry-editors"])
    response = merge(api_registry_editor, registry_url(mount), {"description": "x"})
    assert (response.status_code, error_of(response)["field"]) == (403, "registry")

    join(registry_editor, "registry-editors")
    insider = APIClient()
    insider.force_authenticate(type(registry_editor).objects.get(pk=registry_editor.pk))
    response = merge(insider, registry_url(mount), {"description": "x", "editor_groups": None})
    assert response.status_code == 200, response.content
    assert Registry.objects.get(slug=mount.registry).editor_groups == []
    assert Registry.objects.get(slug=mount.registry).description == "x"


# --------------------------------------------------------------------------- the schema


@pytest.mark.parametrize("path", ["/api/chat/profiles/{slug}", "/api/chat/registries/{slug}"])
def test_the_schema_documents_the_patch_body_as_a_merge_patch_on_both_mounts(api_reader, path):
    document = api_reader.get("/api/schema/?format=json").json()
    for prefix in ("", "/inventory"):
        operation = document["paths"][prefix + path]["patch"]
        content = operation["requestBody"]["content"]
        assert list(content) == [MERGE_PATCH, "application/json"]
        assert "Merge Patch (RFC 7396)" in operation["description"]
        component = content[MERGE_PATCH]["schema"]["$ref"].rsplit("/", 1)[1]
        assert "JSON Merge Patch (RFC 7396)" in document["components"]["schemas"][component]["description"]
