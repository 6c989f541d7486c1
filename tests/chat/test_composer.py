"""The composer: a resolution (+ the mount's tools) -> a runtime, deterministically, cached by fingerprint.

No database: resolutions are built with `profiles.resolution.resolve_runtime` from plain dicts.
"""

from __future__ import annotations

from typing import Any

import pytest

from chat.mounts import CHAT_MOUNT
from chat.runtime.base import ToolSpec
from chat.runtime.composer import Runtime, RuntimeCache, compose
from chat.runtime.engines import OfflineEngine
from inventory.mounts import INVENTORY_MOUNT
from profiles.definitions import definitions
from profiles.resolution import Resolution, resolve_runtime

CHAT_TOOLS = CHAT_MOUNT.tool_names()
INVENTORY_TOOLS = INVENTORY_MOUNT.tool_names()


def resolution(runtime: dict[str, Any], *, profile: str = "p", version: int = 1, registry: str = "r") -> Resolution:
    return resolve_runtime(registry=registry, profile=profile, profile_version=version, runtime=runtime, policy={})


def make_engine(engine_settings: dict[str, dict[str, Any]]) -> OfflineEngine:
    return OfflineEngine(model=engine_settings.get("ai-chat", {}).get("ai-engine") or "offline-v1")


def build(res: Resolution, mount_tools: frozenset[str] = CHAT_TOOLS) -> Runtime:
    return compose(res, mount_tools=mount_tools, defs=definitions, make_engine=make_engine)


def chain(runtime: Runtime) -> list[tuple[str, str | None, dict[str, Any]]]:
    return [(m.name, m.id, m.config) for m in runtime.middlewares]


CHAIN_RUNTIME = {
    "system_prompt": "You are a test assistant.",
    "middlewares": [
        {"name": "suggestions", "id": "followups", "config": {"max_items": 2}},
        {"name": "redact", "config": {"kinds": ["email"]}},
        {"name": "guardrail", "enabled": False, "config": {"blocked_terms": ["x"]}},
        {"name": "agent_mode", "enabled": True, "config": {"default_mode": "act"}},
        {"name": "context_window", "config": {"max_turns": 4}},
    ],
    "tools": ["calculator"],
}


def test_chain_follows_the_profile_order_and_skips_disabled_entries():
    runtime = build(resolution(CHAIN_RUNTIME))

    assert chain(runtime) == [
        ("suggestions", "followups", {"max_items": 2}),
        ("redact", None, {"kinds": ["email"]}),
        ("agent_mode", None, {"default_mode": "act"}),
        ("context_window", None, {"max_turns": 4}),
    ]
    assert runtime.middleware_summary() == [
        {"name": "suggestions", "id": "followups"},
        {"name": "redact", "id": None},
        {"name": "agent_mode", "id": None},
        {"name": "context_window", "id": None},
    ]


def test_chain_order_is_the_profiles_not_a_built_in_one():
    reversed_runtime = {**CHAIN_RUNTIME, "middlewares": list(reversed(CHAIN_RUNTIME["middlewares"]))}

    runtime = build(resolution(reversed_runtime))

    assert [m.name for m in runtime.middlewares] == ["context_window", "agent_mode", "redact", "suggestions"]


def test_profile_without_middlewares_gets_an_empty_chain():
    runtime = build(resolution({"system_prompt": "You are a concise assistant."}))

    assert runtime.middlewares == ()
    assert runtime.tools == ()
    assert runtime.system_prompt == "You are a concise assistant."


def test_tools_are_the_allow_list_intersected_with_the_mount_in_profile_order():
    res = resolution({"tools": ["current_time", "inventory_low_stock", "calculator"]})

    on_chat = build(res, CHAT_TOOLS)
    on_inventory = build(res, INVENTORY_TOOLS)

    # The inventory tool is not offered by the chat mount: dropped. Order is the profile's (not sorted).
    assert on_chat.tool_names == ["current_time", "calculator"]
    assert on_inventory.tool_names == ["current_time", "inventory_low_stock", "calculator"]


def test_a_mount_tool_outside_the_allow_list_is_not_added():
    runtime = build(resolution({"tools": ["calculator"]}), INVENTORY_TOOLS)

    assert runtime.tool_names == ["calculator"]


def test_tool_specs_contain_only_the_allowed_tools():
    runtime = build(resolution({"tools": ["calculator", "inventory_report"]}), CHAT_TOOLS)

    specs = runtime.tool_specs()

    assert specs == [
        ToolSpec("calculator", definitions.tools["calculator"].description, definitions.tools["calculator"].parameters)
    ]
    assert all(isinstance(spec, ToolSpec) for spec in specs)


def test_same_resolution_composes_the_same_runtime():
    res = resolution(CHAIN_RUNTIME)
    again = resolution(CHAIN_RUNTIME)  # resolved twice from the same input

    first, second = build(res), build(again)

    assert res.fingerprint == again.fingerprint
    assert first is not second
    assert chain(first) == chain(second)
    assert [type(m) for m in first.middlewares] == [type(m) for m in second.middlewares]
    assert first.tool_names == second.tool_names
    assert first.system_prompt == second.system_prompt
    assert first.marker() == second.marker()
    assert first.record() == second.record()


def test_without_a_context_window_the_servers_default_bounds_the_history():
    res = resolution({"system_prompt": "x"})

    runtime = compose(res, mount_tools=CHAT_TOOLS, defs=definitions, make_engine=make_engine, default_history_turns=7)

    assert runtime.history_turns == 7
    assert runtime.record()["engine"]["history_turns"] == 7


def test_runtime_record_carries_the_resolution():
    res = resolution(CHAIN_RUNTIME, profile="agent", version=7, registry="default")

    runtime = build(res)

    assert runtime.runtime_key == "agent"
    assert runtime.marker() == {"runtime_key": "agent", "fingerprint": res.fingerprint, "profile_version": 7}
    record = runtime.record()
    assert record["registry"] == "default"
    assert record["profile_slug"] == "agent"
    # the chain's context window (4 turns, the current one included) bounds the history loaded
    assert record["engine"] == {"provider": "offline", "model": "offline-v1", "history_turns": 3}
    assert record["tools"] == ["calculator"]
    assert [m["name"] for m in record["middlewares"]] == ["suggestions", "redact", "agent_mode", "context_window"]
    assert isinstance(runtime.engine, OfflineEngine)


def test_unknown_middleware_cannot_be_composed():
    with pytest.raises(KeyError):
        build(resolution({"middlewares": [{"name": "no_such_middleware"}]}))


# --------------------------------------------------------------------------- the cache


class CountingBuild:
    def __init__(self, res: Resolution) -> None:
        self.res, self.calls = res, 0

    def __call__(self) -> Runtime:
        self.calls += 1
        return build(self.res)


def test_cache_reuses_the_runtime_for_the_same_fingerprint():
    cache = RuntimeCache()
    res = resolution(CHAIN_RUNTIME)
    builder = CountingBuild(res)

    first = cache.get_or_build("chat", res, builder)
    assert cache.builds == 1
    second = cache.get_or_build("chat", resolution(CHAIN_RUNTIME), builder)

    assert second is first
    assert cache.builds == 1
    assert cache.hits == 1
    assert builder.calls == 1
    assert len(cache) == 1


def test_cache_builds_a_new_runtime_for_a_different_fingerprint():
    cache = RuntimeCache()
    v1 = resolution(CHAIN_RUNTIME, version=1)
    v2 = resolution(CHAIN_RUNTIME, version=2)
    assert v1.fingerprint != v2.fingerprint

    first = cache.get_or_build("chat", v1, CountingBuild(v1))
    second = cache.get_or_build("chat", v2, CountingBuild(v2))

    assert second is not first
    assert second.profile_version == 2
    assert cache.builds == 2
    assert cache.hits == 0
    # the first one is still cached
    assert cache.get_or_build("chat", v1, CountingBuild(v1)) is first
    assert cache.builds == 2


def test_cache_keys_by_mount_too():
    cache = RuntimeCache()
    res = resolution({"tools": ["calculator", "inventory_low_stock"]})

    on_chat = cache.get_or_build("chat", res, lambda: build(res, CHAT_TOOLS))
    on_inventory = cache.get_or_build("inventory", res, lambda: build(res, INVENTORY_TOOLS))

    assert on_chat is not on_inventory
    assert on_chat.tool_names == ["calculator"]
    assert on_inventory.tool_names == ["calculator", "inventory_low_stock"]
    assert cache.builds == 2


def test_cache_evicts_the_least_recently_used():
    cache = RuntimeCache(max_size=2)
    a, b, c = (resolution({}, version=n) for n in (1, 2, 3))
    first = cache.get_or_build("chat", a, lambda: build(a))
    cache.get_or_build("chat", b, lambda: build(b))
    cache.get_or_build("chat", a, lambda: build(a))  # a is now the most recent
    cache.get_or_build("chat", c, lambda: build(c))  # evicts b

    assert len(cache) == 2
    assert cache.get_or_build("chat", a, lambda: build(a)) is first
    builds = cache.builds
    cache.get_or_build("chat", b, lambda: build(b))
    assert cache.builds == builds + 1


def test_worker_runtime_for_goes_through_the_process_cache():
    from chat.composition import runtime_cache, runtime_for

    res = resolution({"system_prompt": "You are a concise assistant.", "tools": ["calculator", "inventory_report"]})

    first = runtime_for("chat", res)
    second = runtime_for("chat", res)

    assert second is first
    assert runtime_cache.builds == 1
    assert first.tool_names == ["calculator"]
    assert first.engine.provider == "offline"
