"""Read serializers shape responses; write serializers parse request bodies (types only: the
service layer owns every rule, so the admin and the importer get the same ones)."""

from __future__ import annotations

from typing import Any

from rest_framework import serializers

from profiles.models import ProfileRevision
from profiles.services import profile_document

# --------------------------------------------------------------------------- read


class RegistrySummarySerializer(serializers.Serializer):
    slug = serializers.CharField()
    display_name = serializers.CharField()
    description = serializers.CharField()
    default_profile_slug = serializers.SerializerMethodField()
    profile_count = serializers.IntegerField()
    version = serializers.IntegerField()

    def get_default_profile_slug(self, registry: Any) -> str | None:
        return registry.default_profile.slug if registry.default_profile_id else None


# One item of the profile list, from a `selectors.profile_list` row of `context["registry"]`.
# `to_representation` is the shape (its only definition); the declared fields describe it for the
# OpenAPI schema (a comment, not a docstring, which the schema would publish). One flat dict per row,
# no per-field calls or model instances: those made 1,000 profiles cost 2.6x a plain `JsonResponse`.
class ProfileListItemSerializer(serializers.Serializer):
    registry = serializers.CharField()
    slug = serializers.CharField()
    display_name = serializers.CharField()
    description = serializers.CharField()
    default_prompt = serializers.CharField(read_only=True)
    extensions = serializers.JSONField()
    is_default = serializers.BooleanField(read_only=True)
    version = serializers.IntegerField()

    def to_representation(self, row: dict[str, Any]) -> dict[str, Any]:
        registry = self.context["registry"]
        return {
            "registry": registry.slug,
            "slug": row["slug"],
            "display_name": row["display_name"],
            "description": row["description"],
            "default_prompt": (row["runtime"] or {}).get("system_prompt", ""),
            "extensions": row["extensions"],
            "is_default": registry.default_profile_id == row["id"],
            "version": row["version"],
        }


class ProfileDocumentSerializer(serializers.BaseSerializer):
    """`{registry, slug, display_name, description, runtime, policy, extensions, metadata, is_default}`."""

    def to_representation(self, profile: Any) -> dict[str, Any]:
        return profile_document(profile)


class RevisionSummarySerializer(serializers.ModelSerializer):
    class Meta:
        model = ProfileRevision
        fields = ["version", "updated_at_ms", "updated_by", "source", "change"]


# --------------------------------------------------------------------------- write


class StrictKeysMixin:
    """An unknown key is a 400 (a typo must not look like success); server-owned keys a client may
    echo back from a document it read (`metadata`, `is_default`) are ignored; keys naming the target
    (`registry`, `slug` on a PATCH) must match it, since a slug is never renamed."""

    ignored = frozenset({"metadata", "is_default"})
    fixed: tuple[str, ...] = ()

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        known = set(self.fields) | self.ignored | set(self.fixed)
        unknown = sorted(str(k) for k in self.initial_data if k not in known)
        if unknown:
            raise serializers.ValidationError({unknown[0]: ["unknown field"]})
        for key in self.fixed:
            if key in self.initial_data and canonical_or_none(self.initial_data[key]) != self.context.get(key):
                raise serializers.ValidationError({key: [f"{key} cannot be changed"]})
        return attrs


def canonical_or_none(value: Any) -> str | None:
    return value.strip().lower() if isinstance(value, str) else None


class ProfileCreateSerializer(StrictKeysMixin, serializers.Serializer):
    registry = serializers.CharField(required=False)
    slug = serializers.CharField(trim_whitespace=False, allow_blank=True)
    display_name = serializers.CharField(required=False, allow_blank=True, max_length=200)
    description = serializers.CharField(required=False, allow_blank=True)
    runtime = serializers.JSONField(required=False, allow_null=True)
    policy = serializers.JSONField(required=False, allow_null=True)
    extensions = serializers.JSONField(required=False, allow_null=True)
    set_default = serializers.BooleanField(required=False, default=False)


class ProfilePatchSerializer(StrictKeysMixin, serializers.Serializer):
    fixed = ("registry", "slug")

    display_name = serializers.CharField(required=False, allow_blank=True, max_length=200)
    description = serializers.CharField(required=False, allow_blank=True)
    runtime = serializers.JSONField(required=False, allow_null=True)
    policy = serializers.JSONField(required=False, allow_null=True)
    extensions = serializers.JSONField(required=False, allow_null=True)
    expected_version = serializers.IntegerField(required=False, min_value=1)
    set_default = serializers.BooleanField(required=False, default=False)

    def changes(self) -> dict[str, Any]:
        fields = ("display_name", "description", "runtime", "policy", "extensions")
        return {k: self.validated_data[k] for k in fields if k in self.validated_data}


class ExpectedVersionSerializer(serializers.Serializer):
    expected_version = serializers.IntegerField(required=False, min_value=1)


class ResolveSerializer(serializers.Serializer):
    request_overrides = serializers.JSONField(required=False, allow_null=True)


class SelectProfileSerializer(serializers.Serializer):
    slug = serializers.CharField(trim_whitespace=False, allow_blank=True)
    registry = serializers.CharField(required=False)
