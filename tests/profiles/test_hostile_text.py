"""Text that JSON allows but the database or the JSON encoder refuses: lone UTF-16 surrogates, NUL,
NaN/Infinity. Every write path answers a 400 naming the field and writes nothing; API URLs answer
JSON errors (never Django's HTML page), 500s included.

Runs on SQLite and, with DATABASE_URL pointing at PostgreSQL, on PostgreSQL (where NUL is refused
by text and jsonb columns).
"""

from __future__ import annotations

import json
import math
import re

import pytest
from django.test import RequestFactory
from rest_framework.test import APIClient

from profiles import selectors, services
from profiles.api.parsers import SafeJSONParser
from profiles.errors import InvalidInput
from profiles.models import Profile, ProfileRevision, Registry
from profiles.services import profiles as profile_services
from profiles.yamlio import ImportFailed, import_text

from .support import error_of

pytestmark = pytest.mark.django_db


def snapshot() -> list[tuple]:
    """Everything a refused write must leave untouched."""
    return [
        *Registry.objects.order_by("slug").values_list("slug", "version", "default_profile_id"),
        *Profile.objects.order_by("pk").values_list("pk", "slug", "version", "description", "runtime", "extensions"),
        ("revisions", ProfileRevision.objects.count()),
    ]


def send(client: APIClient, method: str, url: str, raw: str):
    """Raw JSON text: APIClient's own encoder could not even produce NaN or 1e999."""
    return client.generic(method, url, raw, content_type="application/json")


@pytest.fixture
def target(mount, seeded, api_editor) -> str:
    response = api_editor.post(
        mount.url("/profiles"),
        {"slug": "target", "runtime": {"system_prompt": "Base."}, "policy": {"allow_overrides": True}},
        format="json",
    )
    assert response.status_code == 201, response.content
    return mount.url("/profiles/target")


# JSON bodies as sent on the wire (`\\ud800` is the JSON escape of a lone surrogate).
UNSTORABLE = [
    ('{"runtime": {"system_prompt": "\\ud800"}}', "runtime.system_prompt"),
    ('{"runtime": {"system_prompt": "ok \\udfff ok"}}', "runtime.system_prompt"),
    ('{"runtime": {"system_prompt": "a\\u0000b"}}', "runtime.system_prompt"),
    ('{"runtime": {"tools": ["calculator", "\\ud83d"]}}', "runtime.tools[1]"),
    ('{"extensions": {"acme.notes@v1": {"text": "\\u0000"}}}', "extensions[acme.notes@v1].text"),
    ('{"extensions": {"acme.notes@v1": {"list": [1, "\\udc00"]}}}', "extensions[acme.notes@v1].list[1]"),
    # 1e999 parses as inf: DRF's JSONField refuses it first, on the whole part.
    ('{"extensions": {"acme.notes@v1": {"big": 1e999}}}', "extensions"),
    ('{"runtime": {"step_settings_patch": {"ai-chat": {"ai-temperature": -1e999}}}}', "runtime"),
    ('{"extensions": {"acme.notes@v1": {"\\ud800": 1}}}', "extensions[acme.notes@v1][\\ud800]"),
    ('{"extensions": {"acme.notes@v1": {"a\\u0000": 1}}}', "extensions[acme.notes@v1][a\\x00]"),
    ('{"display_name": "\\ud800"}', "display_name"),
    ('{"description": "x\\udbff"}', "description"),
]


@pytest.mark.parametrize(("raw", "field"), UNSTORABLE, ids=[f for _, f in UNSTORABLE])
def test_unstorable_text_in_a_patch_is_a_400_with_its_path_and_writes_nothing(mount, target, api_editor, raw, field):
    before = snapshot()
    response = send(api_editor, "PATCH", target, raw)
    assert response.status_code == 400, response.content
    error = error_of(response)
    assert (error["code"], error["field"]) == ("invalid", field)
    assert snapshot() == before
    # The profile is still readable, listable and resolvable by everyone.
    assert api_editor.get(target).status_code == 200
    assert api_editor.get(mount.url("/profiles")).status_code == 200
    assert api_editor.post(f"{target}/resolve", {}, format="json").status_code == 200


@pytest.mark.parametrize(("raw", "field"), UNSTORABLE, ids=[f for _, f in UNSTORABLE])
def test_unstorable_text_in_a_create_is_a_400_with_its_path_and_writes_nothing(mount, seeded, api_editor, raw, field):
    body = json.loads(raw)  # ensure_ascii below keeps the escapes, so the wire text is the same
    body["slug"] = "hostile"
    before = snapshot()
    response = send(api_editor, "POST", mount.url("/profiles"), json.dumps(body).replace("Infinity", "1e999"))
    assert response.status_code == 400, response.content
    assert error_of(response)["field"] == field
    assert snapshot() == before
    assert api_editor.get(mount.url("/profiles/hostile")).status_code == 404


def test_restoring_a_version_with_unstorable_text_is_a_400(mount, target, api_editor, monkeypatch):
    """History written before this check could hold such text: restoring it must not write it again."""
    real = selectors.profile_revision_get

    def tainted(**kwargs):
        revision = real(**kwargs)
        revision.document = {**revision.document, "runtime": {"system_prompt": "old \ud800"}}
        return revision

    monkeypatch.setattr(selectors, "profile_revision_get", tainted)
    before = snapshot()
    response = api_editor.post(f"{target}/versions/1/restore", {}, format="json")
    assert response.status_code == 400, response.content
    assert error_of(response)["field"] == "runtime.system_prompt"
    assert snapshot() == before


@pytest.mark.parametrize(
    ("raw", "field"),
    [
        ('{"request_overrides": {"system_prompt": "\\ud800"}}', "request_overrides.system_prompt"),
        ('{"request_overrides": {"systemPrompt": "a\\u0000"}}', "request_overrides.system_prompt"),
    ],
)
def test_unstorable_request_overrides_are_a_400(mount, target, api_editor, raw, field):
    response = send(api_editor, "POST", f"{target}/resolve", raw)
    assert response.status_code == 400, response.content
    assert error_of(response)["field"] == field


def test_an_unknown_key_that_is_a_lone_surrogate_is_a_json_400(mount, seeded, api_editor):
    """The error body names the key, escaped: the encoder could not write the key itself."""
    response = send(api_editor, "POST", mount.url("/profiles"), '{"slug": "x", "\\ud800": 1}')
    assert response.status_code == 400, response.content
    assert error_of(response)["field"] == "\\ud800"


@pytest.mark.parametrize("constant", ["NaN", "Infinity", "-Infinity"])
@pytest.mark.parametrize("strict", [True, False], ids=["strict", "lenient-drf-setting"])
def test_the_json_parser_refuses_nan_and_infinity(mount, seeded, api_editor, monkeypatch, constant, strict):
    """Refused by the parser itself, not only while DRF's STRICT_JSON happens to be on."""
    monkeypatch.setattr(SafeJSONParser, "strict", strict)
    before = snapshot()
    raw = '{"slug": "nan", "extensions": {"acme.notes@v1": {"n": N}}}'.replace("N", constant)
    response = send(api_editor, "POST", mount.url("/profiles"), raw)
    assert response.status_code == 400, response.content
    error = error_of(response)
    assert error["code"] == "invalid"
    assert constant.lstrip("-") in error["message"] and "not valid JSON" in error["message"]
    assert snapshot() == before


def test_the_import_refuses_unstorable_text_and_writes_nothing(seeded):
    before = snapshot()
    head = "registries:\n  default:\n    profiles:\n      agent:\n"
    for body, field, modes in [
        ('        runtime: {system_prompt: "x\\0y"}\n', "runtime.system_prompt", (True, False)),
        (
            '        extensions: {acme.notes@v1: {tags: ["ok", "\\0"]}}\n',
            "extensions[acme.notes@v1].tags[1]",
            (True,),
        ),
        ('        description: "\\ud800"\n', "description", (True,)),
    ]:
        for replace in modes:  # without --replace the stored profile is kept, its runtime checked all the same
            with pytest.raises(ImportFailed, match=re.escape(f"default.profiles.agent.{field}:")):
                import_text(head + body, label="hostile.yaml", replace=replace)
    assert snapshot() == before


# --------------------------------------------------------------------------- the function itself


@pytest.mark.parametrize(
    ("value", "field"),
    [
        ("\ud800", "f"),
        ({"a": {"b": ["ok", "x\x00"]}}, "f.a.b[1]"),
        ({"a": math.nan}, "f.a"),
        ([math.inf], "f[0]"),
        ({"k.v@v1": {"x": -math.inf}}, "f[k.v@v1].x"),
    ],
)
def test_ensure_storable_names_the_first_offending_path(value, field):
    from profiles.validation import ensure_storable

    with pytest.raises(InvalidInput) as exc:
        ensure_storable(value, field="f")
    assert exc.value.field == field


def test_ensure_storable_accepts_and_returns_ordinary_json():
    from profiles.validation import ensure_storable

    value = {"text": "héllo 😀 \t\n", "n": [1, 2.5, True, None], "nested": {"deep": "ok"}}
    assert ensure_storable(value, field="x") is value
    deep: list = []
    node = deep
    for _ in range(5000):  # deeper than the recursion limit: the walk is iterative
        node.append([])
        node = node[0]
    node.append("\x00")
    with pytest.raises(InvalidInput):
        ensure_storable(deep, field="d")


def test_services_refuse_unstorable_text_from_every_caller(seeded):
    before = snapshot()
    with pytest.raises(InvalidInput) as exc:
        services.profile_create(registry_slug="default", slug="svc", extensions={"a.b@v1": math.nan})
    assert exc.value.field == "extensions[a.b@v1]"
    with pytest.raises(InvalidInput) as exc:
        services.profile_create(registry_slug="default", slug="svc", tags=["ok", "\x00"])
    assert exc.value.field == "tags[1]"
    with pytest.raises(InvalidInput) as exc:
        services.registry_create(slug="svc", description="\ud800")
    assert exc.value.field == "description"
    with pytest.raises(InvalidInput) as exc:
        services.registry_update(slug="default", display_name="a\x00")
    assert exc.value.field == "display_name"
    assert snapshot() == before


# --------------------------------------------------------------------------- races


def test_a_patch_whose_profile_is_deleted_under_it_is_a_404(mount, target, api_editor, monkeypatch):
    """The conditional UPDATE finds no row: a domain NotFound, not Profile.DoesNotExist (a 500)."""
    real = profile_services._locked_profile

    def then_deleted(registry, slug):
        profile = real(registry, slug)
        Profile.objects.filter(pk=profile.pk).delete()
        return profile

    monkeypatch.setattr(profile_services, "_locked_profile", then_deleted)
    response = api_editor.patch(target, {"description": "late"}, format="json")
    assert response.status_code == 404, response.content
    assert (error_of(response)["code"], error_of(response)["field"]) == ("not_found", "slug")


# --------------------------------------------------------------------------- JSON errors on every API URL


@pytest.mark.parametrize(
    "path",
    ["/profiles/default/versions/abc", "/conversations/not-a-uuid", "/conversations/not-a-uuid/events", "/nope"],
)
def test_an_unrouted_api_url_is_a_json_404(mount, seeded, api_editor, path):
    response = api_editor.get(mount.url(path))
    assert response.status_code == 404
    assert response["Content-Type"].startswith("application/json")
    assert error_of(response)["code"] == "not_found"


def test_an_unrouted_url_at_the_api_root_is_a_json_404(api_anon):
    response = api_anon.get("/api/nope")
    assert response.status_code == 404
    assert error_of(response)["code"] == "not_found"


def test_a_url_outside_the_api_keeps_the_html_404(db):
    response = APIClient().get("/no-such-page/")
    assert response.status_code == 404
    assert response["Content-Type"].startswith("text/html")


def test_an_unhandled_error_in_the_api_is_a_json_500_without_details(mount, seeded, editor, monkeypatch):
    def boom():
        raise RuntimeError("secret connection string postgres://u:p@h")

    monkeypatch.setattr(selectors, "registry_list", boom)
    client = APIClient(raise_request_exception=False)
    client.force_authenticate(user=editor)
    response = client.get(mount.url("/registries"))
    assert response.status_code == 500
    assert response["Content-Type"].startswith("application/json")
    assert error_of(response)["code"] == "server_error"
    assert "secret" not in response.content.decode()


def test_handler500_keeps_the_html_page_outside_the_api():
    from config import urls

    response = urls.handler500(RequestFactory().get("/inventory/"))
    assert response.status_code == 500
    assert response["Content-Type"].startswith("text/html")
    api = urls.handler500(RequestFactory().get("/inventory/api/items"))
    assert json.loads(api.content)["error"]["code"] == "server_error"
