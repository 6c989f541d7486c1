"""Write serializers: request bodies parsed for types only (the service layer owns every rule, so the admin
and the importer get the same ones), every one strict about unknown keys."""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from django.utils.functional import cached_property
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from ..openapi import GROUP_DEFAULTS_SCHEMA, GROUPS_SCHEMA, JSON_OBJECT_SCHEMA, REF_SCHEMA, SLUG_SCHEMA, STACK_SCHEMA

# Server-owned keys of a profile document a client may send back with it (ignored on writes).
DOCUMENT_ECHO = frozenset({"metadata", "is_default"})


if TYPE_CHECKING:
    _StrictKeysBase = serializers.Serializer  # what the mixin is mixed into
else:
    _StrictKeysBase = object


# The one rule for request bodies: an unknown key is a 400 naming it (a typo must not look like success),
# at any depth (a nested serializer checks its own object). `ignored`: keys a client may echo back from a
# document it read; `fixed`: keys naming the target (`registry`, `slug` on a PATCH), which must match it,
# since a slug is never renamed. A comment, not a docstring: drf-spectacular would publish it as the
# description of every request body without one of its own.
class StrictKeysMixin(_StrictKeysBase):
    ignored: frozenset[str] = frozenset()
    fixed: tuple[str, ...] = ()
    unknown_message = "unknown field"

    def get_fields(self) -> dict[str, Any]:
        # DRF deep-copies every declared field for each instance: each field's __init__ runs again with
        # deep-copied arguments, most of the time a small body's validation takes. A body's fields keep
        # no state while they validate, so a shallow copy bound to this serializer is enough; a list's
        # item serializer is shared (bound to the declared list field, it sees no context).
        return {name: copy.copy(field) for name, field in self._declared_fields.items()}

    def to_internal_value(self, data: Any) -> Any:
        if isinstance(data, Mapping):
            known = set(self.fields) | self.ignored | set(self.fixed)
            unknown = sorted(str(k) for k in data if k not in known)
            if unknown:
                raise serializers.ValidationError({unknown[0]: [self.unknown_message]})
        return super().to_internal_value(data)

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        for key in self.fixed:
            if key in self.initial_data and canonical_or_none(self.initial_data[key]) != self.context.get(key):
                raise serializers.ValidationError({key: [f"{key} cannot be changed"]})
        return attrs


# A body validated on every request whose fields read neither its context nor `partial` (no validator that
# takes context, no `fixed` keys) binds them once per class, to a template instance, and every instance
# shares them, as a list's item serializer already is: DRF binds a copy of each field to each instance
# (a chat completion's body: ~540 -> ~370 µs of validation in a served worker, ~2% of its CPU). Fields keep
# no state while they validate. A comment, not a docstring (see above).
class FieldsBoundOnce(_StrictKeysBase):
    @cached_property
    def fields(self) -> Any:
        cls = type(self)
        bound = cls.__dict__.get("_fields_bound_once")  # this class's own, not a parent's
        if bound is None:
            bound = serializers.Serializer.fields.func(cls())  # type: ignore[attr-defined]  # DRF's own building
            cls._fields_bound_once = bound  # type: ignore[attr-defined]
        return bound


@extend_schema_field(SLUG_SCHEMA)
class SlugTextField(serializers.CharField):
    """A slug as a client sends it: parsed as text; the services trim, lower-case and check it (the
    schema states the accepted form)."""


@extend_schema_field(REF_SCHEMA)
class ProfileRefField(serializers.CharField):
    """A profile ref as a client sends it (`slug`, `slug@3`, `slug@label`): the services parse it."""


@extend_schema_field(JSON_OBJECT_SCHEMA)
class JSONObjectField(serializers.JSONField):
    """Any JSON as parsed; the services require an object (or null where allowed) and check its content."""


def canonical_or_none(value: Any) -> str | None:
    return value.strip().lower() if isinstance(value, str) else None


@extend_schema_field(STACK_SCHEMA)
class StackField(serializers.JSONField):
    """`[{registry?, slug, version?}]` as parsed; the services check the layers."""


@extend_schema_field(GROUPS_SCHEMA)
class GroupNamesField(serializers.JSONField):
    """A list of group names as parsed; the services check it."""


@extend_schema_field(GROUP_DEFAULTS_SCHEMA)
class GroupDefaultsField(serializers.JSONField):
    """`[{group, profile}]` as parsed; the services check it."""


class ProfileCreateSerializer(StrictKeysMixin, serializers.Serializer):
    ignored = DOCUMENT_ECHO
    registry = SlugTextField(required=False)
    slug = SlugTextField(trim_whitespace=False)
    display_name = serializers.CharField(required=False, allow_blank=True, max_length=200)
    description = serializers.CharField(required=False, allow_blank=True)
    runtime = JSONObjectField(required=False, allow_null=True)
    policy = JSONObjectField(required=False, allow_null=True)
    extensions = JSONObjectField(required=False, allow_null=True)
    stack = StackField(required=False, allow_null=True)
    visible_to_groups = GroupNamesField(required=False, allow_null=True)
    set_default = serializers.BooleanField(required=False, default=False)


MERGED = "Merged into the stored value: objects merge key by key, arrays replace, `null` removes a key. "


class ProfileMergePatchSerializer(StrictKeysMixin, serializers.Serializer):
    """A JSON Merge Patch (RFC 7396) of the profile document, as `application/merge-patch+json` or
    `application/json`: the fields it names are merged into the stored current version (objects merge key
    by key, arrays and strings replace, `null` removes a key: an optional field becomes empty, a required
    one is a 400), and the merged profile is checked like a created one. Fields it leaves out do not
    change. `expected_version` and `set_default` are instructions, not fields."""

    ignored = DOCUMENT_ECHO
    fixed = ("registry", "slug")

    display_name = serializers.CharField(
        required=False, allow_blank=True, allow_null=True, max_length=200, help_text="Required: `null` is a 400."
    )
    description = serializers.CharField(required=False, allow_blank=True, allow_null=True)
    runtime = JSONObjectField(required=False, allow_null=True, help_text=MERGED + 'e.g. `{"system_prompt": "x"}`.')
    policy = JSONObjectField(required=False, allow_null=True, help_text=MERGED)
    extensions = JSONObjectField(required=False, allow_null=True, help_text=MERGED + "`{key: null}` removes one.")
    stack = StackField(required=False, allow_null=True, help_text="Replaces the base layers (an array).")
    visible_to_groups = GroupNamesField(required=False, allow_null=True, help_text="Replaces the groups (an array).")
    expected_version = serializers.IntegerField(required=False, min_value=1)
    set_default = serializers.BooleanField(required=False, default=False)

    def patch(self) -> dict[str, Any]:
        """The merge patch of the document's fields (`null` included: it removes)."""
        fields = ("display_name", "description", "runtime", "policy", "extensions", "stack", "visible_to_groups")
        return {k: self.validated_data[k] for k in fields if k in self.validated_data}


class RegistryMergePatchSerializer(StrictKeysMixin, serializers.Serializer):
    """A JSON Merge Patch (RFC 7396) of the registry document, as `application/merge-patch+json` or
    `application/json`: each field it names replaces the stored one (a registry's fields are strings and
    arrays), `null` empties an optional field and is a 400 on a required one (`display_name`,
    `default_profile_slug`); the result is checked like any registry write, in one version step."""

    ignored = frozenset({"profile_count", "version"})
    fixed = ("slug",)

    display_name = serializers.CharField(required=False, allow_null=True, max_length=200)
    description = serializers.CharField(required=False, allow_blank=True, allow_null=True)
    default_profile_slug = SlugTextField(
        required=False, allow_null=True, help_text="Make this profile of the registry its default."
    )
    protected_labels = serializers.ListField(child=serializers.CharField(), required=False, allow_null=True)
    serve_label = serializers.CharField(required=False, allow_blank=True, allow_null=True)
    editor_groups = GroupNamesField(required=False, allow_null=True)
    group_defaults = GroupDefaultsField(required=False, allow_null=True)
    required_approvals = serializers.IntegerField(required=False, allow_null=True, min_value=0, max_value=10)
    approver_groups = GroupNamesField(required=False, allow_null=True)
    expected_version = serializers.IntegerField(
        required=False, min_value=1, help_text="The registry version read: a mismatch is 409."
    )

    def patch(self) -> dict[str, Any]:
        return {k: v for k, v in self.validated_data.items() if k != "expected_version"}


class ExpectedVersionSerializer(StrictKeysMixin, serializers.Serializer):
    expected_version = serializers.IntegerField(required=False, min_value=1)


class ResolveSerializer(StrictKeysMixin, serializers.Serializer):
    request_overrides = JSONObjectField(required=False, allow_null=True)


class SelectProfileSerializer(StrictKeysMixin, serializers.Serializer):
    slug = ProfileRefField(trim_whitespace=False)
    registry = SlugTextField(required=False)
