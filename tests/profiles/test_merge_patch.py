"""`profiles.merge_patch`: JSON Merge Patch (RFC 7396), checked against the RFC's own examples, and
`profiles.patches`: what a profile or registry patch changes (the write services validate it)."""

from __future__ import annotations

import copy

import pytest

from profiles.errors import InvalidInput
from profiles.merge_patch import merge_patch
from profiles.patches import profile_changes, registry_changes

# RFC 7396, Appendix A: (original, patch, result).
RFC_APPENDIX_A = [
    ({"a": "b"}, {"a": "c"}, {"a": "c"}),
    ({"a": "b"}, {"b": "c"}, {"a": "b", "b": "c"}),
    ({"a": "b"}, {"a": None}, {}),
    ({"a": "b", "b": "c"}, {"a": None}, {"b": "c"}),
    ({"a": ["b"]}, {"a": "c"}, {"a": "c"}),
    ({"a": "c"}, {"a": ["b"]}, {"a": ["b"]}),
    ({"a": {"b": "c"}}, {"a": {"b": "d", "c": None}}, {"a": {"b": "d"}}),
    ({"a": [{"b": "c"}]}, {"a": [1]}, {"a": [1]}),
    (["a", "b"], ["c", "d"], ["c", "d"]),
    ({"a": "b"}, ["c"], ["c"]),
    ({"a": "foo"}, None, None),
    ({"a": "foo"}, "bar", "bar"),
    ({"e": None}, {"a": 1}, {"e": None, "a": 1}),
    ([1, 2], {"a": "b", "c": None}, {"a": "b"}),
    ({}, {"a": {"bb": {"ccc": None}}}, {"a": {"bb": {}}}),
]


@pytest.mark.parametrize(("original", "patch", "result"), RFC_APPENDIX_A)
def test_the_examples_of_rfc_7396_appendix_a(original, patch, result):
    assert merge_patch(original, patch) == result


def test_the_example_of_rfc_7396_section_3():
    target = {
        "title": "Goodbye!",
        "author": {"givenName": "John", "familyName": "Doe"},
        "tags": ["example", "sample"],
        "content": "This will be unchanged",
    }
    patch = {"title": "Hello!", "phoneNumber": "+01-123-456-7890", "author": {"familyName": None}, "tags": ["example"]}
    assert merge_patch(target, patch) == {
        "title": "Hello!",
        "author": {"givenName": "John"},
        "tags": ["example"],
        "content": "This will be unchanged",
        "phoneNumber": "+01-123-456-7890",
    }


def test_neither_argument_changes_and_the_result_shares_nothing_with_them():
    target = {"keep": {"deep": [1, {"x": 1}]}, "drop": 1, "inner": {"a": 1}}
    patch = {"drop": None, "inner": {"b": [1, 2]}, "new": {"n": {"m": 1}}}
    before_target, before_patch = copy.deepcopy(target), copy.deepcopy(patch)

    result = merge_patch(target, patch)
    result["keep"]["deep"][1]["x"] = 2
    result["inner"]["b"].append(3)
    result["new"]["n"]["m"] = 2

    assert (target, patch) == (before_target, before_patch)


# --------------------------------------------------------------------------- what a patch changes

STORED = {
    "display_name": "Agent",
    "description": "A description.",
    "runtime": {"system_prompt": "Be careful.", "tools": ["calculator"], "middlewares": [{"name": "redact"}]},
    "policy": {"allow_overrides": True, "allowed_override_keys": ["system_prompt"], "read_only": False},
    "extensions": {"webchat.starter_suggestions@v1": {"items": ["Hi"]}, "acme.x@v1": 1},
    "stack": [{"registry": "default", "slug": "default"}],
    "visible_to_groups": ["support"],
}


def test_a_profile_patch_merges_each_field_it_names_and_leaves_out_the_others():
    changes = profile_changes(STORED, {"runtime": {"system_prompt": "Be terse.", "tools": []}})
    assert changes == {"runtime": {"system_prompt": "Be terse.", "tools": [], "middlewares": [{"name": "redact"}]}}


@pytest.mark.parametrize(
    ("field", "empty"),
    [
        ("description", ""),
        ("runtime", {}),
        ("policy", {}),
        ("extensions", {}),
        ("stack", []),
        ("visible_to_groups", []),
    ],
)
def test_null_empties_an_optional_profile_field(field, empty):
    assert profile_changes(STORED, {field: None}) == {field: empty}


def test_null_on_the_display_name_is_a_400_on_its_path():
    with pytest.raises(InvalidInput) as caught:
        profile_changes(STORED, {"display_name": None, "description": "x"})
    assert caught.value.field == "display_name"
    assert "required" in caught.value.message


def test_extension_keys_of_a_patch_are_compared_canonical():
    changes = profile_changes(STORED, {"extensions": {" Acme.X@V1 ": None, "Acme.New@v1": 2}})
    assert changes == {"extensions": {"webchat.starter_suggestions@v1": {"items": ["Hi"]}, "acme.new@v1": 2}}


def test_extension_keys_that_collide_are_left_for_validation_to_name():
    patch = {"extensions": {"acme.y@v1": 1, "ACME.Y@v1": 2}}
    assert set(profile_changes(STORED, patch)["extensions"]) >= {"acme.y@v1", "ACME.Y@v1"}


def test_a_registry_patch_names_the_update_arguments_and_empties_optional_fields():
    assert registry_changes(
        {"display_name": "R", "default_profile_slug": "x", "serve_label": None, "editor_groups": None}
    ) == {"display_name": "R", "default_profile": "x", "serve_label": "", "editor_groups": []}


@pytest.mark.parametrize("field", ["display_name", "default_profile_slug"])
def test_null_on_a_required_registry_field_is_a_400_on_its_path(field):
    with pytest.raises(InvalidInput) as caught:
        registry_changes({field: None})
    assert caught.value.field == field
