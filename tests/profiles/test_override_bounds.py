"""Value bounds of request overrides: a policy allows keys, the server bounds the values they carry.

Unit tests on `profiles.overrides` and `profiles.resolution` first, then the real resolve endpoint on both mounts with the
seeded `default/analyst` profile (policy: overrides of `system_prompt` and `step_settings_patch`).
"""

from __future__ import annotations

import os

import pytest

from profiles.errors import PolicyViolation
from profiles.overrides import OverrideBounds
from profiles.resolution import resolve_runtime
from profiles.validation import validate_runtime

from .support import error_of

OPEN = {"allow_overrides": True, "allowed_override_keys": [], "denied_override_keys": [], "read_only": False}
DEFAULTS = OverrideBounds(api_types=("offline",), models=("",), max_timeout_seconds=60, max_response_tokens=4096)
BOTH_ENGINES = OverrideBounds(
    api_types=("offline", "openai"), models=("",), max_timeout_seconds=60, max_response_tokens=4096
)
LOOSE = OverrideBounds(api_types=("*",), models=("*",), max_timeout_seconds=600, max_response_tokens=10**6)
SERVER = {"ai-chat": {"ai-api-type": "offline", "ai-engine": ""}}


def path(name: str) -> str:
    return f"request_overrides.step_settings_patch.ai-chat.{name}"


def resolve(chat: dict, *, bounds: OverrideBounds | None = DEFAULTS, profile_chat: dict | None = None):
    runtime, errors = validate_runtime(
        {"system_prompt": "base", "step_settings_patch": {"ai-chat": profile_chat}} if profile_chat else {}
    )
    assert errors == []
    return resolve_runtime(
        registry="default",
        profile="analyst",
        profile_version=1,
        runtime=runtime,
        policy=OPEN,
        request_overrides={"step_settings_patch": {"ai-chat": chat}},
        server_defaults=SERVER,
        bounds=bounds,
    )


def refused(chat: dict, **kwargs) -> PolicyViolation:
    with pytest.raises(PolicyViolation) as caught:
        resolve(chat, **kwargs)
    assert caught.value.code == "policy_violation"
    return caught.value


# --------------------------------------------------------------------------- resolution (unit)


def test_a_request_may_only_switch_to_an_allowed_engine():
    error = refused({"ai-api-type": "openai"})
    assert error.field == path("ai-api-type")
    assert "CHAT_OVERRIDE_ALLOWED_API_TYPES" in error.message
    assert resolve({"ai-api-type": "offline"}).engine["provider"] == "offline"
    assert resolve({"ai-api-type": "openai"}, bounds=BOTH_ENGINES).engine["provider"] == "openai"


def test_a_request_may_only_switch_to_an_allowed_model():
    error = refused({"ai-api-type": "openai", "ai-engine": "gpt-4o"}, bounds=BOTH_ENGINES)
    assert error.field == path("ai-engine")
    assert "CHAT_OVERRIDE_ALLOWED_MODELS" in error.message
    assert refused({"ai-engine": "offline-v2"}).field == path("ai-engine")
    # "" in the list is the engine's default model, by name or left empty.
    assert resolve({"ai-api-type": "openai"}, bounds=BOTH_ENGINES).engine["model"] == "gpt-4o-mini"
    assert resolve({"ai-api-type": "openai", "ai-engine": "gpt-4o-mini"}, bounds=BOTH_ENGINES).engine["model"] == (
        "gpt-4o-mini"
    )
    listed = OverrideBounds(("offline", "openai"), ("gpt-4o",), 60, 4096)
    assert resolve({"ai-api-type": "openai", "ai-engine": "gpt-4o"}, bounds=listed).engine["model"] == "gpt-4o"


def test_switching_the_engine_alone_is_refused_when_its_model_is_not_allowed():
    only_llama = OverrideBounds(("offline", "openai"), ("llama3.1",), 60, 4096)
    assert refused({"ai-api-type": "openai"}, bounds=only_llama).field == path("ai-api-type")


@pytest.mark.parametrize(
    ("name", "above", "at", "below", "setting"),
    [
        ("ai-timeout-seconds", 60.5, 60, 30, "CHAT_OVERRIDE_MAX_TIMEOUT_SECONDS"),
        ("ai-max-response-tokens", 4097, 4096, 100, "CHAT_OVERRIDE_MAX_RESPONSE_TOKENS"),
    ],
)
def test_a_request_cannot_raise_a_limit_past_the_bound(name, above, at, below, setting):
    error = refused({name: above})
    assert error.field == path(name)
    assert setting in error.message
    assert resolve({name: at}).engine["settings"]["ai-chat"][name] == at
    assert resolve({name: below}).engine["settings"]["ai-chat"][name] == below


def test_a_request_may_keep_or_lower_what_the_profile_set_but_not_raise_or_clear_it():
    profile_chat = {"ai-api-type": "openai", "ai-engine": "gpt-4o", "ai-timeout-seconds": 120}
    restated = resolve(profile_chat, profile_chat=profile_chat)
    assert restated.engine["model"] == "gpt-4o"
    assert (
        resolve({"ai-timeout-seconds": 90}, profile_chat=profile_chat).engine["settings"]["ai-chat"][
            "ai-timeout-seconds"
        ]
        == 90
    )
    assert refused({"ai-timeout-seconds": 121}, profile_chat=profile_chat).field == path("ai-timeout-seconds")
    capped = {"ai-max-response-tokens": 500}
    assert refused({"ai-max-response-tokens": None}, profile_chat=capped).field == path("ai-max-response-tokens")


def test_bounds_refuse_requests_but_never_change_a_fingerprint():
    request = {"ai-timeout-seconds": 60, "ai-max-response-tokens": 4096}
    assert resolve(request).fingerprint == resolve(request, bounds=LOOSE).fingerprint
    assert refused(request, bounds=OverrideBounds(("offline",), ("",), 59, 4096)).field == path("ai-timeout-seconds")


def test_without_explicit_bounds_resolution_uses_the_server_settings(settings):
    settings.CHAT_OVERRIDE_MAX_TIMEOUT_SECONDS = 20
    settings.CHAT_OVERRIDE_ALLOWED_API_TYPES = []  # empty: the server's default engine only
    assert refused({"ai-timeout-seconds": 21}, bounds=None).field == path("ai-timeout-seconds")
    assert refused({"ai-api-type": "openai"}, bounds=None).field == path("ai-api-type")
    assert resolve({"ai-timeout-seconds": 20}, bounds=None).engine["settings"]["ai-chat"]["ai-timeout-seconds"] == 20


@pytest.mark.skipif(
    any(k.startswith(("CHAT_OVERRIDE_", "CHAT_DEFAULT_")) for k in os.environ), reason="bounds set in the environment"
)
def test_the_default_bounds_are_the_servers_engine_and_model_60_seconds_and_4096_tokens(settings):
    assert OverrideBounds.server() == OverrideBounds(("offline",), ("",), 60.0, 4096)


# --------------------------------------------------------------------------- resolve endpoint (both mounts)


def analyst_resolve(client, mount, chat: dict):
    return client.post(
        mount.url("/profiles/analyst/resolve?registry=default"),
        {"request_overrides": {"step_settings_patch": {"ai-chat": chat}}},
        format="json",
    )


def assert_refused(response, name: str) -> None:
    assert response.status_code == 403, response.content
    error = error_of(response)
    assert (error["code"], error["field"]) == ("policy_violation", path(name))


def test_api_a_plain_user_cannot_switch_the_analyst_to_openai(mount, seeded, api_reader, settings):
    settings.CHAT_OVERRIDE_ALLOWED_API_TYPES = ["offline"]
    settings.CHAT_OVERRIDE_ALLOWED_MODELS = [""]
    assert_refused(analyst_resolve(api_reader, mount, {"ai-api-type": "openai"}), "ai-api-type")
    assert_refused(analyst_resolve(api_reader, mount, {"ai-api-type": "openai", "ai-engine": "gpt-4o"}), "ai-api-type")
    settings.CHAT_OVERRIDE_ALLOWED_API_TYPES = ["offline", "openai"]
    assert_refused(analyst_resolve(api_reader, mount, {"ai-api-type": "openai", "ai-engine": "gpt-4o"}), "ai-engine")
    allowed = analyst_resolve(api_reader, mount, {"ai-api-type": "openai"})
    assert allowed.status_code == 200, allowed.content
    assert (allowed.json()["engine"]["provider"], allowed.json()["engine"]["model"]) == ("openai", "gpt-4o-mini")


@pytest.mark.parametrize(
    ("name", "setting", "bound"),
    [
        ("ai-timeout-seconds", "CHAT_OVERRIDE_MAX_TIMEOUT_SECONDS", 60),
        ("ai-max-response-tokens", "CHAT_OVERRIDE_MAX_RESPONSE_TOKENS", 4096),
    ],
)
def test_api_a_plain_user_cannot_raise_the_analysts_limits_past_the_bound(
    mount, seeded, api_reader, settings, name, setting, bound
):
    setattr(settings, setting, bound)
    assert_refused(analyst_resolve(api_reader, mount, {name: bound + 1}), name)
    at = analyst_resolve(api_reader, mount, {name: bound})
    assert at.status_code == 200, at.content
    assert at.json()["engine"]["settings"]["ai-chat"][name] == bound
    setattr(settings, setting, bound * 10)  # a looser bound accepts the same request with the same fingerprint
    assert analyst_resolve(api_reader, mount, {name: bound}).json()["fingerprint"] == at.json()["fingerprint"]


# --------------------------------------------------------------------------- the profile's own bounds


def test_a_profiles_bounds_replace_the_servers_field_by_field():
    bounds = DEFAULTS.with_policy({"max_timeout_seconds": 10, "api_types": ["offline", "openai"]})
    assert (bounds.max_timeout_seconds, bounds.api_types) == (10, ("offline", "openai"))
    assert (bounds.models, bounds.max_response_tokens) == (DEFAULTS.models, DEFAULTS.max_response_tokens)
    assert DEFAULTS.with_policy(None) == DEFAULTS == DEFAULTS.with_policy({})


@pytest.mark.parametrize(
    ("raw", "field"),
    [
        ({"max_timeout_seconds": 0}, "policy.value_bounds.max_timeout_seconds"),
        ({"max_timeout_seconds": float("nan")}, "policy.value_bounds.max_timeout_seconds"),
        ({"max_response_tokens": 1.5}, "policy.value_bounds.max_response_tokens"),
        ({"max_response_tokens": True}, "policy.value_bounds.max_response_tokens"),
        ({"models": "gpt-4o"}, "policy.value_bounds.models"),
        ({"api_types": [" "]}, "policy.value_bounds.api_types"),
        ({"budget": 5}, "policy.value_bounds.budget"),
        ([], "policy.value_bounds"),
    ],
)
def test_invalid_value_bounds_are_refused_with_their_path(raw, field):
    from profiles.validation import validate_policy

    _, errors = validate_policy({"allow_overrides": True, "value_bounds": raw})
    assert [path for path, _ in errors] == [field]


def test_value_bounds_are_stored_canonical_and_only_when_set():
    from profiles.validation import validate_policy

    assert "value_bounds" not in validate_policy({"allow_overrides": True})[0]
    policy, errors = validate_policy({"value_bounds": {"api_types": ["OpenAI ", "offline", "openai"], "models": [""]}})
    assert errors == []
    assert policy["value_bounds"] == {"api_types": ["offline", "openai"], "models": [""]}


def bounded_analyst(client, mount, value_bounds: dict):
    """The seeded analyst with `value_bounds` in its policy, saved through the API by an editor."""
    current = client.get(mount.url("/profiles/analyst?registry=default")).json()
    response = client.patch(
        mount.url("/profiles/analyst?registry=default"),
        {"policy": {**current["policy"], "value_bounds": value_bounds}},
        format="json",
        HTTP_IF_MATCH=f'"{current["metadata"]["version"]}"',
    )
    assert response.status_code == 200, response.content
    assert response.json()["policy"]["value_bounds"] == value_bounds


def test_api_a_profiles_tighter_bound_refuses_what_the_server_would_allow(
    mount, seeded, api_editor, api_reader, settings
):
    settings.CHAT_OVERRIDE_MAX_TIMEOUT_SECONDS = 60
    assert analyst_resolve(api_reader, mount, {"ai-timeout-seconds": 30}).status_code == 200
    bounded_analyst(api_editor, mount, {"max_timeout_seconds": 20})
    response = analyst_resolve(api_reader, mount, {"ai-timeout-seconds": 30})
    assert_refused(response, "ai-timeout-seconds")
    assert "policy.value_bounds.max_timeout_seconds" in error_of(response)["message"]
    assert analyst_resolve(api_reader, mount, {"ai-timeout-seconds": 20}).status_code == 200


def test_api_a_profiles_own_engine_list_allows_what_the_server_default_refuses(
    mount, seeded, api_editor, api_reader, settings
):
    settings.CHAT_OVERRIDE_ALLOWED_API_TYPES = ["offline"]
    settings.CHAT_OVERRIDE_ALLOWED_MODELS = [""]
    assert_refused(analyst_resolve(api_reader, mount, {"ai-api-type": "openai", "ai-engine": "gpt-4o"}), "ai-api-type")
    bounded_analyst(api_editor, mount, {"api_types": ["offline", "openai"], "models": ["gpt-4o"]})
    allowed = analyst_resolve(api_reader, mount, {"ai-api-type": "openai", "ai-engine": "gpt-4o"})
    assert allowed.status_code == 200, allowed.content
    assert allowed.json()["engine"]["model"] == "gpt-4o"
    assert_refused(analyst_resolve(api_reader, mount, {"ai-api-type": "openai", "ai-engine": "o3"}), "ai-engine")


def test_api_invalid_value_bounds_are_a_400_with_the_field_and_write_nothing(mount, seeded, api_editor):
    current = api_editor.get(mount.url("/profiles/analyst?registry=default")).json()
    response = api_editor.patch(
        mount.url("/profiles/analyst?registry=default"),
        {"policy": {**current["policy"], "value_bounds": {"max_response_tokens": -1}}},
        format="json",
        HTTP_IF_MATCH=f'"{current["metadata"]["version"]}"',
    )
    assert response.status_code == 400, response.content
    assert error_of(response)["field"] == "policy.value_bounds.max_response_tokens"
    after = api_editor.get(mount.url("/profiles/analyst?registry=default")).json()
    assert after["metadata"]["version"] == current["metadata"]["version"]
    assert "value_bounds" not in after["policy"]
