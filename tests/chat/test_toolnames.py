"""Tool names as providers accept them (`chat.runtime.toolnames`): accepted names stay, others are made
`[A-Za-z0-9_-]{1,64}` and unique, and calls map back to the tools' own names."""

from __future__ import annotations

import re

from chat.gateway.selectors import ModelRow
from chat.mcp.protocol import tool_names
from chat.runtime.base import Message, ToolCall, ToolCallsRequested, ToolSpec
from chat.runtime.toolnames import ProviderNames
from profiles.mounts import Mount

ACCEPTED = re.compile(r"^[A-Za-z0-9_-]{1,64}$")


def test_accepted_names_stay_and_others_are_made_acceptable_and_unique():
    names = ProviderNames(["calculator", "mcp:acme/add", "mcp_acme_add", "mcp:acme.add", "mcp:" + "x" * 80 + "/y"])

    wire = names.wire
    assert wire["calculator"] == "calculator" and wire["mcp_acme_add"] == "mcp_acme_add"
    assert all(ACCEPTED.match(w) for w in wire.values())
    assert len(set(wire.values())) == len(wire)
    assert wire["mcp:acme/add"].startswith("mcp_acme_add_")  # the plain form was taken


def test_specs_messages_and_calls_round_trip():
    names = ProviderNames(["mcp:acme/add", "calculator"])
    specs = names.specs([ToolSpec("mcp:acme/add", "Add.", {"type": "object"}), ToolSpec("calculator", "", {})])
    history = names.messages(
        [
            Message("assistant", "", tool_calls=[ToolCall("c1", "mcp:acme/add", {"a": 1})]),
            Message("tool", "2", tool_call_id="c1", name="mcp:acme/add"),
        ]
    )
    back = names.calls(ToolCallsRequested([ToolCall("c2", "mcp_acme_add", {}), ToolCall("c3", "unknown", {})]))

    assert [s.name for s in specs] == ["mcp_acme_add", "calculator"]
    assert history[0].tool_calls[0].name == "mcp_acme_add" and history[1].name == "mcp_acme_add"
    assert [c.name for c in back.calls] == ["mcp:acme/add", "unknown"]
    assert not ProviderNames(["calculator"]).renames


def test_profiles_are_served_as_ask_tools_with_names_mcp_accepts():
    mount = Mount(name="chat", prefix="", default_registry="default")
    rows = [
        ModelRow("default", "support-desk", 0),
        ModelRow("other", "agent", 0),
        ModelRow("default", "agent", 0, label="production"),
        ModelRow("default", "agent", 0),
    ]

    names = tool_names(rows, mount)

    assert list(names) == ["ask_support-desk", "ask_other_agent", "ask_agent_production", "ask_agent"]
    assert all(re.match(r"^[A-Za-z0-9_.-]{1,128}$", n) for n in names)


def test_ask_names_two_models_would_share_get_a_stable_suffix_of_their_own():
    mount = Mount(name="chat", prefix="", default_registry="default")
    one, two = ModelRow("other", "agent", 0), ModelRow("default", "other_agent", 0)  # both ask_other_agent

    first = tool_names([one, two], mount)
    alone = tool_names([two], mount)

    assert len(first) == 2 and all(name.startswith("ask_other_agent-") for name in first)
    assert [name for name, row in first.items() if row == two] != list(alone)  # alone it needs no suffix
    assert tool_names([two, one], mount) == {name: row for name, row in first.items()}  # whatever the order
