"""Profile lifecycle: labels and protected promotion, the serving label, addressed selection
(`slug@3`, `slug@label`), structured diffs, restore dry runs and per-version stats, through both mounts."""

from __future__ import annotations

import pytest
from django.contrib.auth import get_user_model

from profiles import selectors, services
from profiles.errors import Forbidden, NotFound, VersionConflict
from profiles.models import Profile, ProfileLabel, ProfileLabelMove, ProfileRevision, Registry
from profiles.validation import parse_profile_ref

from .conftest import client_for
from .factories import EditorFactory
from .support import error_of

GUARD_V1 = {"name": "guardrail", "id": "g1", "config": {"blocked_terms": ["alpha"]}}
GUARD_V2 = {"name": "guardrail", "id": "g1", "config": {"blocked_terms": ["alpha", "beta"]}}


@pytest.fixture
def agent(db):
    """`team/agent` at version 2: v1 blocks "alpha", v2 also "beta" and a new prompt."""
    services.registry_create(slug="team")
    services.profile_create(
        registry_slug="team", slug="agent", runtime={"system_prompt": "v1", "middlewares": [GUARD_V1]}
    )
    services.profile_update(
        registry_slug="team",
        slug="agent",
        changes={"runtime": {"system_prompt": "v2", "middlewares": [GUARD_V2], "tools": ["calculator"]}},
    )
    return Profile.objects.get(registry__slug="team", slug="agent")


@pytest.fixture
def promoter(db):
    return get_user_model().objects.get(
        pk=EditorFactory(username="promoter", perms=["profiles.change_profile", "profiles.promote_profile"]).pk
    )


def url(mount, path: str) -> str:
    return mount.url(f"{path}{'&' if '?' in path else '?'}registry=team")


# --------------------------------------------------------------------------- refs


@pytest.mark.parametrize(
    ("raw", "mode", "text"),
    [("Agent", "follow", "agent"), ("agent@2", "pinned", "agent@2"), ("agent@Production", "label", "agent@production")],
)
def test_a_ref_is_a_slug_a_version_or_a_label(raw, mode, text):
    ref = parse_profile_ref(raw)
    assert (ref.mode, str(ref)) == (mode, text)


# --------------------------------------------------------------------------- labels (services)


def test_a_protected_label_moves_only_with_the_promote_permission(agent, editor, promoter):
    with pytest.raises(Forbidden) as caught:
        services.label_set(registry_slug="team", slug="agent", name="production", version=1, actor=editor)
    assert caught.value.field == "name" and "profiles.promote_profile" in caught.value.message
    assert not ProfileLabel.objects.exists()
    services.label_set(registry_slug="team", slug="agent", name="staging", version=2, actor=editor)  # unprotected
    services.label_set(registry_slug="team", slug="agent", name="production", version=1, actor=promoter)
    assert dict(ProfileLabel.objects.values_list("name", "version")) == {"production": 1, "staging": 2}
    with pytest.raises(Forbidden):
        services.label_delete(registry_slug="team", slug="agent", name="production", actor=editor)


def test_a_stale_expected_version_of_a_label_is_a_conflict_and_moves_nothing(agent, promoter):
    services.label_set(registry_slug="team", slug="agent", name="production", version=1, actor=promoter)
    with pytest.raises(VersionConflict) as caught:
        services.label_set(
            registry_slug="team", slug="agent", name="production", version=2, expected_version=2, actor=promoter
        )
    assert (caught.value.extra["expected"], caught.value.extra["actual"]) == (2, 1)
    assert ProfileLabel.objects.get(name="production").version == 1
    services.label_set(
        registry_slug="team", slug="agent", name="production", version=2, expected_version=1, actor=promoter
    )
    assert ProfileLabel.objects.get(name="production").version == 2


@pytest.mark.parametrize("name", ["latest", "Latest", "1abc", "", "a" * 65, "has space"])
def test_a_reserved_or_malformed_label_name_is_refused(agent, promoter, name):
    with pytest.raises(Exception) as caught:
        services.label_set(registry_slug="team", slug="agent", name=name, version=1, actor=promoter)
    assert getattr(caught.value, "field", None) == "name"


def test_a_label_cannot_point_at_a_version_the_profile_never_had(agent, promoter):
    with pytest.raises(NotFound) as caught:
        services.label_set(registry_slug="team", slug="agent", name="staging", version=3, actor=promoter)
    assert caught.value.field == "version"


def test_every_move_is_recorded_newest_first(agent, promoter):
    for version in (1, 2, 1):
        services.label_set(registry_slug="team", slug="agent", name="production", version=version, actor=promoter)
    services.label_delete(registry_slug="team", slug="agent", name="production", actor=promoter)
    moves = selectors.label_history(profile=agent, name="production")
    assert [(m.from_version, m.to_version, m.by) for m in moves] == [
        (1, None, "promoter"),
        (2, 1, "promoter"),
        (1, 2, "promoter"),
        (None, 1, "promoter"),
    ]


# --------------------------------------------------------------------------- serving label and addressed resolution


def test_the_serving_label_serves_its_version_until_it_moves(agent, promoter):
    services.label_set(registry_slug="team", slug="agent", name="production", version=1, actor=promoter)
    assert selectors.profile_resolve(registry_slug="team", profile_slug="agent").profile_version == 2  # unset
    services.registry_update(slug="team", serve_label="production")
    served = selectors.profile_resolve(registry_slug="team", profile_slug="agent")
    assert (served.profile_version, served.label, served.effective_runtime["system_prompt"]) == (1, "production", "v1")
    services.label_set(registry_slug="team", slug="agent", name="production", version=2, actor=promoter)
    assert selectors.profile_resolve(registry_slug="team", profile_slug="agent").profile_version == 2


def test_a_profile_without_the_serving_label_serves_its_latest(agent):
    services.registry_update(slug="team", serve_label="production")
    resolution = selectors.profile_resolve(registry_slug="team", profile_slug="agent")
    assert (resolution.profile_version, resolution.label) == (2, None)


def test_a_version_addressed_runtime_is_that_versions_content_with_its_original_fingerprint(db):
    services.registry_create(slug="team")
    services.profile_create(
        registry_slug="team", slug="agent", runtime={"system_prompt": "v1", "middlewares": [GUARD_V1]}
    )
    when_latest = selectors.profile_resolve(registry_slug="team", profile_slug="agent").fingerprint
    services.profile_update(
        registry_slug="team", slug="agent", changes={"runtime": {"system_prompt": "v2", "middlewares": [GUARD_V2]}}
    )
    resolution = selectors.profile_resolve(registry_slug="team", profile_slug="agent@1")
    assert (resolution.ref, resolution.profile_version) == ("agent@1", 1)
    assert [m["config"]["blocked_terms"] for m in resolution.effective_runtime["middlewares"]] == [["alpha"]]
    assert resolution.effective_runtime["system_prompt"] == "v1"
    assert resolution.fingerprint == when_latest
    assert resolution.fingerprint != selectors.profile_resolve(registry_slug="team", profile_slug="agent").fingerprint


@pytest.mark.parametrize("ref", ["agent@3", "agent@staging"])
def test_a_ref_to_a_missing_version_or_label_is_404(agent, ref):
    with pytest.raises(NotFound):
        selectors.profile_resolve(registry_slug="team", profile_slug=ref)


def test_latest_is_the_newest_version(agent):
    assert selectors.profile_resolve(registry_slug="team", profile_slug="agent@latest").profile_version == 2


# --------------------------------------------------------------------------- API, both mounts


@pytest.mark.parametrize("history", ["never set", "removed"])
def test_a_stale_expected_version_of_a_label_that_is_not_set_says_so_in_words(mount, agent, promoter, history):
    """The README's roll-back against a label that is not set: the 409 says it has no current version
    (it used to say `... is None, not 3`); `actual` stays null in the body."""
    api = client_for(promoter)
    if history == "never set":
        response = api.put(
            url(mount, "/profiles/agent/labels/production"), {"version": 2, "expected_version": 3}, format="json"
        )
    else:
        api.put(url(mount, "/profiles/agent/labels/production"), {"version": 1}, format="json")
        api.delete(url(mount, "/profiles/agent/labels/production"))
        response = api.put(
            url(mount, "/profiles/agent/labels/production"), {"version": 2, "expected_version": 1}, format="json"
        )
    error = error_of(response)
    assert (response.status_code, error["code"], error["actual"]) == (409, "version_conflict", None)
    expected = error["expected"]
    assert error["message"] == f"label 'production' has no current version (expected {expected}): reload and retry"
    assert "None" not in error["message"]


def test_a_stale_expected_version_names_both_versions(mount, agent, promoter):
    api = client_for(promoter)
    api.put(url(mount, "/profiles/agent/labels/production"), {"version": 1}, format="json")
    response = api.put(
        url(mount, "/profiles/agent/labels/production"), {"version": 2, "expected_version": 2}, format="json"
    )
    assert error_of(response)["message"] == "label 'production' version is 1, not 2: reload and retry"


def test_api_labels_list_set_move_delete_and_history(mount, agent, promoter, editor):
    api = client_for(promoter)
    put = api.put(url(mount, "/profiles/agent/labels/production"), {"version": 1}, format="json")
    assert put.status_code == 200, put.content
    assert put.json()["name"] == "production" and put.json()["protected"] is True
    api.put(url(mount, "/profiles/agent/labels/staging"), {"version": 2}, format="json")
    listed = api.get(url(mount, "/profiles/agent/labels")).json()
    assert [(row["name"], row["version"], row["protected"], row["updated_by"]) for row in listed] == [
        ("production", 1, True, "promoter"),
        ("staging", 2, False, "promoter"),
    ]
    stale = api.put(
        url(mount, "/profiles/agent/labels/production"), {"version": 2, "expected_version": 2}, format="json"
    )
    assert stale.status_code == 409 and error_of(stale)["code"] == "version_conflict"
    moved = api.put(
        url(mount, "/profiles/agent/labels/production"), {"version": 2, "expected_version": 1}, format="json"
    )
    assert moved.status_code == 200 and moved.json()["version"] == 2
    # An editor without promote_profile: refused on the protected label, allowed on another.
    editor_api = client_for(editor)
    refused = editor_api.put(url(mount, "/profiles/agent/labels/production"), {"version": 1}, format="json")
    assert refused.status_code == 403 and error_of(refused)["field"] == "name"
    assert (
        editor_api.put(url(mount, "/profiles/agent/labels/staging"), {"version": 1}, format="json").status_code == 200
    )
    assert editor_api.delete(url(mount, "/profiles/agent/labels/production")).status_code == 403
    assert api.delete(url(mount, "/profiles/agent/labels/production")).status_code == 204
    history = api.get(url(mount, "/profiles/agent/labels/production/history")).json()
    assert [(m["from_version"], m["to_version"], m["by"]) for m in history] == [
        (2, None, "promoter"),
        (1, 2, "promoter"),
        (None, 1, "promoter"),
    ]
    assert {"at_ms"} <= set(history[0])


def test_api_a_reader_cannot_move_any_label(mount, agent, api_reader):
    response = api_reader.put(url(mount, "/profiles/agent/labels/staging"), {"version": 1}, format="json")
    assert response.status_code == 403
    assert not ProfileLabel.objects.exists()


def test_api_resolve_takes_a_ref_in_its_path(mount, agent, api_reader):
    response = api_reader.post(url(mount, "/profiles/agent@1/resolve"), {}, format="json")
    assert response.status_code == 200, response.content
    body = response.json()
    assert (body["ref"], body["profile_version"], body["label"]) == ("agent@1", 1, None)
    assert [m["config"]["blocked_terms"] for m in body["effective_runtime"]["middlewares"]] == [["alpha"]]


def test_api_current_profile_takes_a_ref_and_says_how_it_resolves(mount, agent, promoter, api_reader):
    services.label_set(registry_slug="team", slug="agent", name="production", version=1, actor=promoter)
    response = api_reader.post(url(mount, "/profile"), {"slug": "agent@production"}, format="json")
    assert response.status_code == 200, response.content
    body = response.json()
    assert (body["ref"], body["version"], body["label"], body["mode"]) == ("agent@production", 1, "production", "label")
    missing = api_reader.post(url(mount, "/profile"), {"slug": "agent@nope"}, format="json")
    assert missing.status_code == 404


def test_api_diff_between_versions_uses_the_validation_path_grammar(mount, agent, api_reader):
    response = api_reader.get(url(mount, "/profiles/agent/versions/diff?from=1&to=2"))
    assert response.status_code == 200, response.content
    assert response.json() == [
        {
            "op": "add",
            "path": "runtime.middlewares[guardrail#g1].config.blocked_terms[1]",
            "to": "beta",
        },
        {"op": "change", "path": "runtime.system_prompt", "from": "v1", "to": "v2"},
        {"op": "add", "path": "runtime.tools", "to": ["calculator"]},
    ]
    assert api_reader.get(url(mount, "/profiles/agent/versions/diff?from=2&to=2")).json() == []
    assert api_reader.get(url(mount, "/profiles/agent/versions/diff?from=1&to=9")).status_code == 404
    assert api_reader.get(url(mount, "/profiles/agent/versions/diff?from=x&to=2")).status_code == 400


def test_api_restore_dry_run_answers_the_diff_and_writes_nothing(mount, agent, api_editor):
    before = (Profile.objects.get(pk=agent.pk).version, ProfileRevision.objects.count())
    response = api_editor.post(url(mount, "/profiles/agent/versions/1/restore?dry_run=1"), {}, format="json")
    assert response.status_code == 200, response.content
    paths = {c["path"] for c in response.json()}
    assert paths == {
        "runtime.middlewares[guardrail#g1].config.blocked_terms[1]",
        "runtime.system_prompt",
        "runtime.tools",
    }
    assert (Profile.objects.get(pk=agent.pk).version, ProfileRevision.objects.count()) == before
    same = api_editor.post(url(mount, "/profiles/agent/versions/2/restore?dry_run=1"), {}, format="json")
    assert same.json() == []
    assert (Profile.objects.get(pk=agent.pk).version, ProfileRevision.objects.count()) == before
    # The documented ETag: the version a restore with If-Match would build on.
    assert response["ETag"] == f'"{before[0]}"'
    restored = api_editor.post(
        url(mount, "/profiles/agent/versions/1/restore"), {}, format="json", HTTP_IF_MATCH=response["ETag"]
    )
    assert restored.status_code == 200, restored.content


def test_registry_label_settings_are_validated(db):
    services.registry_create(slug="team")
    with pytest.raises(Exception) as caught:
        services.registry_update(slug="team", serve_label="Not A Label")
    assert caught.value.field == "serve_label"
    with pytest.raises(Exception) as caught:
        services.registry_update(slug="team", protected_labels="production")
    assert caught.value.field == "protected_labels"
    registry = services.registry_update(slug="team", protected_labels=["Prod", "prod", "stable"], serve_label="prod")
    assert (registry.protected_labels, registry.serve_label) == (["prod", "stable"], "prod")
    assert Registry.objects.get(slug="team").protected_labels == ["prod", "stable"]
    assert ProfileLabelMove.objects.count() == 0
