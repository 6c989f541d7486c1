"""The shared profile API (spec section 7), exercised through BOTH mounts.

Every test that takes the `mount` fixture runs twice: the chat mount at `/api/chat` (default
registry `default`) and the inventory mount at `/inventory/api/chat` (default registry `inventory`).
"""

from __future__ import annotations

import json
import re

import pytest
from rest_framework.test import APIClient

from profiles.models import Profile, ProfileRevision, ProfileSelection, Registry

from .factories import PASSWORD, UserFactory
from .support import CHAT, INVENTORY, RESOLUTION_KEYS, SEED_PROFILES, MountCase, canonical, error_of

pytestmark = pytest.mark.django_db

STARTER = "webchat.starter_suggestions@v1"
DOCUMENT_KEYS = {
    "registry",
    "slug",
    "display_name",
    "description",
    "runtime",
    "policy",
    "extensions",
    "metadata",
    "is_default",
}
METADATA_KEYS = {"version", "created_at_ms", "updated_at_ms", "created_by", "updated_by", "source", "tags"}
LIST_ITEM_KEYS = {
    "registry",
    "slug",
    "display_name",
    "description",
    "default_prompt",
    "extensions",
    "is_default",
    "version",
}
FINGERPRINT_RE = re.compile(r"^sha256:[0-9a-f]{64}$")
DEFAULT_POLICY = {"allow_overrides": False, "allowed_override_keys": [], "denied_override_keys": [], "read_only": False}


def create(client: APIClient, mount: MountCase, slug: str, *, query: str = "", **body) -> dict:
    response = client.post(mount.url(f"/profiles{query}"), {"slug": slug, **body}, format="json")
    assert response.status_code == 201, response.content
    return response.json()


def get_profile(client: APIClient, mount: MountCase, slug: str, query: str = "") -> dict:
    response = client.get(mount.url(f"/profiles/{slug}{query}"))
    assert response.status_code == 200, response.content
    return response.json()


def patch(client: APIClient, mount: MountCase, slug: str, body: dict, **extra):
    return client.patch(mount.url(f"/profiles/{slug}"), body, format="json", **extra)


def db_profile(registry: str, slug: str) -> Profile:
    return Profile.objects.get(registry__slug=registry, slug=slug)


def snapshot() -> list[tuple]:
    """Everything a failed write must leave untouched."""
    return [
        *Registry.objects.order_by("slug").values_list("slug", "version", "default_profile_id"),
        *Profile.objects.order_by("pk").values_list("pk", "slug", "version", "description", "updated_at_ms"),
        ("revisions", ProfileRevision.objects.count()),
    ]


# =========================================================================== authentication


ALL_ROUTES = [
    ("get", "/registries"),
    ("get", "/profiles"),
    ("post", "/profiles"),
    ("get", "/profiles/default"),
    ("patch", "/profiles/default"),
    ("delete", "/profiles/default"),
    ("post", "/profiles/default/default"),
    ("get", "/profiles/default/versions"),
    ("get", "/profiles/default/versions/1"),
    ("post", "/profiles/default/versions/1/restore"),
    ("post", "/profiles/default/resolve"),
    ("get", "/profile"),
    ("post", "/profile"),
    ("get", "/schemas/middlewares"),
    ("get", "/schemas/tools"),
    ("get", "/schemas/extensions"),
    ("get", "/schemas/step-settings"),
]


@pytest.mark.parametrize(("method", "path"), ALL_ROUTES, ids=[f"{m} {p}" for m, p in ALL_ROUTES])
def test_anonymous_requests_are_401_on_every_route(mount, seeded, api_anon, method, path):
    before = snapshot()
    response = getattr(api_anon, method)(mount.url(path), {"slug": "x"} if method != "get" else None, format="json")
    assert response.status_code == 401
    assert error_of(response)["code"] == "not_authenticated"
    assert response.headers["WWW-Authenticate"] == "Token"
    assert snapshot() == before


@pytest.mark.parametrize("header", ["Token not-a-real-token", "Token ", "Bearer abc"])
def test_a_bad_token_is_401(mount, seeded, header):
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=header)
    response = client.get(mount.url("/profiles"))
    assert response.status_code == 401
    assert error_of(response)["code"] == "not_authenticated"


def test_a_token_client_reads_and_writes(mount, seeded, token_client):
    assert token_client.get(mount.url("/profiles")).status_code == 200
    response = token_client.post(mount.url("/profiles"), {"slug": "by-token"}, format="json")
    assert response.status_code == 201
    assert response.json()["metadata"]["created_by"] == "editor"


WRITE_ROUTES = [
    ("post", "/profiles", {"slug": "new"}),
    ("patch", "/profiles/analyst", {"description": "hacked"}),
    ("delete", "/profiles/analyst", None),
    ("post", "/profiles/analyst/default", {}),
    ("post", "/profiles/analyst/versions/1/restore", {}),
]


@pytest.mark.parametrize(("method", "path", "body"), WRITE_ROUTES, ids=[f"{m} {p}" for m, p, _ in WRITE_ROUTES])
def test_a_plain_user_cannot_write(mount, seeded, api_reader, method, path, body):
    before = snapshot()
    response = getattr(api_reader, method)(mount.url(path), body, format="json")
    assert response.status_code == 403
    assert error_of(response)["code"] == "permission_denied"
    assert snapshot() == before


def test_a_plain_user_can_read_resolve_and_select(mount, seeded, api_reader):
    assert api_reader.get(mount.url("/registries")).status_code == 200
    assert api_reader.get(mount.url("/profiles")).status_code == 200
    assert api_reader.get(mount.url("/profiles/analyst")).status_code == 200
    assert api_reader.get(mount.url("/profiles/analyst/versions")).status_code == 200
    assert api_reader.get(mount.url("/profiles/analyst/versions/1")).status_code == 200
    assert api_reader.post(mount.url("/profiles/analyst/resolve"), {}, format="json").status_code == 200
    assert api_reader.post(mount.url("/profile"), {"slug": "analyst"}, format="json").status_code == 200


def test_each_write_needs_its_own_model_permission(mount, seeded):
    changer = UserFactory(username="changer", perms=["profiles.change_profile"])
    client = APIClient()
    client.force_authenticate(user=changer)
    assert patch(client, mount, "analyst", {"description": "ok"}).status_code == 200
    assert client.post(mount.url("/profiles"), {"slug": "x"}, format="json").status_code == 403
    assert client.delete(mount.url("/profiles/analyst")).status_code == 403


# =========================================================================== registries and lists


def test_registries_are_listed_as_an_array_in_slug_order(mount, seeded, api_reader):
    response = api_reader.get(mount.url("/registries"))
    assert response.status_code == 200
    assert response.json() == [
        {
            "slug": "default",
            "display_name": "Chat",
            "description": "Profiles of the general chat app.",
            "default_profile_slug": "default",
            "profile_count": 3,
            "version": 5,
        },
        {
            "slug": "inventory",
            "display_name": "Inventory",
            "description": "Profiles of the inventory assistant.",
            "default_profile_slug": "inventory",
            "profile_count": 3,
            "version": 5,
        },
    ]


def test_profiles_are_listed_as_an_array_in_slug_order(mount, seeded, api_reader):
    response = api_reader.get(mount.url("/profiles"))
    assert response.status_code == 200
    items = response.json()
    assert isinstance(items, list)
    assert [item["slug"] for item in items] == SEED_PROFILES[mount.registry]
    for item in items:
        assert set(item) == LIST_ITEM_KEYS
        assert item["registry"] == mount.registry
        assert item["is_default"] is (item["slug"] == mount.default_profile)
        assert item["version"] == 1
    analyst = next(item for item in items if item["slug"] == "analyst")
    prompts = {
        "default": "You are an analyst assistant. Answer with findings first, then evidence.",
        "inventory": "You are an analyst assistant.",
    }
    assert analyst["default_prompt"] == prompts[mount.registry]


def test_the_list_follows_slug_order_not_creation_order(mount, seeded, api_editor):
    for slug in ["m-middle", "0-first", "zz-last"]:
        create(api_editor, mount, slug)
    slugs = [item["slug"] for item in api_editor.get(mount.url("/profiles")).json()]
    assert slugs == sorted([*SEED_PROFILES[mount.registry], "m-middle", "0-first", "zz-last"])


def test_the_list_shows_extensions_and_an_empty_default_prompt(mount, seeded, api_editor):
    create(api_editor, mount, "bare", extensions={STARTER: {"items": ["Hi"]}})
    item = next(i for i in api_editor.get(mount.url("/profiles")).json() if i["slug"] == "bare")
    assert item["default_prompt"] == ""
    assert item["extensions"] == {STARTER: {"items": ["Hi"]}}


def test_registry_query_selects_another_registry_for_the_list(mount, seeded, api_reader):
    items = api_reader.get(mount.url(f"/profiles?registry={mount.other_registry}")).json()
    assert [item["slug"] for item in items] == SEED_PROFILES[mount.other_registry]
    assert {item["registry"] for item in items} == {mount.other_registry}


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("get", "/profiles"),
        ("post", "/profiles"),
        ("get", "/profiles/analyst"),
        ("patch", "/profiles/analyst"),
        ("delete", "/profiles/analyst"),
        ("post", "/profiles/analyst/default"),
        ("get", "/profiles/analyst/versions"),
        ("get", "/profiles/analyst/versions/1"),
        ("post", "/profiles/analyst/versions/1/restore"),
        ("post", "/profiles/analyst/resolve"),
    ],
)
def test_an_unknown_registry_is_404_on_every_profile_route(mount, seeded, api_editor, method, path):
    before = snapshot()
    body = {"slug": "new"} if path == "/profiles" and method == "post" else {}
    response = getattr(api_editor, method)(mount.url(f"{path}?registry=ghost"), body, format="json")
    assert response.status_code == 404
    error = error_of(response)
    assert (error["code"], error["field"]) == ("not_found", "registry")
    assert snapshot() == before


def test_an_invalid_registry_slug_is_400(mount, seeded, api_reader):
    response = api_reader.get(mount.url("/profiles?registry=bad%20slug"))
    assert response.status_code == 400
    assert (error_of(response)["code"], error_of(response)["field"]) == ("invalid", "registry")


def test_every_profile_route_works_on_another_registry_with_the_query(mount, seeded, api_editor):
    q = f"?registry={mount.other_registry}"
    own_before = [(p.slug, p.version) for p in Profile.objects.filter(registry__slug=mount.registry)]

    doc = create(api_editor, mount, "elsewhere", query=q, description="one")
    assert doc["registry"] == mount.other_registry
    assert get_profile(api_editor, mount, "elsewhere", q)["registry"] == mount.other_registry
    assert api_editor.get(mount.url("/profiles/elsewhere")).status_code == 404  # not in the mount's registry

    response = api_editor.patch(mount.url(f"/profiles/elsewhere{q}"), {"description": "two"}, format="json")
    assert (response.status_code, response.json()["metadata"]["version"]) == (200, 2)
    versions = api_editor.get(mount.url(f"/profiles/elsewhere/versions{q}")).json()
    assert [v["version"] for v in versions] == [2, 1]
    assert api_editor.get(mount.url(f"/profiles/elsewhere/versions/1{q}")).json()["description"] == "one"
    restored = api_editor.post(mount.url(f"/profiles/elsewhere/versions/1/restore{q}"), {}, format="json").json()
    assert (restored["description"], restored["metadata"]["version"]) == ("one", 3)
    resolved = api_editor.post(mount.url(f"/profiles/elsewhere/resolve{q}"), {}, format="json").json()
    assert (resolved["registry"], resolved["profile"]) == (mount.other_registry, "elsewhere")
    made_default = api_editor.post(mount.url(f"/profiles/elsewhere/default{q}"), {}, format="json")
    assert (made_default.status_code, made_default.json()["is_default"]) == (200, True)
    assert Registry.objects.get(slug=mount.other_registry).default_profile.slug == "elsewhere"
    api_editor.post(mount.url(f"/profiles/default/default{q}"), {}, format="json")
    assert api_editor.delete(mount.url(f"/profiles/elsewhere{q}")).status_code == 204
    assert not Profile.objects.filter(slug="elsewhere").exists()

    assert [(p.slug, p.version) for p in Profile.objects.filter(registry__slug=mount.registry)] == own_before
    assert Registry.objects.get(slug=mount.registry).default_profile.slug == mount.default_profile


# =========================================================================== create


def test_create_returns_201_with_location_etag_and_the_document(mount, seeded, api_editor):
    response = api_editor.post(
        mount.url("/profiles"),
        {
            "slug": " Helper ",
            "display_name": "Helper",
            "description": "Helps.",
            "runtime": {"system_prompt": "Help.", "middlewares": [{"name": "suggestions"}], "tools": ["current_time"]},
            "policy": {"allow_overrides": True, "allowed_override_keys": ["systemPrompt"]},
            "extensions": {"Webchat.Starter_Suggestions@V1": {"items": [" Hi "]}, "acme.x@v1": {"b": 1, "a": [2]}},
        },
        format="json",
    )
    assert response.status_code == 201
    assert response.headers["Location"] == f"http://testserver{mount.prefix}/profiles/helper"
    assert response.headers["ETag"] == '"1"'
    doc = response.json()
    assert set(doc) == DOCUMENT_KEYS
    assert set(doc["metadata"]) == METADATA_KEYS
    assert doc["registry"] == mount.registry
    assert doc["slug"] == "helper"
    assert (doc["display_name"], doc["description"], doc["is_default"]) == ("Helper", "Helps.", False)
    assert doc["runtime"] == {
        "system_prompt": "Help.",
        "middlewares": [{"name": "suggestions", "config": {"max_items": 3}}],
        "tools": ["current_time"],
    }
    assert doc["policy"] == {**DEFAULT_POLICY, "allow_overrides": True, "allowed_override_keys": ["system_prompt"]}
    assert doc["extensions"] == {STARTER: {"items": ["Hi"]}, "acme.x@v1": {"b": 1, "a": [2]}}
    meta = doc["metadata"]
    assert (meta["version"], meta["created_by"], meta["updated_by"], meta["source"]) == (1, "editor", "editor", "api")
    assert meta["created_at_ms"] == meta["updated_at_ms"] > 0
    assert get_profile(api_editor, mount, "helper") == doc


def test_create_with_only_a_slug_uses_defaults(mount, seeded, api_editor):
    doc = create(api_editor, mount, "minimal")
    assert (doc["display_name"], doc["runtime"], doc["policy"], doc["extensions"]) == (
        "minimal",
        {},
        DEFAULT_POLICY,
        {},
    )


def test_create_ignores_client_supplied_metadata(mount, seeded, api_editor):
    doc = create(
        api_editor,
        mount,
        "honest",
        metadata={"version": 42, "created_by": "mallory", "source": "seed", "created_at_ms": 1},
    )
    meta = doc["metadata"]
    assert (meta["version"], meta["created_by"], meta["source"]) == (1, "editor", "api")
    assert meta["created_at_ms"] > 1
    assert db_profile(mount.registry, "honest").version == 1


def test_create_with_set_default_makes_it_the_default(mount, seeded, api_editor):
    before = Registry.objects.get(slug=mount.registry).version
    doc = create(api_editor, mount, "boss", set_default=True)
    assert doc["is_default"] is True
    registry = Registry.objects.get(slug=mount.registry)
    assert (registry.default_profile.slug, registry.version) == ("boss", before + 2)
    old_default = get_profile(api_editor, mount, mount.default_profile)
    assert old_default["is_default"] is False


def test_create_in_another_registry_puts_it_in_the_location(mount, seeded, api_editor):
    response = api_editor.post(
        mount.url("/profiles"), {"slug": "there", "registry": mount.other_registry}, format="json"
    )
    assert response.status_code == 201
    assert response.json()["registry"] == mount.other_registry
    assert response.headers["Location"] == (
        f"http://testserver{mount.prefix}/profiles/there?registry={mount.other_registry}"
    )


def test_the_first_profile_created_in_an_empty_registry_is_its_default(mount, seeded, api_editor):
    Registry.objects.create(slug="empty")
    doc = create(api_editor, mount, "first", query="?registry=empty")
    assert doc["is_default"] is True
    registries = {r["slug"]: r for r in api_editor.get(mount.url("/registries")).json()}
    assert (registries["empty"]["default_profile_slug"], registries["empty"]["version"]) == ("first", 3)


INVALID_CREATES = [
    ({"slug": "bad slug"}, "slug"),
    ({"slug": "-x"}, "slug"),
    ({"slug": ""}, "slug"),
    ({"slug": "x" * 129}, "slug"),
    ({}, "slug"),
    ({"slug": "ok", "runtime": {"middlewares": [{"name": ""}]}}, "runtime.middlewares[0].name"),
    ({"slug": "ok", "runtime": {"middlewares": [{"name": "nope"}]}}, "runtime.middlewares[0].name"),
    (
        {"slug": "ok", "runtime": {"middlewares": [{"name": "context_window", "config": {"max_turns": "all"}}]}},
        "runtime.middlewares[0].config.max_turns",
    ),
    (
        {"slug": "ok", "runtime": {"middlewares": [{"name": "suggestions", "id": "s"}, {"name": "redact", "id": "s"}]}},
        "runtime.middlewares[1].id",
    ),
    ({"slug": "ok", "runtime": {"tools": ["rm_rf"]}}, "runtime.tools[0]"),
    (
        {"slug": "ok", "runtime": {"step_settings_patch": {"openai-chat": {"openai-api-key": "sk-1"}}}},
        "runtime.step_settings_patch.openai-chat.openai-api-key",
    ),
    (
        {
            "slug": "ok",
            "policy": {"allowed_override_keys": ["systemPrompt"], "denied_override_keys": ["system_prompt"]},
        },
        "policy.override_keys",
    ),
    ({"slug": "ok", "extensions": {"x.y@v0": 1}}, "extensions[x.y@v0]"),
    ({"slug": "ok", "extensions": {STARTER: {"items": [1]}}}, f"extensions[{STARTER}].items[0]"),
    ({"slug": "ok", "display_name": "x" * 201}, "display_name"),
    ({"slug": "ok", "set_default": "maybe"}, "set_default"),
]


@pytest.mark.parametrize(("body", "field"), INVALID_CREATES, ids=[f for _, f in INVALID_CREATES])
def test_an_invalid_create_is_400_with_the_field_and_writes_nothing(mount, seeded, api_editor, body, field):
    before = snapshot()
    response = api_editor.post(mount.url("/profiles"), body, format="json")
    assert response.status_code == 400
    error = error_of(response)
    assert (error["code"], error["field"]) == ("invalid", field)
    assert snapshot() == before


def test_a_duplicate_slug_is_a_409_conflict(mount, seeded, api_editor):
    before = snapshot()
    response = api_editor.post(mount.url("/profiles"), {"slug": " Analyst "}, format="json")
    assert response.status_code == 409
    assert (error_of(response)["code"], error_of(response)["field"]) == ("conflict", "slug")
    assert snapshot() == before


def test_a_body_that_is_not_json_is_rejected(mount, seeded, api_editor):
    response = api_editor.post(mount.url("/profiles"), "slug=x", content_type="application/x-www-form-urlencoded")
    assert response.status_code == 415
    assert error_of(response)["code"] == "unsupported_media_type"


# =========================================================================== retrieve


def test_get_returns_the_document_with_an_etag(mount, seeded, api_reader):
    response = api_reader.get(mount.url("/profiles/analyst"))
    assert response.status_code == 200
    assert response.headers["ETag"] == '"1"'
    doc = response.json()
    assert set(doc) == DOCUMENT_KEYS
    assert (doc["registry"], doc["slug"], doc["is_default"]) == (mount.registry, "analyst", False)
    assert doc["metadata"]["source"] == "seed"


def test_get_canonicalises_the_slug_in_the_url(mount, seeded, api_reader):
    assert api_reader.get(mount.url("/profiles/ANALYST")).json()["slug"] == "analyst"


def test_get_of_an_unknown_profile_is_404(mount, seeded, api_reader):
    response = api_reader.get(mount.url("/profiles/ghost"))
    assert response.status_code == 404
    assert (error_of(response)["code"], error_of(response)["field"]) == ("not_found", "slug")


def test_get_of_an_invalid_slug_is_400(mount, seeded, api_reader):
    response = api_reader.get(mount.url("/profiles/-x"))
    assert response.status_code == 400
    assert (error_of(response)["code"], error_of(response)["field"]) == ("invalid", "slug")


# =========================================================================== patch


@pytest.fixture
def fresh(mount, seeded, api_editor) -> dict:
    """A profile written through the API in the mount's registry, at version 1."""
    return create(
        api_editor,
        mount,
        "fresh",
        description="one",
        runtime={"system_prompt": "Base.", "tools": ["calculator"], "middlewares": [{"name": "suggestions"}]},
        extensions={STARTER: {"items": ["Start"]}, "acme.notes@v2": {"z": 1, "a": [1.5, "x", None], "m": {"k": True}}},
    )


def test_patch_writes_a_new_version_and_returns_the_document(mount, fresh, api_editor, reader):
    response = patch(api_editor, mount, "fresh", {"description": "two"})
    assert response.status_code == 200
    assert response.headers["ETag"] == '"2"'
    doc = response.json()
    assert (doc["description"], doc["metadata"]["version"], doc["metadata"]["updated_by"]) == ("two", 2, "editor")
    assert doc["runtime"] == fresh["runtime"]
    assert doc["metadata"]["created_at_ms"] == fresh["metadata"]["created_at_ms"]
    assert get_profile(api_editor, mount, "fresh") == doc


def test_patch_with_the_current_expected_version_succeeds(mount, fresh, api_editor):
    response = patch(api_editor, mount, "fresh", {"description": "two", "expected_version": 1})
    assert (response.status_code, response.json()["metadata"]["version"]) == (200, 2)


def test_patch_with_a_stale_expected_version_is_409_and_changes_nothing(mount, fresh, api_editor):
    patch(api_editor, mount, "fresh", {"description": "two"})
    before = snapshot()
    response = patch(api_editor, mount, "fresh", {"description": "three", "expected_version": 1})
    assert response.status_code == 409
    error = error_of(response)
    assert (error["code"], error["expected"], error["actual"]) == ("version_conflict", 1, 2)
    assert snapshot() == before
    assert get_profile(api_editor, mount, "fresh")["description"] == "two"


def test_patch_with_a_stale_if_match_is_412_and_changes_nothing(mount, fresh, api_editor):
    before = snapshot()
    response = patch(api_editor, mount, "fresh", {"description": "x"}, HTTP_IF_MATCH='"5"')
    assert response.status_code == 412
    error = error_of(response)
    assert (error["code"], error["expected"], error["actual"]) == ("precondition_failed", 5, 1)
    assert snapshot() == before


def test_patch_with_the_etag_as_if_match_succeeds(mount, fresh, api_editor):
    etag = api_editor.get(mount.url("/profiles/fresh")).headers["ETag"]
    response = patch(api_editor, mount, "fresh", {"description": "x"}, HTTP_IF_MATCH=etag)
    assert (response.status_code, response.headers["ETag"]) == (200, '"2"')


@pytest.mark.parametrize("bad", [0, "abc", -3])
def test_patch_with_an_invalid_expected_version_is_400(mount, fresh, api_editor, bad):
    response = patch(api_editor, mount, "fresh", {"description": "x", "expected_version": bad})
    assert response.status_code == 400
    assert error_of(response)["field"] == "expected_version"


def test_patch_merges_into_the_runtime_and_keeps_what_it_does_not_name(mount, fresh, api_editor):
    doc = patch(api_editor, mount, "fresh", {"runtime": {"system_prompt": "Only this."}}).json()
    assert doc["runtime"] == {**fresh["runtime"], "system_prompt": "Only this."}
    assert doc["runtime"]["tools"] == ["calculator"] and doc["runtime"]["middlewares"]


def test_patch_without_extensions_leaves_them_exactly_as_they_were(mount, fresh, api_editor):
    before = api_editor.get(mount.url("/profiles/fresh")).json()["extensions"]
    response = patch(api_editor, mount, "fresh", {"description": "unrelated", "runtime": {"system_prompt": "New."}})
    assert response.status_code == 200
    after = api_editor.get(mount.url("/profiles/fresh")).json()["extensions"]
    assert json.dumps(after) == json.dumps(before)  # same keys, order, types and values
    assert canonical(after["acme.notes@v2"]) == canonical({"z": 1, "a": [1.5, "x", None], "m": {"k": True}})


def test_patch_with_extensions_merges_them_key_by_key_under_their_canonical_keys(mount, fresh, api_editor):
    doc = patch(api_editor, mount, "fresh", {"extensions": {"ACME.New@V1": "x", "Acme.Notes@v2": None}}).json()
    assert doc["extensions"] == {STARTER: {"items": ["Start"]}, "acme.new@v1": "x"}


def test_patch_ignores_client_supplied_metadata(mount, fresh, api_editor):
    response = patch(api_editor, mount, "fresh", {"metadata": {"version": 50, "created_by": "mallory"}})
    assert response.status_code == 200
    assert (response.json()["metadata"]["version"], response.json()["metadata"]["created_by"]) == (1, "editor")
    assert db_profile(mount.registry, "fresh").version == 1


@pytest.mark.parametrize("key", ["slug", "registry"])
def test_patch_cannot_rename_or_move_a_profile(mount, fresh, api_editor, key):
    target = {"slug": "renamed", "registry": mount.other_registry}[key]
    response = patch(api_editor, mount, "fresh", {key: target, "description": "moved?"})
    assert response.status_code == 400
    assert response.json()["error"]["field"] == key
    assert api_editor.get(mount.url("/profiles/fresh")).json()["metadata"]["version"] == 1
    assert api_editor.get(mount.url("/profiles/renamed")).status_code == 404
    assert not Profile.objects.filter(registry__slug=mount.other_registry, slug="fresh").exists()


def test_a_document_read_back_can_be_patched_as_is(mount, fresh, api_editor):
    """Echoing the document (registry, slug, metadata, is_default) is fine; those keys change nothing."""
    document = api_editor.get(mount.url("/profiles/fresh")).json()
    response = patch(api_editor, mount, "fresh", {**document, "description": "edited"})
    assert response.status_code == 200, response.json()
    assert (response.json()["description"], response.json()["metadata"]["version"]) == ("edited", 2)


def test_an_unknown_key_is_rejected_not_ignored(mount, fresh, api_editor):
    response = patch(api_editor, mount, "fresh", {"descripton": "typo"})
    assert (response.status_code, response.json()["error"]["field"]) == (400, "descripton")
    created = api_editor.post(mount.url("/profiles"), {"slug": "x1", "sytem_prompt": "?"}, format="json")
    assert (created.status_code, created.json()["error"]["field"]) == (400, "sytem_prompt")


def test_a_patch_that_changes_nothing_keeps_the_version(mount, fresh, api_editor):
    response = patch(api_editor, mount, "fresh", {"description": "one", "runtime": fresh["runtime"]})
    assert (response.status_code, response.headers["ETag"]) == (200, '"1"')


@pytest.mark.parametrize(
    ("body", "field"),
    [
        (
            {"runtime": {"middlewares": [{"name": "suggestions", "config": {"max_items": 0}}]}},
            "runtime.middlewares[0].config.max_items",
        ),
        ({"runtime": {"tools": [""]}}, "runtime.tools[0]"),
        (
            {"runtime": {"step_settings_patch": {"ai-chat": {"ai-temperature": 9}}}},
            "runtime.step_settings_patch.ai-chat.ai-temperature",
        ),
        ({"policy": {"allowed_override_keys": ["tools"], "denied_override_keys": ["Tools"]}}, "policy.override_keys"),
        ({"extensions": {"Acme.X@v1": 1, "acme.x@V1": 2}}, "extensions[acme.x@V1]"),
        ({"display_name": "x" * 201}, "display_name"),
        ({"description": ["not", "text"]}, "description"),
    ],
    ids=lambda v: v if isinstance(v, str) else None,
)
def test_an_invalid_patch_is_400_with_the_field_and_changes_nothing(mount, fresh, api_editor, body, field):
    before = snapshot()
    response = patch(api_editor, mount, "fresh", body)
    assert response.status_code == 400
    assert (error_of(response)["code"], error_of(response)["field"]) == ("invalid", field)
    assert snapshot() == before


def test_patch_with_set_default_moves_the_default(mount, fresh, api_editor):
    doc = patch(api_editor, mount, "fresh", {"set_default": True}).json()
    assert (doc["is_default"], doc["metadata"]["version"]) == (True, 1)
    registries = {r["slug"]: r for r in api_editor.get(mount.url("/registries")).json()}
    assert registries[mount.registry]["default_profile_slug"] == "fresh"


def test_patch_of_a_read_only_profile_is_403(mount, seeded, api_editor):
    create(api_editor, mount, "locked", policy={"read_only": True})
    before = snapshot()
    response = patch(api_editor, mount, "locked", {"description": "x"})
    assert response.status_code == 403
    assert (error_of(response)["code"], error_of(response)["field"]) == ("read_only", "policy.read_only")
    assert snapshot() == before


def test_patch_of_an_unknown_profile_is_404(mount, seeded, api_editor):
    response = patch(api_editor, mount, "ghost", {"description": "x"})
    assert response.status_code == 404
    assert error_of(response)["code"] == "not_found"


# =========================================================================== delete


def test_delete_is_204_and_the_profile_is_gone(mount, fresh, api_editor):
    response = api_editor.delete(mount.url("/profiles/fresh"))
    assert response.status_code == 204
    assert response.content == b""
    assert api_editor.get(mount.url("/profiles/fresh")).status_code == 404
    registries = {r["slug"]: r for r in api_editor.get(mount.url("/registries")).json()}
    assert registries[mount.registry]["profile_count"] == 3


def test_delete_of_the_default_while_others_exist_is_409_and_changes_nothing(mount, seeded, api_editor):
    before = snapshot()
    response = api_editor.delete(mount.url(f"/profiles/{mount.default_profile}"))
    assert response.status_code == 409
    error = error_of(response)
    assert error["code"] == "conflict"
    assert "set another default first" in error["message"]
    assert snapshot() == before


def test_delete_of_the_last_profile_clears_the_default(mount, seeded, api_editor):
    Registry.objects.create(slug="solo")
    create(api_editor, mount, "only", query="?registry=solo")
    assert api_editor.delete(mount.url("/profiles/only?registry=solo")).status_code == 204
    registries = {r["slug"]: r for r in api_editor.get(mount.url("/registries")).json()}
    assert (registries["solo"]["default_profile_slug"], registries["solo"]["profile_count"]) == (None, 0)


def test_delete_with_a_stale_expected_version_is_409(mount, fresh, api_editor):
    patch(api_editor, mount, "fresh", {"description": "two"})
    response = api_editor.delete(mount.url("/profiles/fresh?expected_version=1"))
    assert response.status_code == 409
    assert (error_of(response)["code"], error_of(response)["expected"], error_of(response)["actual"]) == (
        "version_conflict",
        1,
        2,
    )
    assert api_editor.delete(mount.url("/profiles/fresh?expected_version=2")).status_code == 204


def test_delete_with_a_stale_if_match_is_412(mount, fresh, api_editor):
    response = api_editor.delete(mount.url("/profiles/fresh"), HTTP_IF_MATCH='"2"')
    assert response.status_code == 412
    assert error_of(response)["code"] == "precondition_failed"
    assert Profile.objects.filter(slug="fresh").exists()


def test_delete_of_a_read_only_profile_is_403(mount, seeded, api_editor):
    create(api_editor, mount, "locked", policy={"read_only": True})
    response = api_editor.delete(mount.url("/profiles/locked"))
    assert response.status_code == 403
    assert error_of(response)["code"] == "read_only"
    assert Profile.objects.filter(slug="locked").exists()


def test_delete_of_an_unknown_profile_is_404(mount, seeded, api_editor):
    response = api_editor.delete(mount.url("/profiles/ghost"))
    assert (response.status_code, error_of(response)["code"]) == (404, "not_found")


# =========================================================================== default


def test_make_default_returns_the_document_and_moves_the_default(mount, fresh, api_editor):
    response = api_editor.post(mount.url("/profiles/fresh/default"), {}, format="json")
    assert response.status_code == 200
    assert (response.json()["slug"], response.json()["is_default"]) == ("fresh", True)
    assert response.headers["ETag"] == '"1"'
    assert get_profile(api_editor, mount, mount.default_profile)["is_default"] is False


def test_make_default_checks_the_registry_version(mount, fresh, api_editor):
    version = Registry.objects.get(slug=mount.registry).version
    before = snapshot()
    response = api_editor.post(mount.url("/profiles/fresh/default"), {"expected_version": version - 1}, format="json")
    assert response.status_code == 409
    error = error_of(response)
    assert (error["code"], error["expected"], error["actual"]) == ("version_conflict", version - 1, version)
    assert snapshot() == before
    response = api_editor.post(mount.url("/profiles/fresh/default"), {"expected_version": version}, format="json")
    assert response.status_code == 200
    assert Registry.objects.get(slug=mount.registry).version == version + 1


def test_a_read_only_profile_can_be_made_the_default(mount, seeded, api_editor):
    create(api_editor, mount, "locked", policy={"read_only": True})
    response = api_editor.post(mount.url("/profiles/locked/default"), {}, format="json")
    assert (response.status_code, response.json()["is_default"]) == (200, True)


def test_make_default_of_an_unknown_profile_is_404(mount, seeded, api_editor):
    response = api_editor.post(mount.url("/profiles/ghost/default"), {}, format="json")
    assert (response.status_code, error_of(response)["code"]) == (404, "not_found")


# =========================================================================== versions


def test_versions_are_listed_newest_first(mount, fresh, api_editor, editor):
    patch(api_editor, mount, "fresh", {"description": "two"})
    patch(api_editor, mount, "fresh", {"runtime": {"system_prompt": "Three."}})
    response = api_editor.get(mount.url("/profiles/fresh/versions"))
    assert response.status_code == 200
    history = response.json()
    assert isinstance(history, list)
    for entry in history:
        assert set(entry) == {"version", "updated_at_ms", "updated_by", "source", "change"}
    assert [(e["version"], e["updated_by"], e["source"], e["change"]) for e in history] == [
        (3, "editor", "api", "updated runtime"),
        (2, "editor", "api", "updated description"),
        (1, "editor", "api", "created"),
    ]
    assert history[0]["updated_at_ms"] >= history[1]["updated_at_ms"] >= history[2]["updated_at_ms"]


def test_a_version_is_returned_as_it_was(mount, fresh, api_editor):
    patch(api_editor, mount, "fresh", {"description": "two", "runtime": {"system_prompt": "Two."}})
    response = api_editor.get(mount.url("/profiles/fresh/versions/1"))
    assert response.status_code == 200
    assert response.headers["ETag"] == '"1"'
    assert response.json() == fresh
    assert api_editor.get(mount.url("/profiles/fresh/versions/2")).json()["description"] == "two"


def test_an_unknown_version_is_404(mount, fresh, api_editor):
    response = api_editor.get(mount.url("/profiles/fresh/versions/7"))
    assert response.status_code == 404
    assert (error_of(response)["code"], error_of(response)["field"]) == ("not_found", "version")


def test_restore_writes_the_old_content_as_a_new_version(mount, fresh, api_editor):
    patch(api_editor, mount, "fresh", {"description": "two", "runtime": {"system_prompt": "Two."}, "extensions": {}})
    response = api_editor.post(mount.url("/profiles/fresh/versions/1/restore"), {}, format="json")
    assert response.status_code == 200
    assert response.headers["ETag"] == '"3"'
    doc = response.json()
    assert doc["metadata"]["version"] == 3
    for part in ("description", "runtime", "policy", "extensions", "display_name"):
        assert doc[part] == fresh[part]
    history = api_editor.get(mount.url("/profiles/fresh/versions")).json()
    assert (history[0]["version"], history[0]["change"]) == (3, "restored from version 1")


def test_restore_of_an_unknown_version_is_404(mount, fresh, api_editor):
    response = api_editor.post(mount.url("/profiles/fresh/versions/9/restore"), {}, format="json")
    assert (response.status_code, error_of(response)["field"]) == (404, "version")


def test_restore_with_a_stale_expected_version_is_409(mount, fresh, api_editor):
    patch(api_editor, mount, "fresh", {"description": "two"})
    response = api_editor.post(mount.url("/profiles/fresh/versions/1/restore"), {"expected_version": 1}, format="json")
    assert (response.status_code, error_of(response)["code"]) == (409, "version_conflict")
    assert db_profile(mount.registry, "fresh").description == "two"


# =========================================================================== resolve


@pytest.fixture
def open_profile(mount, seeded, api_editor) -> dict:
    return create(
        api_editor,
        mount,
        "open",
        runtime={
            "system_prompt": "Base.",
            "tools": ["calculator"],
            "middlewares": [{"name": "suggestions", "id": "followups"}],
            "step_settings_patch": {"ai-chat": {"ai-temperature": 0.2}},
        },
        policy={"allow_overrides": True, "denied_override_keys": ["tools"]},
    )


def test_resolve_returns_the_resolution_without_storing_anything(mount, open_profile, api_reader):
    before = snapshot()
    response = api_reader.post(
        mount.url("/profiles/open/resolve"),
        {
            "request_overrides": {
                "systemPrompt": "Asked.",
                "middlewares": [{"name": "suggestions", "id": "followups", "config": {"max_items": 5}}],
            }
        },
        format="json",
    )
    assert response.status_code == 200
    result = response.json()
    assert set(result) == RESOLUTION_KEYS
    assert (result["registry"], result["profile"], result["runtime_key"], result["profile_version"]) == (
        mount.registry,
        "open",
        "open",
        1,
    )
    assert result["effective_runtime"] == {
        "system_prompt": "Asked.",
        "tools": ["calculator"],
        "middlewares": [{"name": "suggestions", "id": "followups", "config": {"max_items": 5}}],
        "step_settings_patch": {"ai-chat": {"ai-temperature": 0.2}},
    }
    assert result["engine"] == {
        "provider": "offline",
        "model": "offline-v1",
        "settings": {"ai-chat": {"ai-api-type": "offline", "ai-temperature": 0.2}},
    }
    assert set(result["overrides_applied"]) == {"system_prompt", "middlewares"}
    assert FINGERPRINT_RE.match(result["fingerprint"])
    assert snapshot() == before


def test_resolve_without_overrides_is_deterministic_and_differs_with_overrides(mount, open_profile, api_reader):
    url = mount.url("/profiles/open/resolve")
    plain = api_reader.post(url, {}, format="json").json()
    assert api_reader.post(url, {"request_overrides": None}, format="json").json() == plain
    assert plain["overrides_applied"] == {}
    other = api_reader.post(url, {"request_overrides": {"system_prompt": "Other."}}, format="json").json()
    assert other["fingerprint"] != plain["fingerprint"]


def test_resolve_fingerprint_changes_after_a_write(mount, open_profile, api_editor):
    url = mount.url("/profiles/open/resolve")
    first = api_editor.post(url, {}, format="json").json()["fingerprint"]
    patch(api_editor, mount, "open", {"description": "touched"})
    second = api_editor.post(url, {}, format="json").json()
    assert (second["profile_version"], second["fingerprint"] != first) == (2, True)


def test_resolve_refuses_a_denied_override_with_policy_violation(mount, open_profile, api_reader):
    response = api_reader.post(
        mount.url("/profiles/open/resolve"), {"request_overrides": {"tools": [], "system_prompt": "x"}}, format="json"
    )
    assert response.status_code == 403
    assert (error_of(response)["code"], error_of(response)["field"]) == ("policy_violation", "request_overrides.tools")


def test_resolve_of_a_closed_profile_refuses_overrides(mount, seeded, api_reader):
    response = api_reader.post(
        mount.url(f"/profiles/{mount.default_profile}/resolve"),
        {"request_overrides": {"system_prompt": "x"}},
        format="json",
    )
    assert response.status_code == 403
    assert (error_of(response)["code"], error_of(response)["field"]) == (
        "policy_violation",
        "request_overrides.system_prompt",
    )


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"temperature": 1}, "request_overrides.temperature"),
        ({"systemPrompt": "a", "system_prompt": "b"}, "request_overrides.system_prompt"),
        ({"middlewares": [{"name": "nope"}]}, "request_overrides.middlewares[0].name"),
        ("not an object", "request_overrides"),
    ],
)
def test_resolve_rejects_invalid_overrides_with_400(mount, open_profile, api_reader, overrides, field):
    response = api_reader.post(mount.url("/profiles/open/resolve"), {"request_overrides": overrides}, format="json")
    assert response.status_code == 400
    assert (error_of(response)["code"], error_of(response)["field"]) == ("invalid", field)


def test_resolve_of_an_unknown_profile_is_404(mount, seeded, api_reader):
    response = api_reader.post(mount.url("/profiles/ghost/resolve"), {}, format="json")
    assert (response.status_code, error_of(response)["code"]) == (404, "not_found")


# =========================================================================== current profile


def test_the_current_profile_defaults_to_the_registry_default(mount, seeded, api_reader):
    response = api_reader.get(mount.url("/profile"))
    assert response.status_code == 200
    body = response.json()
    assert (body["registry"], body["slug"], body["source"]) == (mount.registry, mount.default_profile, "default")
    assert body["profile"] == get_profile(api_reader, mount, mount.default_profile)
    assert "stale_selection" not in body  # nothing was selected, so nothing went stale
    assert response.cookies["chat_profile"].value == f"{mount.registry}/{mount.default_profile}"


def test_selecting_a_profile_stores_it_and_sets_the_cookie(mount, seeded, api_reader, reader):
    response = api_reader.post(mount.url("/profile"), {"slug": " Analyst "}, format="json")
    assert response.status_code == 200
    body = response.json()
    assert (body["registry"], body["slug"], body["source"]) == (mount.registry, "analyst", "selection")
    assert body["profile"]["slug"] == "analyst"
    cookie = response.cookies["chat_profile"]
    assert cookie.value == f"{mount.registry}/analyst"
    assert cookie["path"] == ("/" if mount is CHAT else "/inventory/")
    assert api_reader.session[f"chat_profile:{mount.name}"] == f"{mount.registry}/analyst"
    assert ProfileSelection.objects.get(user=reader, mount=mount.name).profile_slug == "analyst"
    assert api_reader.get(mount.url("/profile")).json()["source"] == "selection"


def test_selecting_a_profile_of_another_registry(mount, seeded, api_reader):
    body = api_reader.post(
        mount.url("/profile"), {"slug": "default", "registry": mount.other_registry}, format="json"
    ).json()
    assert (body["registry"], body["slug"], body["source"]) == (mount.other_registry, "default", "selection")
    again = api_reader.get(mount.url("/profile")).json()
    assert (again["registry"], again["slug"]) == (mount.other_registry, "default")


@pytest.mark.parametrize("slug", ["bad slug", "", "-x"])
def test_selecting_an_invalid_slug_is_400(mount, seeded, api_reader, slug):
    response = api_reader.post(mount.url("/profile"), {"slug": slug}, format="json")
    assert response.status_code == 400
    assert (error_of(response)["code"], error_of(response)["field"]) == ("invalid", "slug")
    assert not ProfileSelection.objects.exists()


def test_selecting_an_unknown_profile_is_404(mount, seeded, api_reader):
    response = api_reader.post(mount.url("/profile"), {"slug": "ghost"}, format="json")
    assert response.status_code == 404
    assert (error_of(response)["code"], error_of(response)["field"]) == ("not_found", "slug")
    response = api_reader.post(mount.url("/profile"), {"slug": "default", "registry": "ghost"}, format="json")
    assert (response.status_code, error_of(response)["field"]) == (404, "registry")
    assert not ProfileSelection.objects.exists()


def test_a_selection_is_per_user(mount, seeded, api_reader, api_editor):
    api_reader.post(mount.url("/profile"), {"slug": "analyst"}, format="json")
    body = api_editor.get(mount.url("/profile")).json()
    assert (body["slug"], body["source"]) == (mount.default_profile, "default")


def test_a_selection_survives_logging_in_again_from_another_client(mount, seeded, reader):
    first = APIClient()
    assert first.login(username="reader", password=PASSWORD)
    assert first.post(mount.url("/profile"), {"slug": "analyst"}, format="json").status_code == 200
    first.logout()

    second = APIClient()  # a new browser: no cookies, no session
    assert second.login(username="reader", password=PASSWORD)
    body = second.get(mount.url("/profile")).json()
    assert (body["registry"], body["slug"], body["source"]) == (mount.registry, "analyst", "selection")


def test_a_selection_whose_profile_was_deleted_falls_back_to_the_default(mount, seeded, api_reader, api_editor):
    create(api_editor, mount, "short-lived")
    api_reader.post(mount.url("/profile"), {"slug": "short-lived"}, format="json")
    assert api_editor.delete(mount.url("/profiles/short-lived")).status_code == 204
    response = api_reader.get(mount.url("/profile"))
    assert response.status_code == 200
    body = response.json()
    assert (body["registry"], body["slug"], body["source"]) == (mount.registry, mount.default_profile, "default")
    assert body["stale_selection"] == {"registry": mount.registry, "slug": "short-lived"}
    assert response.cookies["chat_profile"].value == f"{mount.registry}/{mount.default_profile}"


def test_the_selection_is_kept_per_mount(seeded, api_reader):
    chosen = api_reader.post(CHAT.url("/profile"), {"slug": "agent"}, format="json")
    assert chosen.json()["slug"] == "agent"
    inventory = api_reader.get(INVENTORY.url("/profile")).json()
    assert (inventory["registry"], inventory["slug"], inventory["source"]) == ("inventory", "inventory", "default")

    api_reader.post(INVENTORY.url("/profile"), {"slug": "analyst"}, format="json")
    chat = api_reader.get(CHAT.url("/profile")).json()
    assert (chat["registry"], chat["slug"], chat["source"]) == ("default", "agent", "selection")
    inventory = api_reader.get(INVENTORY.url("/profile")).json()
    assert (inventory["registry"], inventory["slug"], inventory["source"]) == ("inventory", "analyst", "selection")


# =========================================================================== schemas


def test_the_middleware_schemas_are_sorted_by_name(mount, seeded, api_reader):
    response = api_reader.get(mount.url("/schemas/middlewares"))
    assert response.status_code == 200
    items = response.json()
    names = [item["name"] for item in items]
    assert names == sorted(names)
    assert {"agent_mode", "context_window", "guardrail", "inventory_artifacts", "redact", "suggestions"} <= set(names)
    for item in items:
        assert set(item) == {"name", "version", "display_name", "description", "schema"}
        assert item["schema"]["type"] == "object"
    suggestions = next(item for item in items if item["name"] == "suggestions")
    assert suggestions["schema"]["properties"]["max_items"]["default"] == 3


def test_the_tool_schemas_are_the_mounts_tools(mount, seeded, api_reader):
    response = api_reader.get(mount.url("/schemas/tools"))
    assert response.status_code == 200
    items = response.json()
    names = [item["name"] for item in items]
    assert names == sorted(names)
    assert {"calculator", "current_time"} <= set(names)
    inventory_tools = {n for n in names if n.startswith("inventory_")}
    if mount is INVENTORY:
        assert inventory_tools == {
            "inventory_get_item",
            "inventory_low_stock",
            "inventory_record_sale",
            "inventory_report",
            "inventory_search_items",
            "inventory_update_qty",
        }
    else:
        assert inventory_tools == set()
    for item in items:
        assert set(item) == {"name", "description", "parameters", "writes"}
        assert isinstance(item["writes"], bool)
    assert next(i for i in items if i["name"] == "calculator")["writes"] is False


def test_the_extension_schemas_are_listed_by_key(mount, seeded, api_reader):
    items = api_reader.get(mount.url("/schemas/extensions")).json()
    keys = [item["key"] for item in items]
    assert keys == sorted(keys)
    starter = next(item for item in items if item["key"] == STARTER)
    assert starter["schema"]["properties"]["items"]["items"] == {"type": "string", "maxLength": 500}


def test_the_step_settings_schema_lists_sections_fields_and_secrets(mount, seeded, api_reader):
    body = api_reader.get(mount.url("/schemas/step-settings")).json()
    sections = {section["name"]: {f["name"]: f for f in section["fields"]} for section in body["sections"]}
    assert {"ai-chat", "openai-chat"} <= set(sections)
    temperature = sections["ai-chat"]["ai-temperature"]
    assert (temperature["type"], temperature["schema"]["minimum"], temperature["schema"]["maximum"]) == ("number", 0, 2)
    assert sections["ai-chat"]["ai-api-type"]["default"] == "offline"
    assert sections["openai-chat"]["openai-api-key"]["secret"] is True
    assert sections["ai-chat"]["ai-engine"]["secret"] is False


# =========================================================================== token auth, CSRF, OpenAPI


def test_a_token_is_issued_for_good_credentials_and_authenticates(reader, seeded):
    client = APIClient()
    response = client.post("/api/auth/token", {"username": "reader", "password": PASSWORD}, format="json")
    assert response.status_code == 200
    token = response.json()["token"]
    assert len(token) == 40
    client.credentials(HTTP_AUTHORIZATION=f"Token {token}")
    for mount in (CHAT, INVENTORY):
        response = client.get(mount.url("/profile"))
        assert response.status_code == 200
        assert response.json()["registry"] == mount.registry


@pytest.mark.parametrize(
    "body", [{"username": "reader", "password": "wrong"}, {"username": "nobody", "password": PASSWORD}, {}]
)
def test_bad_credentials_for_a_token_are_400_invalid(reader, body):
    response = APIClient().post("/api/auth/token", body, format="json")
    assert response.status_code == 400
    assert error_of(response)["code"] == "invalid"
    assert "token" not in response.json()


def test_a_session_write_needs_the_csrf_token(seeded, editor):
    client = APIClient(enforce_csrf_checks=True)
    assert client.login(username="editor", password=PASSWORD)

    refused = client.post(CHAT.url("/profiles"), {"slug": "csrf-less"}, format="json")
    assert refused.status_code == 403
    assert error_of(refused)["code"] == "permission_denied"
    assert "CSRF" in error_of(refused)["message"]
    assert not Profile.objects.filter(slug="csrf-less").exists()

    page = client.get("/admin/login/")  # a page that renders a form sets the CSRF cookie
    assert page.status_code == 200
    token = page.cookies["csrftoken"].value
    accepted = client.post(CHAT.url("/profiles"), {"slug": "with-csrf"}, format="json", HTTP_X_CSRFTOKEN=token)
    assert accepted.status_code == 201
    assert Profile.objects.filter(registry__slug="default", slug="with-csrf").exists()

    # safe methods never need it
    assert client.get(CHAT.url("/profiles")).status_code == 200


def test_a_token_write_does_not_need_csrf(seeded, editor):
    from rest_framework.authtoken.models import Token

    client = APIClient(enforce_csrf_checks=True)
    client.credentials(HTTP_AUTHORIZATION=f"Token {Token.objects.create(user=editor).key}")
    assert client.post(INVENTORY.url("/profiles"), {"slug": "by-token"}, format="json").status_code == 201


def test_the_openapi_schema_describes_both_mounts(api_anon, api_reader):
    assert api_anon.get("/api/schema/?format=json").status_code == 401  # like every other route
    response = api_reader.get("/api/schema/?format=json")
    assert response.status_code == 200
    document = json.loads(response.content)
    assert document["openapi"].startswith("3.")
    paths = set(document["paths"])
    for prefix in ("/api/chat", "/inventory/api/chat"):
        assert f"{prefix}/profiles" in paths
        assert f"{prefix}/profiles/{{slug}}" in paths
        assert f"{prefix}/profile" in paths


def test_the_current_profile_honours_the_registry_parameter(mount, seeded, api_reader):
    assert api_reader.get(mount.url("/profile?registry=nope")).json()["error"] == {
        "code": "not_found",
        "message": "registry 'nope' not found",
        "field": "registry",
    }
    assert api_reader.get(mount.url("/profile?registry=Bad Reg")).json()["error"]["field"] == "registry"
    other = api_reader.get(mount.url(f"/profile?registry={mount.other_registry}")).json()
    assert (other["registry"], other["source"]) == (mount.other_registry, "default")


def test_the_profile_cookie_is_sent_unquoted(mount, seeded, api_reader):
    response = api_reader.post(mount.url("/profile"), {"slug": "analyst"}, format="json")
    header = response.cookies["chat_profile"].OutputString()
    assert header.startswith(f"chat_profile={mount.registry}/analyst;"), header
    assert f"Path={mount.prefix.removesuffix('api/chat')}" in header  # each mount keeps its own cookie


def test_token_clients_get_no_session_from_the_current_profile(seeded, token_client):
    response = token_client.get("/api/chat/profile")
    assert response.status_code == 200
    assert "sessionid" not in response.cookies


def test_a_blank_display_name_is_a_field_error_and_writes_no_version(mount, fresh, api_editor):
    response = patch(api_editor, mount, "fresh", {"display_name": "   "})
    assert response.status_code == 400
    assert response.json()["error"]["field"] == "display_name"
    assert get_profile(api_editor, mount, "fresh")["metadata"]["version"] == 1
