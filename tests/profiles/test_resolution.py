"""profiles.resolution (with profiles.overrides): overrides, policy, merge rules, engine settings and the fingerprint.

Plain functions first (no database); the last tests resolve stored profiles through the selector.
"""

from __future__ import annotations

import copy
import json
import re

import pytest

from profiles import selectors, services
from profiles.api.errors import http_status
from profiles.errors import InvalidInput, NotFound, PolicyViolation
from profiles.models import Registry
from profiles.overrides import apply_overrides, canonical_overrides, engine_settings
from profiles.resolution import fingerprint as real_fingerprint
from profiles.resolution import resolve_runtime
from profiles.validation import canonical_override_key, validate_runtime

from .factories import ProfileFactory, RegistryFactory
from .support import RESOLUTION_KEYS, SEED_PROFILES

OPEN = {"allow_overrides": True, "allowed_override_keys": [], "denied_override_keys": [], "read_only": False}
CLOSED = {**OPEN, "allow_overrides": False}
FINGERPRINT_RE = re.compile(r"^sha256:[0-9a-f]{64}$")


def stored(runtime: dict) -> dict:
    """A runtime as the services store it (validated, defaults filled in)."""
    out, errors = validate_runtime(runtime)
    assert errors == []
    return out


def resolve(runtime=None, policy=None, overrides=None, *, version=1, server_defaults=None, **kwargs):
    return resolve_runtime(
        registry=kwargs.get("registry", "default"),
        profile=kwargs.get("profile", "analyst"),
        profile_version=version,
        runtime=stored(runtime or {"system_prompt": "base"}),
        policy=OPEN if policy is None else policy,
        request_overrides=overrides,
        server_defaults=server_defaults,
    )


# --------------------------------------------------------------------------- override keys


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("systemPrompt", "system_prompt"),
        ("system-prompt", "system_prompt"),
        ("system_prompt", "system_prompt"),
        (" System_Prompt ", "system_prompt"),
        ("SystemPrompt", "system_prompt"),
        ("stepSettingsPatch", "step_settings_patch"),
        ("step-settings-patch", "step_settings_patch"),
        ("tools", "tools"),
    ],
)
def test_it_canonicalises_override_keys(raw, expected):
    assert canonical_override_key(raw) == expected


def test_it_canonicalises_request_override_keys_before_applying_them():
    effective, applied = apply_overrides(stored({"system_prompt": "base"}), OPEN, {"systemPrompt": "from request"})
    assert effective["system_prompt"] == "from request"
    assert applied == {"system_prompt": "from request"}


@pytest.mark.parametrize(
    "raw",
    [
        {"systemPrompt": "a", "system_prompt": "b"},
        {"system-prompt": "a", "systemPrompt": "b"},
        {"tools": [], "Tools": []},
    ],
)
def test_it_rejects_override_keys_that_collide_after_canonicalisation(raw):
    with pytest.raises(InvalidInput) as caught:
        canonical_overrides(raw)
    second = list(raw)[1]
    assert http_status(caught.value) == 400
    assert caught.value.field == f"request_overrides.{second}"


def test_it_rejects_colliding_override_keys_even_on_a_closed_profile_as_400_not_403():
    with pytest.raises(InvalidInput):
        apply_overrides({}, CLOSED, {"systemPrompt": "a", "system_prompt": "b"})


def test_it_rejects_overrides_that_are_not_an_object():
    with pytest.raises(InvalidInput) as caught:
        apply_overrides({}, OPEN, ["system_prompt"])
    assert caught.value.field == "request_overrides"


# --------------------------------------------------------------------------- policy


@pytest.mark.parametrize("overrides", [None, {}])
def test_it_does_not_consult_the_policy_without_overrides(overrides):
    runtime = stored({"system_prompt": "base", "tools": ["calculator"]})
    effective, applied = apply_overrides(runtime, CLOSED, overrides)
    assert effective == runtime
    assert applied == {}


def test_a_closed_profile_resolves_without_overrides():
    result = resolve({"system_prompt": "base"}, policy=CLOSED)
    assert result.effective_runtime == {"system_prompt": "base"}
    assert result.overrides_applied == {}


def test_it_refuses_overrides_when_the_profile_does_not_allow_them():
    with pytest.raises(PolicyViolation) as caught:
        apply_overrides({}, CLOSED, {"tools": [], "system_prompt": "x"})
    assert http_status(caught.value) == 403
    assert caught.value.code == "policy_violation"
    # keys are checked in sorted order: system_prompt < tools
    assert caught.value.field == "request_overrides.system_prompt"


def test_it_refuses_a_denied_override_key():
    policy = {**OPEN, "denied_override_keys": ["tools"]}
    with pytest.raises(PolicyViolation) as caught:
        apply_overrides({}, policy, {"tools": ["calculator"], "systemPrompt": "fine"})
    assert caught.value.field == "request_overrides.tools"


def test_it_compares_denied_keys_after_canonicalisation():
    policy = {**OPEN, "denied_override_keys": ["system_prompt"]}
    with pytest.raises(PolicyViolation) as caught:
        apply_overrides({}, policy, {"System-Prompt": "x"})
    assert caught.value.field == "request_overrides.system_prompt"


def test_it_refuses_a_key_outside_the_allow_list():
    policy = {**OPEN, "allowed_override_keys": ["tools"]}
    with pytest.raises(PolicyViolation) as caught:
        apply_overrides({}, policy, {"tools": ["calculator"], "system_prompt": "x"})
    assert caught.value.field == "request_overrides.system_prompt"


def test_it_names_the_first_violating_key_in_sorted_not_request_order():
    policy = {**OPEN, "allowed_override_keys": ["system_prompt"]}
    overrides = {"tools": ["calculator"], "step_settings_patch": {}, "middlewares": []}
    with pytest.raises(PolicyViolation) as caught:
        apply_overrides({}, policy, overrides)
    assert caught.value.field == "request_overrides.middlewares"


def test_it_checks_the_policy_before_rejecting_an_unknown_key():
    policy = {**OPEN, "allowed_override_keys": ["system_prompt"]}
    with pytest.raises(PolicyViolation) as caught:
        apply_overrides({}, policy, {"temperature": 1})
    assert caught.value.field == "request_overrides.temperature"


def test_it_allows_keys_in_the_allow_list():
    policy = {**OPEN, "allowed_override_keys": ["system_prompt", "tools"]}
    effective, _ = apply_overrides(stored({"system_prompt": "a"}), policy, {"tools": ["calculator"]})
    assert effective["tools"] == ["calculator"]


def test_it_rejects_an_unknown_override_key_with_400():
    with pytest.raises(InvalidInput) as caught:
        apply_overrides({}, OPEN, {"temperature": 0.5})
    assert http_status(caught.value) == 400
    assert caught.value.field == "request_overrides.temperature"


# --------------------------------------------------------------------------- merge rules


def test_a_system_prompt_override_replaces_the_profiles():
    effective, _ = apply_overrides(
        stored({"system_prompt": "base", "tools": ["calculator"]}), OPEN, {"system_prompt": "new"}
    )
    assert effective == {"system_prompt": "new", "tools": ["calculator"]}


@pytest.mark.parametrize("tools", [["current_time"], []])
def test_a_tools_override_replaces_the_list(tools):
    runtime = stored({"tools": ["calculator", "current_time"]})
    effective, _ = apply_overrides(runtime, OPEN, {"tools": tools})
    assert effective["tools"] == tools


def test_a_tools_override_is_validated():
    with pytest.raises(InvalidInput) as caught:
        apply_overrides({}, OPEN, {"tools": ["calculator", "rm_rf"]})
    assert caught.value.field == "request_overrides.tools[1]"


def test_middleware_overrides_merge_by_name_and_id_in_place_and_append_the_rest():
    runtime = stored(
        {
            "middlewares": [
                {"name": "redact", "config": {"kinds": ["email"]}},
                {"name": "suggestions", "id": "a", "config": {"max_items": 2}},
                {"name": "suggestions", "id": "b"},
                {"name": "context_window"},
            ]
        }
    )
    before = copy.deepcopy(runtime)
    effective, _ = apply_overrides(
        runtime,
        OPEN,
        {
            "middlewares": [
                {"name": "suggestions", "id": "b", "config": {"max_items": 5}},
                {"name": "redact", "enabled": False},
                {"name": "guardrail", "config": {"blocked_terms": ["secret plans"]}},
                {"name": "suggestions", "id": "c"},
            ]
        },
    )
    assert effective["middlewares"] == [
        {"name": "redact", "enabled": False, "config": {"kinds": ["email"], "mask": "[redacted:{kind}]"}},
        {"name": "suggestions", "id": "a", "config": {"max_items": 2}},
        {"name": "suggestions", "id": "b", "config": {"max_items": 5}},
        {"name": "context_window", "config": {"max_turns": 20}},
        {
            "name": "guardrail",
            "config": {"blocked_terms": ["secret plans"], "message": "I can't help with that request."},
        },
        {"name": "suggestions", "id": "c", "config": {"max_items": 3}},
    ]
    assert runtime == before  # the stored runtime is never modified


def test_a_middleware_config_override_merges_per_key():
    runtime = stored({"middlewares": [{"name": "guardrail", "config": {"blocked_terms": ["x"], "message": "No."}}]})
    effective, _ = apply_overrides(
        runtime, OPEN, {"middlewares": [{"name": "guardrail", "config": {"message": "Nope."}}]}
    )
    assert effective["middlewares"] == [{"name": "guardrail", "config": {"blocked_terms": ["x"], "message": "Nope."}}]


def test_an_id_less_middleware_override_matching_two_id_less_entries_is_rejected():
    # Validation never stores such a profile; resolution must still refuse to guess.
    runtime = {"middlewares": [{"name": "suggestions", "config": {}}, {"name": "suggestions", "config": {}}]}
    with pytest.raises(InvalidInput) as caught:
        apply_overrides(runtime, OPEN, {"middlewares": [{"name": "suggestions", "config": {"max_items": 1}}]})
    assert http_status(caught.value) == 400
    assert caught.value.field == "request_overrides.middlewares[0]"


def test_an_id_less_middleware_override_does_not_match_an_entry_with_an_id():
    # It is appended instead, and a name used twice needs ids: 400 at the request's own entry.
    runtime = stored({"middlewares": [{"name": "suggestions", "id": "followups"}]})
    with pytest.raises(InvalidInput) as caught:
        apply_overrides(runtime, OPEN, {"middlewares": [{"name": "suggestions", "config": {"max_items": 1}}]})
    assert caught.value.field == "request_overrides.middlewares[0].id"


def test_middleware_overrides_are_validated_like_the_profile():
    runtime = stored({"middlewares": [{"name": "context_window"}]})
    with pytest.raises(InvalidInput) as caught:
        apply_overrides(runtime, OPEN, {"middlewares": [{"name": "context_window", "config": {"max_turns": 0}}]})
    assert caught.value.field == "request_overrides.middlewares[0].config.max_turns"
    with pytest.raises(InvalidInput):
        apply_overrides(runtime, OPEN, {"middlewares": [{"name": "no_such_middleware"}]})


def test_step_settings_overrides_merge_per_field():
    runtime = stored({"step_settings_patch": {"ai-chat": {"ai-engine": "m1", "ai-temperature": 0.2}}})
    effective, _ = apply_overrides(
        runtime,
        OPEN,
        {"step_settings_patch": {"ai-chat": {"ai-temperature": 0.7, "ai-top-p": 0.9}}},
    )
    assert effective["step_settings_patch"] == {"ai-chat": {"ai-engine": "m1", "ai-temperature": 0.7, "ai-top-p": 0.9}}


def test_a_request_cannot_redirect_the_engine_to_another_server():
    """Where requests go (and so where the server's key could go) is the profile's or server's choice."""
    with pytest.raises(PolicyViolation) as caught:
        apply_overrides({}, OPEN, {"step_settings_patch": {"openai-chat": {"openai-base-url": "http://evil/v1"}}})
    assert caught.value.field == "request_overrides.step_settings_patch.openai-chat.openai-base-url"


def test_a_step_settings_override_cannot_carry_a_secret():
    with pytest.raises(InvalidInput) as caught:
        apply_overrides({}, OPEN, {"step_settings_patch": {"openai-chat": {"openai-api-key": "sk-x"}}})
    assert caught.value.field == "request_overrides.step_settings_patch.openai-chat.openai-api-key"


# --------------------------------------------------------------------------- engine settings


def test_engine_settings_layer_field_defaults_then_server_then_profile_then_request():
    result = resolve(
        {"step_settings_patch": {"ai-chat": {"ai-engine": "profile-model", "ai-temperature": 0.2}}},
        overrides={"step_settings_patch": {"ai-chat": {"ai-temperature": 0.9}}},
        server_defaults={"ai-chat": {"ai-engine": "server-model", "ai-top-p": 0.5}},
    )
    assert result.engine == {
        "provider": "offline",
        "model": "profile-model",
        "settings": {
            "ai-chat": {"ai-api-type": "offline", "ai-engine": "profile-model", "ai-temperature": 0.9, "ai-top-p": 0.5}
        },
    }


def test_engine_settings_use_the_server_default_when_the_profile_is_silent():
    result = resolve({"system_prompt": "x"}, server_defaults={"ai-chat": {"ai-api-type": "openai", "ai-engine": ""}})
    assert result.engine["provider"] == "openai"
    assert result.engine["model"] == "gpt-4o-mini"  # the engine's default model when none is set


def test_engine_settings_never_take_a_secret_from_the_server_defaults():
    merged = engine_settings({"openai-chat": {"openai-api-key": "sk-test-secret", "openai-base-url": "http://h"}}, None)
    assert merged == {"ai-chat": {"ai-api-type": "offline"}, "openai-chat": {"openai-base-url": "http://h"}}


# --------------------------------------------------------------------------- fingerprint


def test_the_fingerprint_has_the_sha256_format():
    assert FINGERPRINT_RE.match(resolve().fingerprint)


def test_the_fingerprint_is_deterministic():
    runtime = {"system_prompt": "x", "tools": ["calculator"], "middlewares": [{"name": "suggestions"}]}
    assert resolve(runtime).fingerprint == resolve(copy.deepcopy(runtime)).fingerprint


def test_the_fingerprint_does_not_depend_on_key_order():
    a = {"system_prompt": "x", "step_settings_patch": {"ai-chat": {"ai-engine": "m", "ai-temperature": 1}}}
    b = {"step_settings_patch": {"ai-chat": {"ai-temperature": 1, "ai-engine": "m"}}, "system_prompt": "x"}
    assert resolve(a).fingerprint == resolve(b).fingerprint


@pytest.mark.parametrize(
    "change",
    [
        {"version": 2},
        {"registry": "other"},
        {"profile": "other"},
        {"overrides": {"system_prompt": "different"}},
        {"overrides": {"step_settings_patch": {"ai-chat": {"ai-temperature": 0.3}}}},
        {"server_defaults": {"ai-chat": {"ai-engine": "another-model"}}},
    ],
    ids=lambda c: next(iter(c)),
)
def test_the_fingerprint_changes_with_any_input(change):
    assert resolve().fingerprint != resolve(**change).fingerprint


def test_different_overrides_give_different_fingerprints():
    one = resolve(overrides={"system_prompt": "one"})
    two = resolve(overrides={"system_prompt": "two"})
    assert one.fingerprint != two.fingerprint
    assert resolve(overrides={"system_prompt": "one"}).fingerprint == one.fingerprint


def test_the_resolution_result_has_the_documented_shape():
    result = resolve({"system_prompt": "x"}, profile="analyst", registry="default", version=4).as_dict()
    assert set(result) == RESOLUTION_KEYS
    assert (result["registry"], result["profile"], result["runtime_key"], result["profile_version"]) == (
        "default",
        "analyst",
        "analyst",
        4,
    )


# --------------------------------------------------------------------------- stored profiles


@pytest.mark.django_db
def test_the_fingerprint_changes_after_a_profile_write_and_not_after_a_no_op():
    profile = ProfileFactory(slug="fp", runtime={"system_prompt": "one"})
    registry = profile.registry.slug
    first = selectors.profile_resolve(registry_slug=registry, profile_slug="fp")
    assert selectors.profile_resolve(registry_slug=registry, profile_slug="fp").fingerprint == first.fingerprint

    services.profile_update(registry_slug=registry, slug="fp", changes={"runtime": {"system_prompt": "one"}})
    assert selectors.profile_resolve(registry_slug=registry, profile_slug="fp").fingerprint == first.fingerprint

    services.profile_update(registry_slug=registry, slug="fp", changes={"description": "only metadata-ish text"})
    second = selectors.profile_resolve(registry_slug=registry, profile_slug="fp")
    assert second.profile_version == 2
    assert second.fingerprint != first.fingerprint


@pytest.mark.django_db
def test_a_resolution_never_contains_a_secret(settings, seeded, monkeypatch):
    settings.OPENAI_API_KEY = "sk-test-secret"
    settings.OPENAI_BASE_URL = "http://svc:hunter2@llm.internal/v1/?token=t0k"
    settings.CHAT_DEFAULT_API_TYPE = "openai"
    captured: list[dict] = []

    def spy(**kwargs):
        captured.append(kwargs)
        return real_fingerprint(**kwargs)

    monkeypatch.setattr("profiles.resolution.fingerprint", spy)
    results = [
        selectors.profile_resolve(registry_slug=registry, profile_slug=slug)
        for registry, slugs in SEED_PROFILES.items()
        for slug in slugs
    ]
    results.append(
        selectors.profile_resolve(
            registry_slug="default",
            profile_slug="analyst",
            request_overrides={"step_settings_patch": {"ai-chat": {"ai-temperature": 0.3}}},
        )
    )
    assert len(captured) == len(results) == 7
    inputs = json.dumps(captured, sort_keys=True)
    # the spy sees the real inputs: the non-secret server settings are there, the key is not
    assert "http://llm.internal/v1" in inputs  # the server's base URL, without its credentials
    assert "sk-test-secret" not in inputs
    assert "openai-api-key" not in inputs
    assert "hunter2" not in inputs and "t0k" not in inputs
    for result in results:
        text = json.dumps(result.as_dict(), sort_keys=True)
        assert "sk-test-secret" not in text
        assert "hunter2" not in text
        assert "openai-api-key" not in text
        assert FINGERPRINT_RE.match(result.fingerprint)


@pytest.mark.django_db
def test_a_request_cannot_smuggle_a_secret_into_a_resolution(seeded):
    with pytest.raises(InvalidInput) as caught:
        selectors.profile_resolve(
            registry_slug="default",
            profile_slug="analyst",
            request_overrides={"step_settings_patch": {"openai-chat": {"openai-api-key": "sk-test-secret"}}},
        )
    assert caught.value.field == "request_overrides.step_settings_patch.openai-chat.openai-api-key"


@pytest.mark.django_db
def test_resolution_picks_the_given_profile_else_the_default_else_one_named_default():
    registry = RegistryFactory(slug="picks")
    with pytest.raises(InvalidInput) as caught:
        selectors.profile_resolve(registry_slug="picks")
    assert caught.value.field == "profile.slug"

    ProfileFactory(registry=registry, slug="first")
    ProfileFactory(registry=registry, slug="second")
    assert selectors.profile_resolve(registry_slug="picks").profile == "first"
    assert selectors.profile_resolve(registry_slug="picks", profile_slug=" Second ").profile == "second"
    with pytest.raises(NotFound):
        selectors.profile_resolve(registry_slug="picks", profile_slug="third")
    with pytest.raises(InvalidInput) as caught:
        selectors.profile_resolve(registry_slug="picks", profile_slug="bad slug")
    assert caught.value.field == "slug"
    with pytest.raises(NotFound) as caught:
        selectors.profile_resolve(registry_slug="nowhere")
    assert caught.value.field == "registry"


@pytest.mark.django_db
def test_resolution_falls_back_to_a_profile_named_default_when_the_registry_has_none_set():
    registry = RegistryFactory(slug="legacy")
    ProfileFactory(registry=registry, slug="aaa")
    ProfileFactory(registry=registry, slug="default")
    Registry.objects.filter(pk=registry.pk).update(default_profile=None)  # state from before the invariant
    assert selectors.profile_resolve(registry_slug="legacy").profile == "default"


def test_override_errors_name_the_index_the_request_used():
    runtime = stored({"middlewares": [{"name": "redact"}, {"name": "context_window"}, {"name": "agent_mode"}]})
    with pytest.raises(InvalidInput) as caught:
        apply_overrides(runtime, OPEN, {"middlewares": [{"name": "context_window", "config": {"max_turns": 0}}]})
    assert caught.value.field == "request_overrides.middlewares[0].config.max_turns"
    with pytest.raises(InvalidInput) as caught:
        apply_overrides(
            runtime, OPEN, {"middlewares": [{"name": "redact"}, {"name": "suggestions", "config": {"max_items": 99}}]}
        )
    assert caught.value.field == "request_overrides.middlewares[1].config.max_items"
