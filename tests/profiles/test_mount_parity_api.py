"""Mount parity: the same request sequence through the chat and the inventory mount gives the same
responses, apart from the registry (and the URL prefix that names the mount).

The reference systems broke here (one app mounted full CRUD, the other only list/select), so the
whole profile API is replayed through both mounts, starting from identical empty registries.
"""

from __future__ import annotations

import re
from typing import Any

import pytest
from rest_framework.test import APIClient

from profiles import services
from tests.helpers import expected_fingerprint

from .support import MOUNTS, MountCase

pytestmark = pytest.mark.django_db

FINGERPRINT_RE = re.compile(r"^sha256:[0-9a-f]{64}$")
TIMESTAMPS = {"created_at_ms", "updated_at_ms"}


def normalise(value: Any, mount: MountCase) -> Any:
    """Replace what legitimately differs between mounts: the registry slug, the prefix, clocks."""
    if isinstance(value, dict):
        out = {}
        for key, item in value.items():
            if key in TIMESTAMPS:
                assert isinstance(item, int)
                out[key] = "<ms>"
            elif key == "fingerprint":
                assert FINGERPRINT_RE.match(item)
                out[key] = "<fingerprint>"
            elif key == "registry" and item == mount.registry:
                out[key] = "<registry>"
            else:
                out[key] = normalise(item, mount)
        return out
    if isinstance(value, list):
        return [normalise(item, mount) for item in value]
    if isinstance(value, str):
        return (
            value.replace(f"http://testserver{mount.prefix}", "<prefix>")
            .replace(f"'{mount.registry}'", "'<registry>'")
            .replace(f"{mount.registry}/", "<registry>/")
        )
    return value


def record(response, mount: MountCase) -> dict[str, Any]:
    entry: dict[str, Any] = {"status": response.status_code}
    if response.content:
        entry["body"] = normalise(response.json(), mount)
    for header in ("ETag", "Location", "WWW-Authenticate"):
        if header in response.headers:
            entry[header] = normalise(response.headers[header], mount)
    if "chat_profile" in response.cookies:
        entry["cookie"] = normalise(response.cookies["chat_profile"].value, mount)
    return entry


def replay(
    mount: MountCase, editor: APIClient, reader: APIClient, anon: APIClient, raw: dict[str, Any] | None = None
) -> list[tuple[str, dict]]:
    """The whole profile API, in a fixed order, through one mount (`raw`: filled with the bodies as sent)."""
    url = mount.url
    steps: list[tuple[str, Any]] = [
        ("empty list", lambda: editor.get(url("/profiles"))),
        ("current without any profile", lambda: reader.get(url("/profile"))),
        (
            "create alpha",
            lambda: editor.post(
                url("/profiles"),
                {
                    "slug": " Alpha ",
                    "display_name": "Alpha",
                    "runtime": {
                        "system_prompt": "You are alpha.",
                        "middlewares": [{"name": "suggestions", "id": "followups"}, {"name": "context_window"}],
                        "tools": ["calculator"],
                        "step_settings_patch": {"ai-chat": {"ai-temperature": 0.3}},
                    },
                    "policy": {"allow_overrides": True, "denied_override_keys": ["tools"]},
                    "extensions": {"webchat.starter_suggestions@v1": {"items": ["Hi"]}, "acme.keep@v1": {"b": 1}},
                },
                format="json",
            ),
        ),
        ("create beta", lambda: editor.post(url("/profiles"), {"slug": "beta", "description": "B"}, format="json")),
        ("create duplicate", lambda: editor.post(url("/profiles"), {"slug": "ALPHA"}, format="json")),
        (
            "create invalid",
            lambda: editor.post(url("/profiles"), {"slug": "x", "runtime": {"tools": ["nope"]}}, format="json"),
        ),
        ("create as reader", lambda: reader.post(url("/profiles"), {"slug": "gamma"}, format="json")),
        ("list as anonymous", lambda: anon.get(url("/profiles"))),
        ("list", lambda: reader.get(url("/profiles"))),
        ("get alpha", lambda: reader.get(url("/profiles/alpha"))),
        ("get unknown", lambda: reader.get(url("/profiles/ghost"))),
        ("get unknown registry", lambda: reader.get(url("/profiles/alpha?registry=ghost"))),
        (
            "patch alpha",
            lambda: editor.patch(url("/profiles/alpha"), {"description": "two", "expected_version": 1}, format="json"),
        ),
        (
            "patch stale",
            lambda: editor.patch(url("/profiles/alpha"), {"description": "x", "expected_version": 1}, format="json"),
        ),
        (
            "patch if-match",
            lambda: editor.patch(url("/profiles/alpha"), {"description": "x"}, format="json", HTTP_IF_MATCH='"1"'),
        ),
        (
            "patch invalid",
            lambda: editor.patch(
                url("/profiles/alpha"),
                {"runtime": {"middlewares": [{"name": "context_window", "config": {"max_turns": 0}}]}},
                format="json",
            ),
        ),
        (
            "patch runtime",
            lambda: editor.patch(url("/profiles/alpha"), {"runtime": {"system_prompt": "Three."}}, format="json"),
        ),
        ("versions", lambda: reader.get(url("/profiles/alpha/versions"))),
        ("version 1", lambda: reader.get(url("/profiles/alpha/versions/1"))),
        ("restore 1", lambda: editor.post(url("/profiles/alpha/versions/1/restore"), {}, format="json")),
        (
            "resolve",
            lambda: reader.post(
                url("/profiles/alpha/resolve"),
                {
                    "request_overrides": {
                        "systemPrompt": "Asked.",
                        "middlewares": [{"name": "suggestions", "id": "followups", "config": {"max_items": 1}}],
                    }
                },
                format="json",
            ),
        ),
        (
            "resolve denied",
            lambda: reader.post(url("/profiles/alpha/resolve"), {"request_overrides": {"tools": []}}, format="json"),
        ),
        (
            "resolve closed",
            lambda: reader.post(
                url("/profiles/beta/resolve"), {"request_overrides": {"system_prompt": "x"}}, format="json"
            ),
        ),
        ("current default", lambda: reader.get(url("/profile"))),
        ("select beta", lambda: reader.post(url("/profile"), {"slug": "Beta"}, format="json")),
        ("select unknown", lambda: reader.post(url("/profile"), {"slug": "ghost"}, format="json")),
        ("select invalid", lambda: reader.post(url("/profile"), {"slug": "bad slug"}, format="json")),
        ("current selection", lambda: reader.get(url("/profile"))),
        ("delete default", lambda: editor.delete(url("/profiles/alpha"))),
        (
            "make beta default stale",
            lambda: editor.post(url("/profiles/beta/default"), {"expected_version": 1}, format="json"),
        ),
        ("make beta default", lambda: editor.post(url("/profiles/beta/default"), {}, format="json")),
        ("select alpha", lambda: reader.post(url("/profile"), {"slug": "alpha"}, format="json")),
        ("delete alpha stale", lambda: editor.delete(url("/profiles/alpha?expected_version=1"))),
        ("delete alpha", lambda: editor.delete(url("/profiles/alpha"))),
        ("current falls back", lambda: reader.get(url("/profile"))),
        ("delete beta as reader", lambda: reader.delete(url("/profiles/beta"))),
        (
            "create gamma",
            lambda: editor.post(url("/profiles"), {"slug": "gamma", "policy": {"read_only": True}}, format="json"),
        ),
        ("delete default beta", lambda: editor.delete(url("/profiles/beta"))),
        ("patch read-only", lambda: editor.patch(url("/profiles/gamma"), {"description": "x"}, format="json")),
        ("delete read-only", lambda: editor.delete(url("/profiles/gamma"))),
        ("make read-only default", lambda: editor.post(url("/profiles/gamma/default"), {}, format="json")),
        ("final list", lambda: reader.get(url("/profiles"))),
        ("schemas middlewares", lambda: reader.get(url("/schemas/middlewares"))),
        ("schemas extensions", lambda: reader.get(url("/schemas/extensions"))),
        ("schemas step-settings", lambda: reader.get(url("/schemas/step-settings"))),
    ]
    transcript = []
    for name, call in steps:
        response = call()
        transcript.append((name, record(response, mount)))
        if raw is not None and response.content:
            raw[name] = response.json()
    registry = next(r for r in reader.get(url("/registries")).json() if r["slug"] == mount.registry)
    transcript.append(("registry summary", {**registry, "slug": "<registry>"}))
    return transcript


@pytest.fixture
def clients(db) -> tuple[APIClient, APIClient, APIClient]:
    from .factories import EditorFactory, UserFactory

    editor, reader = APIClient(), APIClient()
    editor.force_authenticate(user=EditorFactory(username="parity-editor"))
    reader.force_authenticate(user=UserFactory(username="parity-reader"))
    return editor, reader, APIClient()


def test_both_mounts_answer_the_same_sequence_identically(clients):
    for mount in MOUNTS:
        services.registry_create(slug=mount.registry, display_name="Parity", description="Parity registry")
    raws: list[dict[str, Any]] = [{}, {}]
    chat, inventory = (replay(mount, *clients, raw=raw) for mount, raw in zip(MOUNTS, raws, strict=True))

    assert [name for name, _ in chat] == [name for name, _ in inventory]
    for (name, left), (_, right) in zip(chat, inventory, strict=True):
        assert left == right, name

    # ... and the sequence really exercised every outcome (so equal transcripts mean something)
    statuses = {name: entry.get("status") for name, entry in chat}
    assert statuses == {
        "empty list": 200,
        "current without any profile": 400,
        "create alpha": 201,
        "create beta": 201,
        "create duplicate": 409,
        "create invalid": 400,
        "create as reader": 403,
        "list as anonymous": 401,
        "list": 200,
        "get alpha": 200,
        "get unknown": 404,
        "get unknown registry": 404,
        "patch alpha": 200,
        "patch stale": 409,
        "patch if-match": 412,
        "patch invalid": 400,
        "patch runtime": 200,
        "versions": 200,
        "version 1": 200,
        "restore 1": 200,
        "resolve": 200,
        "resolve denied": 403,
        "resolve closed": 403,
        "current default": 200,
        "select beta": 200,
        "select unknown": 404,
        "select invalid": 400,
        "current selection": 200,
        "delete default": 409,
        "make beta default stale": 409,
        "make beta default": 200,
        "select alpha": 200,
        "delete alpha stale": 409,
        "delete alpha": 204,
        "current falls back": 200,
        "delete beta as reader": 403,
        "create gamma": 201,
        "delete default beta": 409,
        "patch read-only": 403,
        "delete read-only": 403,
        "make read-only default": 200,
        "final list": 200,
        "schemas middlewares": 200,
        "schemas extensions": 200,
        "schemas step-settings": 200,
        "registry summary": None,
    }
    entries = dict(chat)
    assert entries["create alpha"]["Location"] == "<prefix>/profiles/alpha"
    assert entries["create alpha"]["body"]["registry"] == "<registry>"
    assert entries["restore 1"]["ETag"] == '"4"'
    assert entries["select beta"]["cookie"] == "<registry>/beta"
    assert (entries["current selection"]["body"]["slug"], entries["current selection"]["body"]["source"]) == (
        "beta",
        "selection",
    )
    fallback = entries["current falls back"]["body"]
    assert (fallback["registry"], fallback["slug"], fallback["source"]) == ("<registry>", "beta", "default")
    assert [p["slug"] for p in entries["final list"]["body"]] == ["beta", "gamma"]
    assert entries["registry summary"]["default_profile_slug"] == "gamma"

    # The fingerprints were normalised away above: each is the documented sha256 of its own inputs (the
    # request's overrides and the profile's engine settings included), and they differ only by registry.
    resolved = [raw["resolve"] for raw in raws]
    for mount, body in zip(MOUNTS, resolved, strict=True):
        assert (body["registry"], body["profile"], body["profile_version"]) == (mount.registry, "alpha", 4)
        assert body["effective_runtime"]["system_prompt"] == "Asked."
        assert body["engine"]["settings"]["ai-chat"]["ai-temperature"] == 0.3
        assert body["fingerprint"] == expected_fingerprint(
            registry=mount.registry,
            profile="alpha",
            profile_version=4,
            runtime=body["effective_runtime"],
            engine=body["engine"]["settings"],
        )
    chat_resolved, inventory_resolved = resolved
    assert chat_resolved["fingerprint"] != inventory_resolved["fingerprint"]
    assert inventory_resolved["fingerprint"] == expected_fingerprint(
        registry=MOUNTS[1].registry,
        profile=chat_resolved["profile"],
        profile_version=chat_resolved["profile_version"],
        runtime=chat_resolved["effective_runtime"],
        engine=chat_resolved["engine"]["settings"],
    )
