"""Stacked profiles: a profile built on base layers (`stack`), the merge rules, the lineage and the
per-field provenance of a resolution, and a fingerprint that covers every layer's version."""

from __future__ import annotations

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from profiles import selectors, services
from profiles.errors import Conflict, Forbidden, InvalidInput, NotFound
from profiles.models import Profile
from profiles.stacking import REQUEST_LAYER
from tests.helpers import expected_fingerprint

from .support import MountCase, error_of

pytestmark = pytest.mark.django_db

REG = "stk"


def layer(slug: str, version: int = 1, registry: str = REG) -> dict:
    return {"registry": registry, "slug": slug, "version": version}


def create(slug: str, *, stack: list | None = None, registry: str = REG, **content) -> Profile:
    return services.profile_create(registry_slug=registry, slug=slug, stack=stack, **content)


def resolve(slug: str, registry: str = REG, **kwargs):
    return selectors.profile_resolve(registry_slug=registry, profile_slug=slug, **kwargs)


@pytest.fixture
def three(db) -> None:
    """`base` <- `mid` <- `top`: every kind of field set at more than one layer."""
    services.registry_create(slug=REG)
    create(
        "base",
        runtime={
            "system_prompt": "Base prompt.",
            "tools": ["calculator"],
            "middlewares": [
                {"name": "redact", "config": {"kinds": ["email"]}},
                {"name": "suggestions", "id": "a", "config": {"max_items": 1}},
            ],
            "step_settings_patch": {"ai-chat": {"ai-temperature": 0.1, "ai-top-p": 0.5}},
        },
        policy={
            "allow_overrides": True,
            "allowed_override_keys": ["system_prompt", "tools", "step_settings_patch"],
            "denied_override_keys": ["middlewares"],
            "value_bounds": {"max_response_tokens": 900, "models": ["*"]},
        },
        extensions={"acme.one@v1": {"from": "base"}, "acme.two@v1": {"from": "base"}},
    )
    create(
        "mid",
        stack=[{"slug": "base"}],
        runtime={
            "system_prompt": "",  # empty: the base's prompt stays
            "middlewares": [
                {"name": "suggestions", "id": "a", "config": {"max_items": 2}},
                {"name": "agent_mode"},
            ],
            "step_settings_patch": {"ai-chat": {"ai-temperature": 0.2}},
        },
        policy={
            "allow_overrides": True,
            "read_only": True,
            "allowed_override_keys": ["system_prompt", "tools"],
            "value_bounds": {"max_response_tokens": 500, "models": ["m1", "m2"]},
        },
        extensions={"acme.two@v1": {"from": "mid"}},
    )
    create(
        "top",
        stack=[{"slug": "mid"}],
        runtime={
            "system_prompt": "Top prompt.",
            "tools": [],  # sets them: no tools at all
            "middlewares": [{"name": "context_window"}, {"name": "redact", "enabled": False, "config": {"kinds": []}}],
        },
        policy={
            "allow_overrides": True,
            "allowed_override_keys": ["system_prompt", "step_settings_patch"],
            "denied_override_keys": ["tools"],
            "value_bounds": {"max_response_tokens": 700, "models": ["m2", "m3"]},
        },
        extensions={"acme.three@v1": {"from": "top"}},
    )


# --------------------------------------------------------------------------- the merge rules


def test_a_three_layer_stack_merges_every_field_by_its_rule(three):
    result = resolve("top")
    runtime = result.effective_runtime

    assert result.lineage == (layer("base"), layer("mid"), layer("top"))
    assert runtime["system_prompt"] == "Top prompt."  # the last non-empty
    assert runtime["tools"] == []  # the last layer that sets them replaces
    # By name+id, keeping order: the base's entries where they were, replaced in place; new ones appended.
    assert [(m["name"], m.get("id"), m.get("enabled", True)) for m in runtime["middlewares"]] == [
        ("redact", None, False),
        ("suggestions", "a", True),
        ("agent_mode", None, True),
        ("context_window", None, True),
    ]
    assert runtime["middlewares"][1]["config"]["max_items"] == 2
    assert runtime["middlewares"][0]["config"]["kinds"] == []
    # Per field.
    assert runtime["step_settings_patch"] == {"ai-chat": {"ai-temperature": 0.2, "ai-top-p": 0.5}}
    assert result.extensions == {
        "acme.one@v1": {"from": "base"},
        "acme.two@v1": {"from": "mid"},
        "acme.three@v1": {"from": "top"},
    }


def test_the_policy_merges_restrictively(three):
    provenance = resolve("top").provenance
    values = {path: entry["value"] for path, entry in provenance.items() if path.startswith("policy.")}
    assert values == {
        "policy.allow_overrides": True,  # AND
        "policy.read_only": True,  # OR
        "policy.allowed_override_keys": ["system_prompt"],  # intersect, less the denied keys
        "policy.denied_override_keys": ["middlewares", "tools"],  # union
        "policy.value_bounds.max_response_tokens": 500,  # the lowest
        "policy.value_bounds.models": ["m2"],  # intersect ("*" allows anything)
    }
    # The merged policy is the one requests are checked against.
    resolve("top", request_overrides={"system_prompt": "Asked."})
    with pytest.raises(Forbidden):
        resolve("top", request_overrides={"tools": ["calculator"]})  # denied by top
    with pytest.raises(Forbidden):
        resolve("top", request_overrides={"step_settings_patch": {"ai-chat": {"ai-top-p": 0.9}}})  # not in mid's list


def test_one_layer_that_refuses_overrides_refuses_them_for_the_stack(three):
    services.profile_update(
        registry_slug=REG, slug="mid", changes={"policy": {"allow_overrides": False}}, source="import"
    )
    with pytest.raises(Forbidden):
        resolve("top", request_overrides={"system_prompt": "Asked."})
    entry = resolve("top").provenance["policy.allow_overrides"]
    assert (entry["value"], entry["layer"], entry["rule"]) == (False, layer("mid", 2), "and")
    assert entry["overruled"] == [{"layer": layer("top"), "value": True}]


def test_allow_lists_with_nothing_in_common_allow_nothing(db):
    services.registry_create(slug=REG)
    create("a", policy={"allow_overrides": True, "allowed_override_keys": ["tools"]})
    create("b", stack=[{"slug": "a"}], policy={"allow_overrides": True, "allowed_override_keys": ["system_prompt"]})
    with pytest.raises(Forbidden):
        resolve("b", request_overrides={"system_prompt": "x"})
    with pytest.raises(Forbidden):
        resolve("b", request_overrides={"tools": []})


def test_a_layer_that_does_not_set_tools_keeps_the_earlier_ones(three):
    services.profile_update(
        registry_slug=REG, slug="top", changes={"runtime": {"system_prompt": "Top prompt.", "middlewares": []}}
    )
    result = resolve("top")
    assert result.effective_runtime["tools"] == ["calculator"]
    assert result.provenance["runtime.tools"]["layer"] == layer("base")


def test_a_stack_without_own_content_runs_its_base(three):
    create("thin", stack=[{"slug": "base"}])
    thin, base = resolve("thin"), resolve("base")
    assert thin.effective_runtime == base.effective_runtime
    assert thin.fingerprint != base.fingerprint  # another profile, another lineage


def test_a_layer_reached_twice_is_applied_once_where_it_first_appears(three):
    create("both", stack=[{"slug": "mid"}, {"slug": "base"}])
    assert resolve("both").lineage == (layer("base"), layer("mid"), layer("both"))


def test_layers_may_come_from_another_registry(three):
    services.registry_create(slug="other")
    create("remote", registry="other", stack=[{"registry": REG, "slug": "top"}])
    result = resolve("remote", registry="other")
    assert result.lineage[-2:] == (layer("top"), layer("remote", registry="other"))
    assert result.effective_runtime["system_prompt"] == "Top prompt."


def test_a_pinned_layer_keeps_its_version(three):
    create("pinned", stack=[{"slug": "base", "version": 1}])
    before = resolve("pinned")
    services.profile_update(
        registry_slug=REG, slug="base", changes={"runtime": {"system_prompt": "Base prompt, edited."}}
    )
    after = resolve("pinned")
    assert after.lineage[0] == layer("base", 1)
    assert after.effective_runtime["system_prompt"] == "Base prompt."
    assert after.fingerprint == before.fingerprint


def test_a_layer_nobody_may_select_may_still_be_a_base(three, supporter):
    from profiles.access import can_use

    services.registry_set_default(registry_slug=REG, slug="top")
    services.profile_update(registry_slug=REG, slug="base", changes={"visible_to_groups": ["ops"]})
    result = selectors.profile_resolve(registry_slug=REG, profile_slug="top", user=supporter)
    assert result.lineage[0] == layer("base", 2)
    base = Profile.objects.get(registry__slug=REG, slug="base")
    assert not can_use(supporter, base)
    with pytest.raises(NotFound):
        selectors.profile_resolve(registry_slug=REG, profile_slug="base", user=supporter)


# --------------------------------------------------------------------------- refused stacks


def test_a_cycle_is_400_on_the_entry_that_closes_it(three):
    with pytest.raises(InvalidInput) as raised:
        services.profile_update(registry_slug=REG, slug="base", changes={"stack": [{"slug": "top"}]})
    assert raised.value.field == "stack[0]"
    assert "cycle" in raised.value.message and "stk/base -> stk/top -> stk/mid -> stk/base" in raised.value.message
    assert Profile.objects.get(registry__slug=REG, slug="base").stack == []


def test_a_profile_cannot_stack_itself(three):
    with pytest.raises(InvalidInput) as raised:
        services.profile_update(registry_slug=REG, slug="top", changes={"stack": [{"slug": "base"}, {"slug": "top"}]})
    assert raised.value.field == "stack[1]"


@pytest.mark.parametrize(
    ("stack", "field", "message"),
    [
        ([{"slug": "nope"}], "stack[0]", "layer stk/nope not found"),
        ([{"slug": "base"}, {"registry": "nowhere", "slug": "base"}], "stack[1]", "layer nowhere/base not found"),
        ([{"slug": "base", "version": 9}], "stack[0]", "has no version 9"),
        ([{"slug": "base", "label": "x"}], "stack[0].label", "unknown key"),
        ([{"slug": "Bad Slug"}], "stack[0].slug", "invalid slug"),
        ([{"slug": "base", "version": 0}], "stack[0].version", "positive integer"),
        ([{"slug": "base"}, {"slug": "base"}], "stack[1]", "already in the stack"),
        ({"slug": "base"}, "stack", "must be a list"),
    ],
)
def test_bad_stacks_are_400_on_their_field(three, stack, field, message):
    with pytest.raises(InvalidInput) as raised:
        create("bad", stack=stack)
    assert raised.value.field == field
    assert message in raised.value.message
    assert not Profile.objects.filter(slug="bad").exists()


def test_a_lineage_deeper_than_8_is_400(db):
    services.registry_create(slug=REG)
    create("l0")
    for i in range(1, 9):
        create(f"l{i}", stack=[{"slug": f"l{i - 1}"}])  # l8 has 8 base layers: fine
    assert len(resolve("l8").lineage) == 9
    with pytest.raises(InvalidInput) as raised:
        create("l9", stack=[{"slug": "l8"}])
    assert raised.value.field == "stack[0]"
    assert "at most 8 base layers" in raised.value.message


def test_an_error_deep_in_a_layer_is_reported_at_the_entry_that_leads_there(three):
    create("side")
    with pytest.raises(InvalidInput) as raised:
        services.profile_update(registry_slug=REG, slug="base", changes={"stack": [{"slug": "side"}, {"slug": "top"}]})
    assert raised.value.field == "stack[1]"


def test_layers_that_merge_into_an_invalid_chain_are_refused(three):
    create("lonely", runtime={"middlewares": [{"name": "suggestions"}]})
    with pytest.raises(InvalidInput) as raised:
        create("clash", stack=[{"slug": "lonely"}], runtime={"middlewares": [{"name": "suggestions", "id": "x"}]})
    assert raised.value.field == "stack"
    assert "the merged runtime is invalid: runtime.middlewares[0].id" in raised.value.message


def test_a_base_layer_save_that_would_break_a_dependent_is_refused(db):
    services.registry_create(slug=REG)
    create("root")
    create("base")
    create("mid", stack=[{"slug": "base"}])
    create("leaf", stack=[{"slug": "mid"}], runtime={"middlewares": [{"name": "suggestions", "id": "x"}]})
    with pytest.raises(InvalidInput) as raised:
        services.profile_update(
            registry_slug=REG, slug="base", changes={"runtime": {"middlewares": [{"name": "suggestions"}]}}
        )
    assert raised.value.field == "runtime"
    assert "stk/leaf, which is built on this profile, would break" in raised.value.message
    assert Profile.objects.get(registry__slug=REG, slug="base").version == 1  # rolled back


def test_a_base_layer_cannot_be_deleted_while_profiles_stack_it(db):
    services.registry_create(slug=REG)
    create("root")
    create("a")
    create("b", stack=[{"slug": "a"}])
    services.registry_create(slug="other")
    create("c", registry="other", stack=[{"registry": REG, "slug": "a", "version": 1}])
    with pytest.raises(Conflict) as raised:
        services.profile_delete(registry_slug=REG, slug="a")
    assert "is a base layer of other/c, stk/b" in raised.value.message
    services.profile_update(registry_slug=REG, slug="b", changes={"stack": []})
    services.profile_delete(registry_slug="other", slug="c")
    services.profile_delete(registry_slug=REG, slug="a")


# --------------------------------------------------------------------------- provenance


def test_provenance_names_the_layer_of_every_kind_of_field_and_what_it_replaced(three):
    provenance = resolve("top").provenance

    def origin(path: str) -> tuple:
        entry = provenance[path]
        return entry["layer"]["slug"], entry["value"], [(r["layer"]["slug"], r["value"]) for r in entry["replaced"]]

    assert origin("runtime.system_prompt") == ("top", "Top prompt.", [("base", "Base prompt.")])
    assert origin("runtime.tools") == ("top", [], [("base", ["calculator"])])
    assert origin("runtime.middlewares[suggestions#a]")[0] == "mid"
    assert origin("runtime.middlewares[suggestions#a].config.max_items") == ("mid", 2, [("base", 1)])
    assert origin("runtime.middlewares[redact]") == (
        "top",
        {"name": "redact", "enabled": False},
        [("base", {"name": "redact"})],
    )
    assert origin("runtime.middlewares[context_window].config.max_turns") == ("top", 20, [])
    assert origin("runtime.step_settings_patch.ai-chat.ai-temperature") == ("mid", 0.2, [("base", 0.1)])
    assert origin("runtime.step_settings_patch.ai-chat.ai-top-p") == ("base", 0.5, [])
    assert origin("extensions[acme.two@v1]") == ("mid", {"from": "mid"}, [("base", {"from": "base"})])
    assert origin("extensions[acme.three@v1]") == ("top", {"from": "top"}, [])
    assert origin("policy.read_only") == ("mid", True, [("base", False)])
    assert provenance["policy.read_only"]["rule"] == "or"
    assert provenance["policy.read_only"]["overruled"] == [{"layer": layer("top"), "value": False}]
    assert origin("policy.value_bounds.max_response_tokens") == ("mid", 500, [("base", 900)])
    assert provenance["policy.value_bounds.max_response_tokens"]["overruled"] == [{"layer": layer("top"), "value": 700}]


def test_request_overrides_are_the_last_layer_of_the_provenance(db):
    services.registry_create(slug=REG)
    create(
        "open",
        runtime={"system_prompt": "Own.", "middlewares": [{"name": "suggestions", "id": "f"}]},
        policy={"allow_overrides": True},
    )
    result = resolve(
        "open",
        request_overrides={
            "systemPrompt": "Asked.",
            "middlewares": [{"name": "suggestions", "id": "f", "config": {"max_items": 1}}],
        },
    )
    assert result.lineage == (layer("open"),)
    prompt = result.provenance["runtime.system_prompt"]
    assert (prompt["layer"], prompt["value"]) == (REQUEST_LAYER, "Asked.")
    assert prompt["replaced"] == [{"layer": layer("open"), "value": "Own."}]
    assert result.provenance["runtime.middlewares[suggestions#f].config.max_items"]["layer"] == REQUEST_LAYER


def test_a_profile_without_a_stack_is_its_own_only_layer_and_keeps_its_fingerprint(seeded):
    result = resolve("agent", registry="default")
    assert result.lineage == (layer("agent", registry="default"),)
    assert {entry["layer"]["slug"] for entry in result.provenance.values()} == {"agent"}
    assert result.fingerprint == expected_fingerprint(
        registry="default",
        profile="agent",
        profile_version=1,
        runtime=result.effective_runtime,
        engine=result.engine["settings"],
    )


# --------------------------------------------------------------------------- the fingerprint


def test_saving_a_base_layer_changes_every_dependents_fingerprint(three):
    create("sibling", stack=[{"slug": "base"}])
    before = {slug: resolve(slug).fingerprint for slug in ("mid", "top", "sibling")}
    services.profile_update(registry_slug=REG, slug="base", changes={"description": "only the text"})
    after = {slug: resolve(slug) for slug in ("mid", "top", "sibling")}
    for slug, result in after.items():
        assert result.fingerprint != before[slug], slug
        assert result.lineage[0] == layer("base", 2)
        assert result.profile_version == 1  # the dependent itself did not change


def test_the_fingerprint_of_a_stack_covers_the_lineage(three):
    from profiles.resolution import fingerprint

    result = resolve("top")
    assert result.fingerprint == fingerprint(
        registry=REG,
        profile="top",
        profile_version=1,
        effective_runtime=result.effective_runtime,
        engine_settings=result.engine["settings"],
        lineage=list(result.lineage),
    )


def test_resolving_a_stack_costs_one_query_per_stack_read(three):
    with CaptureQueriesContext(connection) as queries:
        resolve("top")
    assert len(queries.captured_queries) == 4  # registry, profile, then top's and mid's stacks


# --------------------------------------------------------------------------- through the API


@pytest.fixture
def on_default(mount: MountCase, seeded) -> None:
    """`helper` in the mount's registry, built on the mount's default profile."""
    services.profile_create(
        registry_slug=mount.registry,
        slug="helper",
        stack=[{"slug": mount.default_profile}],
        runtime={"system_prompt": "Helper prompt."},
    )


def test_the_api_writes_and_shows_the_stack(mount, seeded, api_editor):
    response = api_editor.post(
        mount.url("/profiles"),
        {"slug": "built", "stack": [{"slug": mount.default_profile}], "runtime": {"system_prompt": "Built."}},
        format="json",
    )
    assert response.status_code == 201, response.content
    assert response.json()["stack"] == [{"registry": mount.registry, "slug": mount.default_profile}]
    response = api_editor.patch(
        mount.url("/profiles/built"), {"stack": [{"slug": mount.default_profile, "version": 1}]}, format="json"
    )
    assert response.status_code == 200
    diff = api_editor.get(mount.url("/profiles/built/versions/diff?from=1&to=2")).json()
    assert diff == [{"op": "add", "path": "stack[0].version", "to": 1}]


@pytest.mark.parametrize(
    ("stack", "field"),
    [([{"slug": "built"}], "stack[0]"), ([{"slug": "missing"}], "stack[0]"), ([{"slug": "x", "y": 1}], "stack[0].y")],
)
def test_the_api_answers_a_bad_stack_with_400_on_its_field(mount, seeded, api_editor, stack, field):
    response = api_editor.post(mount.url("/profiles"), {"slug": "built", "stack": stack}, format="json")
    assert response.status_code == 400, response.content
    assert (error_of(response)["code"], error_of(response)["field"]) == ("invalid", field)


def test_resolve_returns_the_lineage_and_the_provenance(mount, on_default, api_reader):
    result = api_reader.post(mount.url("/profiles/helper/resolve"), {}, format="json").json()
    assert result["lineage"] == [
        {"registry": mount.registry, "slug": mount.default_profile, "version": 1},
        {"registry": mount.registry, "slug": "helper", "version": 1},
    ]
    prompt = result["provenance"]["runtime.system_prompt"]
    assert prompt["layer"]["slug"] == "helper"
    assert prompt["replaced"][0]["layer"]["slug"] == mount.default_profile


def test_a_base_layer_save_through_the_api_changes_the_dependents_fingerprint(
    mount, on_default, api_reader, api_editor
):
    before = api_reader.post(mount.url("/profiles/helper/resolve"), {}, format="json").json()["fingerprint"]
    response = api_editor.patch(mount.url(f"/profiles/{mount.default_profile}"), {"description": "x"}, format="json")
    assert response.status_code == 200
    after = api_reader.post(mount.url("/profiles/helper/resolve"), {}, format="json").json()
    assert after["fingerprint"] != before
    assert after["lineage"][0]["version"] == 2 and after["profile_version"] == 1
