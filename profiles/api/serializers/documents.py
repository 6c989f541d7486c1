"""Read serializers: what the profile API answers (registries, profiles, the current profile, resolutions).
The services build the shapes; these describe them for the OpenAPI schema."""

from __future__ import annotations

from typing import Any

from rest_framework import serializers

from profiles.services import profile_document
from profiles.validation import POLICY_KEYS


class IssuedTokenSerializer(serializers.Serializer):
    token = serializers.CharField()


class RegistrySummarySerializer(serializers.Serializer):
    slug = serializers.CharField()
    display_name = serializers.CharField()
    description = serializers.CharField()
    default_profile_slug = serializers.SerializerMethodField()
    profile_count = serializers.IntegerField(
        help_text="The profiles the caller may use (a writer's profile list also shows the others, `restricted`)."
    )
    version = serializers.IntegerField()
    editor_groups = serializers.ListField(
        child=serializers.CharField(),
        required=False,
        help_text="Groups whose members may edit its profiles (shown to editors, when set).",
    )
    group_defaults = serializers.ListField(
        child=serializers.DictField(),
        required=False,
        help_text="`[{group, profile}]`: each group's default profile, first match wins (shown to editors, when set).",
    )

    def get_default_profile_slug(self, registry: Any) -> str | None:
        return registry.default_profile.slug if registry.default_profile_id else None

    def to_representation(self, registry: Any) -> dict[str, Any]:
        body = super().to_representation(registry)
        for key in ("editor_groups", "group_defaults"):
            if not (self.context.get("editor") and body.get(key)):
                body.pop(key, None)
        return body


class RegistryDocumentSerializer(RegistrySummarySerializer):
    """One registry (`GET`/`PATCH .../registries/{slug}`): its summary and its label settings."""

    protected_labels = serializers.ListField(
        child=serializers.CharField(), help_text="Labels whose moves need `profiles.promote_profile`."
    )
    serve_label = serializers.CharField(
        allow_blank=True, help_text="The label a plain slug serves (its latest version without one); empty: none."
    )
    required_approvals = serializers.IntegerField(
        help_text="With n > 0, protected labels move only through requests approved by n approvers."
    )
    approver_groups = serializers.ListField(
        child=serializers.CharField(), help_text="Groups whose members approve label requests (and superusers)."
    )


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
        if not row.get("usable", True):  # shape: RestrictedProfileListItemSerializer
            return {"registry": registry.slug, "slug": row["slug"], "restricted": True}
        return {
            "registry": registry.slug,
            "slug": row["slug"],
            "display_name": row["display_name"],
            "description": row["description"],
            "default_prompt": (row["runtime"] or {}).get("system_prompt", ""),
            "extensions": row["extensions"],
            "is_default": registry.is_default(row["id"]),
            "version": row["version"],
        }


class RestrictedProfileListItemSerializer(serializers.Serializer):
    """A profile of the registry the caller may write but not use (it is restricted to groups they are not
    in): its slug only, which is taken (a create with it answers 409); naming it answers 403."""

    registry = serializers.CharField()
    slug = serializers.CharField()
    restricted = serializers.BooleanField(help_text="Always true: the caller may not read or use this profile.")


class ProfileMetadataSerializer(serializers.Serializer):
    version = serializers.IntegerField()
    created_at_ms = serializers.IntegerField()
    updated_at_ms = serializers.IntegerField()
    created_by = serializers.CharField(allow_blank=True)
    updated_by = serializers.CharField(allow_blank=True)
    source = serializers.CharField()  # type: ignore[assignment]  # a field: DRF pops declared fields off the class
    tags = serializers.ListField(child=serializers.CharField())


# The profile document (`profiles.services.profile_document` is the shape); the declared fields
# describe it for the OpenAPI schema.
class ProfileDocumentSerializer(serializers.Serializer):
    registry = serializers.CharField()
    slug = serializers.CharField()
    display_name = serializers.CharField(allow_blank=True)
    description = serializers.CharField(allow_blank=True)
    runtime = serializers.DictField(help_text="system_prompt, middlewares, tools, step_settings_patch")
    policy = serializers.DictField(help_text=", ".join(POLICY_KEYS))
    extensions = serializers.DictField(help_text="`namespace.feature@vN` keys")
    stack = serializers.ListField(
        child=serializers.DictField(),
        required=False,
        help_text="Base layers applied in order before it: `[{registry, slug, version?}]` (present when set).",
    )
    visible_to_groups = serializers.ListField(
        child=serializers.CharField(),
        required=False,
        help_text="The groups that may see and use it (present when set; absent: everyone).",
    )
    metadata = ProfileMetadataSerializer()
    is_default = serializers.BooleanField()

    def to_representation(self, profile: Any) -> dict[str, Any]:
        return profile_document(profile)


class StaleSelectionSerializer(serializers.Serializer):
    registry = serializers.CharField()
    slug = serializers.CharField()
    ref = serializers.CharField(required=False, help_text="The ref, when it named a version or a label.")


class CurrentProfileSerializer(serializers.Serializer):
    """The caller's current profile for a mount (the body is built by the view)."""

    registry = serializers.CharField()
    slug = serializers.CharField()
    ref = serializers.CharField(help_text="The selection as chosen: `slug`, `slug@3` or `slug@label`.")
    version = serializers.IntegerField(help_text="The version it resolves to now.")
    label = serializers.CharField(allow_null=True, help_text="The label it follows, if any.")  # type: ignore[assignment]  # a field: DRF pops declared fields off the class
    mode = serializers.ChoiceField(choices=["follow", "pinned", "label"])
    source = serializers.ChoiceField(  # type: ignore[assignment]  # a field: DRF pops declared fields off the class
        choices=["selection", "group_default", "default"],
        help_text="The caller's own selection, else their first group's default, else the registry default.",
    )
    group = serializers.CharField(required=False, help_text="The group whose default it is (`group_default`).")
    profile = ProfileDocumentSerializer(help_text="The profile's latest version.")
    stale_selection = StaleSelectionSerializer(
        required=False, help_text="The selected profile that no longer exists (`source` is then `default`)."
    )


class RolloutArmSerializer(serializers.Serializer):
    id = serializers.IntegerField(help_text="The rollout")
    label = serializers.CharField()  # type: ignore[assignment]  # a field named like Field.label
    version = serializers.IntegerField()
    weight = serializers.IntegerField()


class ResolutionSerializer(serializers.Serializer):
    """A dry-run resolution (`profiles.resolution.Resolution.as_dict`)."""

    registry = serializers.CharField()
    profile = serializers.CharField()
    profile_version = serializers.IntegerField()
    ref = serializers.CharField(help_text="The profile as addressed: `slug`, `slug@3` or `slug@label`.")
    label = serializers.CharField(allow_null=True, help_text="The label followed, if any.")  # type: ignore[assignment]  # a field: DRF pops declared fields off the class
    rollout = RolloutArmSerializer(
        allow_null=True, help_text="The rollout arm that chose the version (the label's rollout), else null."
    )
    runtime_key = serializers.CharField()
    effective_runtime = serializers.DictField()
    engine = serializers.DictField()
    overrides_applied = serializers.DictField()
    fingerprint = serializers.CharField()
    lineage = serializers.ListField(
        child=serializers.DictField(),
        help_text="Every layer applied, bases first and the profile last: `[{registry, slug, version}]`.",
    )
    provenance = serializers.DictField(
        help_text="Effective field path -> `{layer, value, replaced: [{layer, value}], rule?, overruled?}`; "
        "`layer` is `{registry, slug, version}`, or `{request: true}` for a request override."
    )
