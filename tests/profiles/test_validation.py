"""profiles.validation: plain functions, no database.

The middleware, tool, extension and step-setting definitions are the ones the chat and inventory
apps register at start-up (context_window, redact, guardrail, agent_mode, suggestions,
inventory_artifacts; calculator, current_time, inventory_*; webchat.starter_suggestions@v1).
"""

from __future__ import annotations

import pytest

from profiles.api.errors import http_status
from profiles.errors import InvalidInput
from profiles.validation import (
    canonical_extension_key,
    canonical_slug,
    validate_extensions,
    validate_policy,
    validate_profile_content,
    validate_runtime,
)

from .support import canonical

STARTER = "webchat.starter_suggestions@v1"


def fields_of(errors: list[tuple[str, str]]) -> list[str]:
    return [field for field, _ in errors]


# --------------------------------------------------------------------------- slugs


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (" Analyst ", "analyst"),
        ("ANALYST", "analyst"),
        ("a", "a"),
        ("0", "0"),
        ("a.b_c-d9", "a.b_c-d9"),
        ("x" * 128, "x" * 128),
        ("\tMixed.Case_Slug-1\n", "mixed.case_slug-1"),
    ],
)
def test_it_normalises_slugs_by_trimming_and_lower_casing(raw, expected):
    assert canonical_slug(raw) == expected


@pytest.mark.parametrize(
    "raw",
    ["bad slug", "-x", "x-", "", "   ", "x" * 129, ".x", "x.", "_x", "x_", "a/b", "a@b", "é", None, 12],
    ids=repr,
)
def test_it_rejects_invalid_slugs_with_field_slug(raw):
    with pytest.raises(InvalidInput) as caught:
        canonical_slug(raw)
    assert http_status(caught.value) == 400
    assert caught.value.code == "invalid"
    assert caught.value.field == "slug"


def test_it_names_the_given_field_when_rejecting_a_slug():
    with pytest.raises(InvalidInput) as caught:
        canonical_slug("bad slug", field="registry")
    assert caught.value.field == "registry"


# --------------------------------------------------------------------------- extension keys


@pytest.mark.parametrize(
    "key",
    ["a.b@v1", "a.b@v10", "a1.b2@v999", "web_chat.starter-suggestions@v2", f"{'n' * 64}.{'f' * 64}@v1", STARTER],
)
def test_it_accepts_valid_extension_keys(key):
    assert canonical_extension_key(key) == key


@pytest.mark.parametrize(
    "key",
    [
        "a.b@v0",
        "a.b@v01",
        "ab@v1",
        "-a.b@v1",
        "a-.b@v1",
        "a._b@v1",
        "a.b-@v1",
        "a.b@1",
        "a.b@v",
        "a.b.c@v1",
        "a.b",
        "",
        f"{'n' * 65}.f@v1",
        f"n.{'f' * 65}@v1",
        "a b.c@v1",
    ],
)
def test_it_rejects_invalid_extension_keys(key):
    assert canonical_extension_key(key) is None


def test_it_canonicalises_extension_keys_to_lower_case():
    assert canonical_extension_key(" Webchat.Starter_Suggestions@V1 ") == STARTER


def test_it_stores_a_known_extension_under_its_canonical_key_and_applies_its_codec():
    out, errors = validate_extensions({"Webchat.Starter_Suggestions@V1": {"items": ["  Hi  ", "", "There"]}})
    assert errors == []
    assert out == {STARTER: {"items": ["Hi", "There"]}}


def test_it_reports_an_invalid_extension_key_under_its_raw_key():
    _, errors = validate_extensions({"a.b@v0": 1, "ok.key@v1": 2})
    assert fields_of(errors) == ["extensions[a.b@v0]"]


def test_it_rejects_two_raw_extension_keys_that_collide_after_canonicalisation():
    out, errors = validate_extensions({"acme.widget@v1": {"a": 1}, " ACME.Widget@V1": {"b": 2}})
    assert out == {"acme.widget@v1": {"a": 1}}
    assert fields_of(errors) == ["extensions[ ACME.Widget@V1]"]
    assert "acme.widget@v1" in errors[0][1]


def test_it_raises_400_for_colliding_extension_keys_in_profile_content():
    with pytest.raises(InvalidInput) as caught:
        validate_profile_content(extensions={"acme.widget@v1": 1, "Acme.Widget@v1": 2})
    assert caught.value.field == "extensions[Acme.Widget@v1]"


def test_it_keeps_unknown_extension_values_exactly():
    value = {
        "z_last": [3, 2, 1, {"nested": None}],
        "a_first": 1.0,
        "int": 1,
        "bool": True,
        "unicode": "héllo ✓ \u0000",
        "big": 12345678901234567890,
        "empty": {},
    }
    out, errors = validate_extensions({"acme.widget@v7": value, "acme.list@v1": ["b", "a"], "acme.scalar@v1": "x"})
    assert errors == []
    assert canonical(out["acme.widget@v7"]) == canonical(value)
    assert list(out["acme.widget@v7"]) == list(value)  # key order too
    assert out["acme.list@v1"] == ["b", "a"]
    assert out["acme.scalar@v1"] == "x"


@pytest.mark.parametrize(
    ("payload", "field"),
    [
        ({"items": [5]}, f"extensions[{STARTER}].items[0]"),
        ({"items": ["ok", {"x": 1}]}, f"extensions[{STARTER}].items[1]"),
        ({"items": "not a list"}, f"extensions[{STARTER}].items"),
        ({}, f"extensions[{STARTER}].items"),
        ({"items": [], "colour": "red"}, f"extensions[{STARTER}].colour"),
        (["a"], f"extensions[{STARTER}]"),
    ],
)
def test_it_validates_the_starter_suggestions_codec_with_a_field_path(payload, field):
    _, errors = validate_extensions({STARTER: payload})
    assert fields_of(errors)[0] == field


def test_it_rejects_a_non_object_extensions_map():
    _, errors = validate_extensions(["a.b@v1"])
    assert fields_of(errors) == ["extensions"]


# --------------------------------------------------------------------------- middlewares


@pytest.mark.parametrize("entry", [{"name": ""}, {"name": "   "}, {}, {"name": None}, {"name": 3}])
def test_it_rejects_a_blank_middleware_name(entry):
    _, errors = validate_runtime({"middlewares": [entry]})
    assert fields_of(errors) == ["runtime.middlewares[0].name"]


def test_it_rejects_an_unknown_middleware_name():
    _, errors = validate_runtime({"middlewares": [{"name": "suggestions"}, {"name": "no_such_middleware"}]})
    assert fields_of(errors) == ["runtime.middlewares[1].name"]
    assert "no_such_middleware" in errors[0][1]


@pytest.mark.parametrize("value", [0, 201, "20", 1.5, None])
def test_it_reports_middleware_config_schema_errors_with_their_path(value):
    _, errors = validate_runtime({"middlewares": [{"name": "context_window", "config": {"max_turns": value}}]})
    assert fields_of(errors) == ["runtime.middlewares[0].config.max_turns"]


def test_it_reports_an_enum_error_inside_a_config_list_with_its_index():
    _, errors = validate_runtime({"middlewares": [{"name": "redact", "config": {"kinds": ["email", "ssn"]}}]})
    assert fields_of(errors) == ["runtime.middlewares[0].config.kinds[1]"]


def test_it_rejects_an_undeclared_middleware_config_key():
    _, errors = validate_runtime({"middlewares": [{"name": "suggestions", "config": {"max_items": 2, "colour": 1}}]})
    assert fields_of(errors) == ["runtime.middlewares[0].config.colour"]


def test_it_rejects_an_unknown_key_in_a_middleware_entry():
    _, errors = validate_runtime({"middlewares": [{"name": "suggestions", "settings": {}}]})
    assert fields_of(errors) == ["runtime.middlewares[0].settings"]


def test_it_runs_the_middlewares_own_config_check():
    _, errors = validate_runtime({"middlewares": [{"name": "agent_mode", "config": {"default_mode": "dream"}}]})
    assert fields_of(errors) == ["runtime.middlewares[0].config.default_mode"]


def test_it_fills_in_schema_defaults_when_storing_middleware_config():
    runtime, errors = validate_runtime(
        {
            "middlewares": [
                {"name": "suggestions"},
                {"name": "context_window", "config": {}},
                {"name": "inventory_artifacts", "config": None},
                {"name": "guardrail", "config": {"blocked_terms": ["x"]}},
            ]
        }
    )
    assert errors == []
    assert runtime["middlewares"] == [
        {"name": "suggestions", "config": {"max_items": 3}},
        {"name": "context_window", "config": {"max_turns": 20}},
        {"name": "inventory_artifacts", "config": {"max_rows": 50}},
        {"name": "guardrail", "config": {"blocked_terms": ["x"], "message": "I can't help with that request."}},
    ]


def test_it_does_not_mutate_the_input_when_filling_defaults():
    raw = {"middlewares": [{"name": "suggestions", "config": {}}]}
    validate_runtime(raw)
    assert raw == {"middlewares": [{"name": "suggestions", "config": {}}]}


def test_it_rejects_duplicate_middleware_ids_at_the_second_entry():
    _, errors = validate_runtime(
        {"middlewares": [{"name": "suggestions", "id": "a"}, {"name": "context_window", "id": "a"}]}
    )
    assert fields_of(errors) == ["runtime.middlewares[1].id"]


@pytest.mark.parametrize("mid", ["", "  ", 7])
def test_it_rejects_a_blank_or_non_string_middleware_id(mid):
    _, errors = validate_runtime({"middlewares": [{"name": "suggestions", "id": mid}]})
    assert fields_of(errors) == ["runtime.middlewares[0].id"]


def test_it_rejects_the_same_middleware_twice_without_ids():
    _, errors = validate_runtime({"middlewares": [{"name": "suggestions"}, {"name": "suggestions"}]})
    assert fields_of(errors) == ["runtime.middlewares[0].id", "runtime.middlewares[1].id"]


def test_it_rejects_the_same_middleware_twice_when_only_one_has_an_id():
    _, errors = validate_runtime({"middlewares": [{"name": "suggestions", "id": "a"}, {"name": "suggestions"}]})
    assert fields_of(errors) == ["runtime.middlewares[1].id"]


def test_it_accepts_the_same_middleware_twice_with_distinct_ids():
    runtime, errors = validate_runtime(
        {"middlewares": [{"name": "suggestions", "id": "a"}, {"name": "suggestions", "id": "b"}]}
    )
    assert errors == []
    assert [m["id"] for m in runtime["middlewares"]] == ["a", "b"]


def test_it_keeps_a_disabled_middleware_entry():
    runtime, errors = validate_runtime({"middlewares": [{"name": "suggestions", "id": "s", "enabled": False}]})
    assert errors == []
    assert runtime["middlewares"] == [{"name": "suggestions", "id": "s", "enabled": False, "config": {"max_items": 3}}]


def test_it_still_validates_the_config_of_a_disabled_middleware():
    _, errors = validate_runtime(
        {"middlewares": [{"name": "suggestions", "enabled": False, "config": {"max_items": 99}}]}
    )
    assert fields_of(errors) == ["runtime.middlewares[0].config.max_items"]


@pytest.mark.parametrize("enabled", [True, None])
def test_it_treats_enabled_true_or_null_as_on(enabled):
    runtime, errors = validate_runtime({"middlewares": [{"name": "suggestions", "enabled": enabled}]})
    assert errors == []
    assert runtime["middlewares"][0].get("enabled", True) is True


def test_it_rejects_a_non_boolean_enabled():
    _, errors = validate_runtime({"middlewares": [{"name": "suggestions", "enabled": "no"}]})
    assert fields_of(errors) == ["runtime.middlewares[0].enabled"]


def test_it_rejects_middlewares_that_are_not_a_list():
    _, errors = validate_runtime({"middlewares": {"name": "suggestions"}})
    assert fields_of(errors) == ["runtime.middlewares"]


# --------------------------------------------------------------------------- tools


@pytest.mark.parametrize("name", ["no_such_tool", "", "   ", None])
def test_it_rejects_an_unknown_or_blank_tool(name):
    _, errors = validate_runtime({"tools": [name, "calculator"]})
    assert fields_of(errors) == ["runtime.tools[0]"]


def test_it_accepts_registered_tools_in_order():
    runtime, errors = validate_runtime({"tools": ["current_time", "calculator", "inventory_report"]})
    assert errors == []
    assert runtime["tools"] == ["current_time", "calculator", "inventory_report"]


def test_it_rejects_a_tool_listed_twice():
    _, errors = validate_runtime({"tools": ["calculator", "calculator"]})
    assert fields_of(errors) == ["runtime.tools[1]"]


def test_it_keeps_an_empty_tool_list_as_no_tools():
    runtime, errors = validate_runtime({"tools": []})
    assert errors == []
    assert runtime["tools"] == []


# --------------------------------------------------------------------------- step settings


@pytest.mark.parametrize(
    ("patch", "field"),
    [
        ({"nope-chat": {"x": 1}}, "runtime.step_settings_patch.nope-chat"),
        ({"ai-chat": {"ai-colour": "red"}}, "runtime.step_settings_patch.ai-chat.ai-colour"),
        ({"openai-chat": {"openai-api-key": "sk-123"}}, "runtime.step_settings_patch.openai-chat.openai-api-key"),
        ({"ai-chat": {"ai-temperature": 2.5}}, "runtime.step_settings_patch.ai-chat.ai-temperature"),
        ({"ai-chat": {"ai-temperature": -0.1}}, "runtime.step_settings_patch.ai-chat.ai-temperature"),
        ({"ai-chat": {"ai-temperature": "hot"}}, "runtime.step_settings_patch.ai-chat.ai-temperature"),
        ({"ai-chat": {"ai-api-type": "claude"}}, "runtime.step_settings_patch.ai-chat.ai-api-type"),
        ({"ai-chat": {"ai-max-response-tokens": 0}}, "runtime.step_settings_patch.ai-chat.ai-max-response-tokens"),
        ({"ai-chat": "gpt"}, "runtime.step_settings_patch.ai-chat"),
        ("gpt", "runtime.step_settings_patch"),
    ],
)
def test_it_rejects_invalid_step_settings(patch, field):
    _, errors = validate_runtime({"step_settings_patch": patch})
    assert fields_of(errors) == [field]


def test_it_rejects_a_secret_even_when_it_is_empty():
    _, errors = validate_runtime({"step_settings_patch": {"openai-chat": {"openai-api-key": ""}}})
    assert fields_of(errors) == ["runtime.step_settings_patch.openai-chat.openai-api-key"]
    assert "secret" in errors[0][1]


def test_it_accepts_valid_step_settings_at_the_range_limits():
    patch = {"ai-chat": {"ai-api-type": "openai", "ai-engine": "gpt-4o-mini", "ai-temperature": 2, "ai-top-p": 0}}
    runtime, errors = validate_runtime({"step_settings_patch": patch})
    assert errors == []
    assert runtime["step_settings_patch"] == patch


# --------------------------------------------------------------------------- runtime shape


def test_it_rejects_an_unknown_runtime_key():
    _, errors = validate_runtime({"system_prompt": "x", "temperature": 0.2})
    assert fields_of(errors) == ["runtime.temperature"]


def test_it_rejects_a_non_string_system_prompt():
    _, errors = validate_runtime({"system_prompt": ["x"]})
    assert fields_of(errors) == ["runtime.system_prompt"]


def test_it_treats_a_missing_runtime_as_empty():
    assert validate_runtime(None) == ({}, [])


# --------------------------------------------------------------------------- policy


@pytest.mark.parametrize(
    ("allowed", "denied"),
    [
        (["system_prompt"], ["system_prompt"]),
        (["systemPrompt"], ["system_prompt"]),
        (["system-prompt"], ["SystemPrompt"]),
        (["tools", "system_prompt"], [" system_prompt "]),
    ],
)
def test_it_rejects_a_key_in_both_override_lists_after_canonicalisation(allowed, denied):
    _, errors = validate_policy({"allowed_override_keys": allowed, "denied_override_keys": denied})
    assert fields_of(errors) == ["policy.override_keys"]
    assert "system_prompt" in errors[0][1]


def test_it_canonicalises_override_key_lists():
    policy, errors = validate_policy(
        {"allow_overrides": True, "allowed_override_keys": ["systemPrompt", "step-settings-patch", "tools"]}
    )
    assert errors == []
    assert policy == {
        "allow_overrides": True,
        "read_only": False,
        "allowed_override_keys": ["step_settings_patch", "system_prompt", "tools"],
        "denied_override_keys": [],
    }


def test_it_fills_in_policy_defaults():
    assert validate_policy(None) == (
        {"allow_overrides": False, "read_only": False, "allowed_override_keys": [], "denied_override_keys": []},
        [],
    )


@pytest.mark.parametrize(
    ("raw", "field"),
    [
        ({"allow_overrides": "yes"}, "policy.allow_overrides"),
        ({"read_only": 1}, "policy.read_only"),
        ({"denied_override_keys": "tools"}, "policy.denied_override_keys"),
        ({"allowed_override_keys": [""]}, "policy.allowed_override_keys"),
        ({"editable": True}, "policy.editable"),
    ],
)
def test_it_rejects_invalid_policy_values(raw, field):
    _, errors = validate_policy(raw)
    assert fields_of(errors) == [field]


# --------------------------------------------------------------------------- all parts together


def test_it_reports_every_problem_and_names_the_first_as_the_field():
    with pytest.raises(InvalidInput) as caught:
        validate_profile_content(
            runtime={"tools": ["nope"]},
            policy={"allowed_override_keys": ["tools"], "denied_override_keys": ["tools"]},
            extensions={"bad": 1},
        )
    error = caught.value
    assert error.field == "runtime.tools[0]"
    assert [e["field"] for e in error.as_dict()["errors"]] == [
        "runtime.tools[0]",
        "policy.override_keys",
        "extensions[bad]",
    ]
