"""Structured diffs of profile documents: each kind of change, at validation-grammar paths."""

from __future__ import annotations

from profiles.diff import document_diff

GUARD = {"name": "guardrail", "id": "g1", "config": {"blocked_terms": ["a"]}}
REDACT = {"name": "redact", "config": {"kinds": ["email"]}}
BASE = {
    "display_name": "Agent",
    "description": "d",
    "runtime": {"system_prompt": "p", "tools": ["calculator", "current_time"], "middlewares": [GUARD, REDACT]},
    "policy": {"allow_overrides": False, "allowed_override_keys": []},
    "extensions": {"webchat.starter_suggestions@v1": {"items": ["x"]}},
}


def changed(**parts) -> dict:
    return {**BASE, **parts}


def test_identical_documents_have_no_changes():
    assert document_diff(BASE, dict(BASE)) == []


def test_a_scalar_change_names_its_path_and_both_values():
    assert document_diff(BASE, changed(description="e")) == [
        {"op": "change", "path": "description", "from": "d", "to": "e"}
    ]


def test_list_items_are_added_removed_and_changed_by_index():
    runtime = {**BASE["runtime"], "tools": ["current_time"]}
    assert document_diff(BASE, changed(runtime=runtime)) == [
        {"op": "change", "path": "runtime.tools[0]", "from": "calculator", "to": "current_time"},
        {"op": "remove", "path": "runtime.tools[1]", "from": "current_time"},
    ]


def test_middlewares_are_addressed_by_name_and_id_not_position():
    guard = {**GUARD, "config": {"blocked_terms": ["a", "b"]}}
    runtime = {**BASE["runtime"], "middlewares": [guard, REDACT]}
    assert document_diff(BASE, changed(runtime=runtime)) == [
        {"op": "add", "path": "runtime.middlewares[guardrail#g1].config.blocked_terms[1]", "to": "b"}
    ]
    removed = {**BASE["runtime"], "middlewares": [REDACT]}
    assert document_diff(BASE, changed(runtime=removed)) == [
        {"op": "remove", "path": "runtime.middlewares[guardrail#g1]", "from": GUARD}
    ]


def test_a_reordered_chain_is_one_change_of_the_order():
    runtime = {**BASE["runtime"], "middlewares": [REDACT, GUARD]}
    assert document_diff(BASE, changed(runtime=runtime)) == [
        {
            "op": "change",
            "path": "runtime.middlewares",
            "from": ["guardrail#g1", "redact"],
            "to": ["redact", "guardrail#g1"],
        }
    ]


def test_extensions_are_addressed_by_their_key_in_brackets():
    extensions = {"webchat.starter_suggestions@v1": {"items": ["x", "y"]}, "acme.note@v1": "hi"}
    assert document_diff(BASE, changed(extensions=extensions)) == [
        {"op": "add", "path": "extensions[acme.note@v1]", "to": "hi"},
        {"op": "add", "path": "extensions[webchat.starter_suggestions@v1].items[1]", "to": "y"},
    ]


def test_added_and_removed_keys_of_objects():
    policy = {"allow_overrides": True, "read_only": True}
    assert document_diff(BASE, changed(policy=policy)) == [
        {"op": "change", "path": "policy.allow_overrides", "from": False, "to": True},
        {"op": "remove", "path": "policy.allowed_override_keys", "from": []},
        {"op": "add", "path": "policy.read_only", "to": True},
    ]
