"""Request bodies bind shallow copies of their declared fields: no deep copy per request, and each body's
fields are its own (bound to it, validated against its own data and context)."""

from __future__ import annotations

import pytest
from rest_framework import fields as drf_fields
from rest_framework import serializers

from chat.gateway.serializers import ChatCompletionRequestSerializer
from profiles.api.serializers import StrictKeysMixin


class _PageBody(StrictKeysMixin, serializers.Serializer):
    fixed = ("registry",)
    registry = serializers.CharField()
    tags = serializers.ListField(child=serializers.CharField(max_length=3))


def completion(**extra):
    return {"model": "m", "messages": [{"role": "user", "content": "hi"}], **extra}


def test_validating_a_body_deep_copies_no_field(monkeypatch):
    def refused(self, memo):
        raise AssertionError("a declared field was deep-copied")

    monkeypatch.setattr(drf_fields.Field, "__deepcopy__", refused)
    body = ChatCompletionRequestSerializer(data=completion(stream=True, stream_options={"include_usage": True}))
    assert body.is_valid(), body.errors
    assert body.validated_data["stream_options"] == {"include_usage": True}


def test_each_body_binds_its_own_fields_and_leaves_the_declared_ones_unbound():
    first, second = _PageBody(data={}), _PageBody(data={})
    assert first.fields["tags"] is not second.fields["tags"]
    assert first.fields["tags"].parent is first
    assert second.fields["registry"].root is second
    declared = _PageBody._declared_fields["registry"]
    assert declared.parent is None and declared.field_name is None


def test_a_nested_error_keeps_its_path_after_a_valid_body():
    assert ChatCompletionRequestSerializer(data=completion()).is_valid()
    body = ChatCompletionRequestSerializer(
        data=completion(messages=[{"role": "user", "content": "a"}, {"role": "robot", "content": "b"}])
    )
    assert not body.is_valid()
    assert "role" in body.errors["messages"][1]


@pytest.mark.parametrize(("context", "valid"), [({"registry": "default"}, True), ({"registry": "other"}, False)])
def test_a_fixed_key_is_checked_against_this_bodys_own_context(context, valid):
    body = _PageBody(data={"registry": "default", "tags": ["a", "bc"]}, context=context)
    assert body.is_valid() is valid
    if not valid:
        assert body.errors == {"registry": ["registry cannot be changed"]}


def test_a_list_items_rule_still_applies():
    body = _PageBody(data={"registry": "x", "tags": ["toolong"]})
    assert not body.is_valid()
    assert body.errors["tags"][0] == ["Ensure this field has no more than 3 characters."]
