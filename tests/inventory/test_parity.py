"""Parity of the two mounts of the shared platform.

The chat app mounts the profile API and the chat runtime at the site root (registry `default`), the
inventory app under `/inventory/` (registry `inventory`). The SAME sequence of requests runs through
both; after normalising what legitimately differs (the registry name, the URL prefix, timestamps,
generated ids and the fingerprint, which hashes the registry) the responses must be identical, and
the fingerprints must be sha256 of identical inputs plus each mount's own registry.
"""

from __future__ import annotations

import json
import re
import uuid
from typing import Any

import pytest
from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Permission
from django.urls import URLPattern, URLResolver, get_resolver, reverse
from rest_framework.test import APIClient

from tests.helpers import expected_fingerprint, import_seed

MOUNTS = {"chat": ("", "default"), "inventory": ("/inventory", "inventory")}  # mount -> (URL prefix, registry)
EDITOR_PERMS = ["profiles.add_profile", "profiles.change_profile", "profiles.delete_profile"]
UUID_RE = re.compile(r"[0-9a-f]{8}-?[0-9a-f]{4}-?[0-9a-f]{4}-?[0-9a-f]{4}-?[0-9a-f]{12}", re.I)
TIME_KEYS = {"ts_ms", "server_time_ms", "duration_ms"}
ID_KEYS = {"conv_id", "turn_id", "id"}

PARITY_RUNTIME = {
    "system_prompt": "You are a parity assistant.",
    "middlewares": [{"name": "suggestions", "id": "f"}],
    "tools": ["calculator"],
}


@pytest.fixture
def editor(transactional_db):
    """Committed rows: the chat turn runs through channels' database_sync_to_async, which closes
    connections around each call and so cannot run inside a test transaction."""
    user = get_user_model().objects.create_user(username="parity-editor", password="pw")
    for perm in EDITOR_PERMS:
        app_label, codename = perm.split(".")
        user.user_permissions.add(Permission.objects.get(content_type__app_label=app_label, codename=codename))
    return get_user_model().objects.get(pk=user.pk)


@pytest.fixture
def client(editor) -> APIClient:
    import_seed()
    api = APIClient()
    api.force_authenticate(user=editor)
    return api


# --------------------------------------------------------------------------- fingerprint, written out


# --------------------------------------------------------------------------- normalisation


def normalise(value: Any, *, registry: str, prefix: str, key: str = "") -> Any:
    """Replace what legitimately differs between mounts by placeholders."""
    if isinstance(value, dict):
        return {k: normalise(v, registry=registry, prefix=prefix, key=k) for k, v in value.items()}
    if isinstance(value, list):
        return [normalise(v, registry=registry, prefix=prefix, key=key) for v in value]
    if key == "registry" and value == registry:
        return "<registry>"
    if key == "mount" and value in MOUNTS:
        return "<mount>"
    if key == "fingerprint" and isinstance(value, str) and value:
        return "<fingerprint>"
    if (key.endswith("_at_ms") or key in TIME_KEYS) and isinstance(value, int):
        return "<ms>"
    if isinstance(value, str):
        value = re.sub(rf"\bregistry '{re.escape(registry)}'", "registry '<registry>'", value)
        value = UUID_RE.sub("<uuid>", value)
        if prefix and value.startswith(f"http://testserver{prefix}/"):
            value = "http://testserver/" + value[len(f"http://testserver{prefix}/") :]
    return value


class Recorder:
    """Runs requests against one mount and keeps (step, status, selected headers, body) for comparison."""

    def __init__(self, client: APIClient, mount: str) -> None:
        self.client = client
        self.mount = mount
        self.prefix, self.registry = MOUNTS[mount]
        self.steps: list[tuple[str, int, dict[str, str], Any]] = []
        self.raw: dict[str, Any] = {}
        self.responses: dict[str, Any] = {}

    def url(self, path: str) -> str:
        return f"{self.prefix}/api/chat{path}"

    def call(self, step: str, method: str, path: str, body: Any = None, *, expect: int, **extra: Any) -> Any:
        response = getattr(self.client, method)(self.url(path), body, format="json", **extra)
        data = response.json() if response.content else None
        assert response.status_code == expect, (self.mount, step, response.status_code, data)
        headers = {h: response.headers[h] for h in ("ETag", "Location") if h in response.headers}
        self.raw[step] = data
        self.responses[step] = response
        self.steps.append(
            (
                step,
                response.status_code,
                normalise(headers, registry=self.registry, prefix=self.prefix),
                normalise(data, registry=self.registry, prefix=self.prefix),
            )
        )
        return data

    def error(self, step: str) -> dict[str, Any]:
        return self.raw[step]["error"]


def run_sequence(client: APIClient, mount: str) -> Recorder:
    r = Recorder(client, mount)
    # --- profile CRUD
    created = r.call(
        "create",
        "post",
        "/profiles",
        {"slug": " Parity ", "display_name": "Parity", "description": "first", "runtime": PARITY_RUNTIME},
        expect=201,
    )
    assert created["slug"] == "parity" and created["metadata"]["version"] == 1
    r.call("create-b", "post", "/profiles", {"slug": "parity-b", "display_name": "Parity B"}, expect=201)
    r.call("get", "get", "/profiles/parity", expect=200)
    listed = r.call("list", "get", "/profiles", expect=200)
    r.steps[-1] = (
        "list",
        200,
        {},
        normalise([p for p in listed if p["slug"].startswith("parity")], registry=r.registry, prefix=r.prefix),
    )
    patched = r.call(
        "patch",
        "patch",
        "/profiles/parity",
        {"expected_version": 1, "description": "second", "runtime": {**PARITY_RUNTIME, "system_prompt": "Changed."}},
        expect=200,
    )
    assert patched["metadata"]["version"] == 2
    r.call("stale-patch", "patch", "/profiles/parity", {"expected_version": 1, "description": "lost"}, expect=409)
    assert r.error("stale-patch")["code"] == "version_conflict"
    r.call("stale-if-match", "patch", "/profiles/parity", {"description": "lost"}, expect=412, HTTP_IF_MATCH='"1"')
    versions = r.call("versions", "get", "/profiles/parity/versions", expect=200)
    assert [v["version"] for v in versions] == [2, 1]
    r.call("version-1", "get", "/profiles/parity/versions/1", expect=200)
    restored = r.call("restore", "post", "/profiles/parity/versions/1/restore", {}, expect=200)
    assert restored["metadata"]["version"] == 3 and restored["description"] == "first"
    assert restored["runtime"]["system_prompt"] == PARITY_RUNTIME["system_prompt"]
    # --- default
    r.call("default-b", "post", "/profiles/parity-b/default", {}, expect=200)
    r.call("default", "post", "/profiles/parity/default", {}, expect=200)
    assert r.raw["default"]["is_default"] is True
    r.call("registries", "get", "/registries", expect=200)
    (own,) = [g for g in r.raw["registries"] if g["slug"] == r.registry]
    # The registry's own slug, display name and description differ by design; its state must not.
    r.steps[-1] = ("registries", 200, {}, {k: own[k] for k in ("default_profile_slug", "profile_count", "version")})
    # --- current profile
    r.call("select", "post", "/profile", {"slug": "parity"}, expect=200)
    cookie = r.responses["select"].cookies["chat_profile"]
    assert (cookie.value, cookie["path"]) == (f"{r.registry}/parity", f"{r.prefix}/")
    current = r.call("current", "get", "/profile", expect=200)
    assert current["source"] == "selection" and current["slug"] == "parity"
    assert current["registry"] == r.registry
    # --- resolve (dry run)
    r.call("resolve", "post", "/profiles/parity/resolve", {}, expect=200)
    # --- the same invalid inputs, the same errors
    r.call("unknown-registry", "get", "/profiles?registry=nope", expect=404)
    assert r.error("unknown-registry")["code"] == "not_found"
    assert r.error("unknown-registry")["field"] == "registry"
    r.call("unknown-registry-get", "get", "/profiles/parity?registry=nope", expect=404)
    r.call("invalid-slug", "post", "/profiles", {"slug": "bad slug"}, expect=400)
    assert r.error("invalid-slug")["code"] == "invalid" and r.error("invalid-slug")["field"] == "slug"
    r.call("unknown-profile", "get", "/profiles/ghost", expect=404)
    assert r.error("unknown-profile")["code"] == "not_found"
    r.call("select-unknown", "post", "/profile", {"slug": "ghost"}, expect=404)
    r.call("select-invalid", "post", "/profile", {"slug": "bad slug"}, expect=400)
    r.call("resolve-unknown", "post", "/profiles/ghost/resolve", {}, expect=404)
    # --- one chat turn on the selected profile
    conversation = r.call("conversation", "post", "/conversations", {}, expect=201)
    conv_id = conversation["conv_id"]
    turn = r.call(
        "turn", "post", f"/conversations/{conv_id}/messages?wait=1", {"prompt": "What is 17.5% of 2,340?"}, expect=200
    )
    assert turn["status"] == "completed", turn
    r.call("conversation-detail", "get", f"/conversations/{conv_id}", expect=200)
    r.call("events", "get", f"/conversations/{conv_id}/events", expect=200)
    # --- a PATCH is a JSON Merge Patch: the prompt changes, the middlewares and tools stay
    merged = r.call("merge-patch", "patch", "/profiles/parity", {"runtime": {"system_prompt": "Merged."}}, expect=200)
    assert merged["runtime"] == {**restored["runtime"], "system_prompt": "Merged."}
    r.call("merge-null", "patch", "/profiles/parity", {"display_name": None}, expect=400)
    assert r.error("merge-null")["field"] == "display_name"
    registry = r.call("registry", "get", f"/registries/{r.registry}", expect=200)
    kept = ("default_profile_slug", "profile_count", "version", "protected_labels", "serve_label")
    r.steps[-1] = ("registry", 200, r.steps[-1][2], {k: registry[k] for k in kept})
    # --- delete
    r.call("delete-default", "delete", "/profiles/parity", expect=409)
    r.call("delete-b", "delete", "/profiles/parity-b", expect=204)
    r.call("get-deleted", "get", "/profiles/parity-b", expect=404)
    return r


def test_the_same_sequence_gives_the_same_responses_through_both_mounts(client):
    chat = run_sequence(client, "chat")
    inventory = run_sequence(client, "inventory")
    assert [s[0] for s in chat.steps] == [s[0] for s in inventory.steps]
    for chat_step, inventory_step in zip(chat.steps, inventory.steps, strict=True):
        assert chat_step == inventory_step, chat_step[0]


def test_runtime_markers_and_fingerprints_agree_across_mounts(client):
    results = {mount: run_sequence(client, mount) for mount in MOUNTS}
    chat, inventory = results["chat"], results["inventory"]

    for r in (chat, inventory):
        resolution, turn = r.raw["resolve"], r.raw["turn"]
        assert resolution["registry"] == r.registry
        assert turn["registry"] == r.registry
        assert turn["runtime_key"] == resolution["runtime_key"] == "parity"
        assert turn["profile_version"] == resolution["profile_version"] == 3
        # The fingerprint is sha256 of its documented inputs, recomputed here from the dry run's parts.
        engine = resolution["engine"]["settings"]
        # Engine settings really are an input: the layered, non-secret settings of this profile.
        assert engine["ai-chat"]["ai-api-type"] == settings.CHAT_DEFAULT_API_TYPE
        assert "openai-api-key" not in json.dumps(engine)
        expected = expected_fingerprint(
            registry=r.registry,
            profile="parity",
            profile_version=3,
            runtime=resolution["effective_runtime"],
            engine=engine,
        )
        assert resolution["fingerprint"] == expected
        assert turn["fingerprint"] == expected
        assert r.raw["conversation-detail"]["current_fingerprint"] == turn["fingerprint"]
        assert [t["name"] for t in turn["tool_calls"]] == ["calculator"]

    # The fingerprint INPUTS are identical; only the registry differs.
    for key in ("profile", "profile_version", "runtime_key", "effective_runtime", "engine", "overrides_applied"):
        assert chat.raw["resolve"][key] == inventory.raw["resolve"][key], key
    assert chat.raw["resolve"]["fingerprint"] != inventory.raw["resolve"]["fingerprint"]
    # ... so the chat mount's inputs under the inventory registry give the inventory mount's fingerprint.
    swapped = expected_fingerprint(
        registry=inventory.registry,
        profile=chat.raw["resolve"]["profile"],
        profile_version=chat.raw["resolve"]["profile_version"],
        runtime=chat.raw["resolve"]["effective_runtime"],
        engine=chat.raw["resolve"]["engine"]["settings"],
    )
    assert swapped == inventory.raw["turn"]["fingerprint"]
    for key in ("runtime_key", "profile_version", "engine", "middlewares", "tools", "overrides_applied", "text"):
        assert chat.raw["turn"][key] == inventory.raw["turn"][key], key


# --------------------------------------------------------------------------- routes


def _patterns(namespace: str) -> dict[str, URLPattern]:
    _, resolver = get_resolver().namespace_dict[namespace]
    found: dict[str, URLPattern] = {}

    def walk(patterns: list[Any]) -> None:
        for pattern in patterns:
            if isinstance(pattern, URLResolver):
                walk(pattern.url_patterns)
            else:
                assert pattern.name, f"unnamed route {pattern.pattern} in {namespace}"
                assert pattern.name not in found, f"route {pattern.name} twice in {namespace}"
                found[pattern.name] = pattern

    walk(resolver.url_patterns)
    return found


def _sample_kwargs(pattern: URLPattern) -> dict[str, Any]:
    samples = {
        "slug": "parity",
        "version": 1,
        "conv_id": uuid.UUID(int=1),
        "model": "parity",
        "turn_id": uuid.UUID(int=2),
        "name": "staging",
        "request_id": 3,
        "webhook_id": 4,
        "response_id": "resp_" + "0" * 32,
        "run_id": 5,
    }
    return {name: samples[name] for name in pattern.pattern.converters}


def test_both_mounts_expose_the_same_routes_from_the_same_code():
    chat, inventory = _patterns("chat"), _patterns("inventory")
    assert set(chat) == set(inventory)
    assert {
        "page",
        "registry-list",
        "profile-list",
        "profile-detail",
        "profile-default",
        "profile-versions",
        "profile-version-detail",
        "profile-restore",
        "profile-resolve",
        "current-profile",
        "schema-middlewares",
        "schema-tools",
        "schema-extensions",
        "schema-step-settings",
        "conversation-list",
        "conversation-detail",
        "conversation-messages",
        "conversation-events",
        "openai-models",
        "openai-model",
        "openai-chat-completions",
        "openai-responses",
        "openai-response",
        "label-rollout",
    } <= set(chat)
    for name in sorted(chat):
        a, b = chat[name], inventory[name]
        assert str(a.pattern) == str(b.pattern), name
        # Written once: the same view (class and actions), configured with a different mount.
        view_a, view_b = a.callback, b.callback
        if hasattr(view_a, "cls"):
            assert view_a.cls is view_b.cls, name
            actions_a, actions_b = (dict(getattr(v, "actions", {})) for v in (view_a, view_b))
            actions_a.pop("head", None), actions_b.pop("head", None)  # DRF adds it on first dispatch
            assert actions_a == actions_b, name
            mount_a, mount_b = view_a.initkwargs["mount"], view_b.initkwargs["mount"]
        else:
            assert view_a is view_b, name
            mount_a, mount_b = a.default_args["mount"], b.default_args["mount"]
        assert (mount_a.name, mount_b.name) == ("chat", "inventory"), name
        kwargs = _sample_kwargs(a)
        assert reverse(f"inventory:{name}", kwargs=kwargs) == "/inventory" + reverse(f"chat:{name}", kwargs=kwargs)
