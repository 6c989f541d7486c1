"""Read serializers shape responses; write serializers parse request bodies (types only: the
service layer owns every rule, so the admin and the importer get the same ones)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from profiles.models import ProfileRevision
from profiles.services import profile_document
from profiles.validation import POLICY_KEYS

from .openapi import GROUP_DEFAULTS_SCHEMA, GROUPS_SCHEMA, JSON_OBJECT_SCHEMA, REF_SCHEMA, SLUG_SCHEMA, STACK_SCHEMA

# --------------------------------------------------------------------------- read


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


# --------------------------------------------------------------------------- what profiles may contain


class MiddlewareSchemaSerializer(serializers.Serializer):
    name = serializers.CharField()
    version = serializers.IntegerField()
    display_name = serializers.CharField()
    description = serializers.CharField(allow_blank=True)
    schema = serializers.DictField(help_text="JSON Schema of the middleware's `config`")


class ToolSchemaSerializer(serializers.Serializer):
    name = serializers.CharField()
    description = serializers.CharField(allow_blank=True)
    parameters = serializers.DictField(help_text="JSON Schema of the tool's input")
    writes = serializers.BooleanField()


class ExtensionSchemaSerializer(serializers.Serializer):
    key = serializers.CharField()
    schema = serializers.DictField(help_text="JSON Schema of the extension's value")


class StepSettingFieldSerializer(serializers.Serializer):
    name = serializers.CharField()
    type = serializers.CharField()
    default = serializers.JSONField(allow_null=True)
    description = serializers.CharField(allow_blank=True)
    schema = serializers.DictField()
    secret = serializers.BooleanField()


class StepSettingSectionSerializer(serializers.Serializer):
    name = serializers.CharField()
    fields = StepSettingFieldSerializer(many=True)  # type: ignore[assignment]  # a field: DRF pops declared fields off the class


class StepSettingsSchemaSerializer(serializers.Serializer):
    sections = StepSettingSectionSerializer(many=True)


class RevisionSummarySerializer(serializers.ModelSerializer):
    class Meta:
        model = ProfileRevision
        fields = ["version", "updated_at_ms", "updated_by", "source", "change"]


# --------------------------------------------------------------------------- write


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


# --------------------------------------------------------------------------- labels, diffs, stats


class LabelSerializer(serializers.Serializer):
    name = serializers.CharField()
    version = serializers.IntegerField()
    protected = serializers.BooleanField(help_text="Moving it needs `profiles.promote_profile`.")
    updated_at_ms = serializers.IntegerField()
    updated_by = serializers.CharField(allow_blank=True)


class LabelSetSerializer(StrictKeysMixin, serializers.Serializer):
    version = serializers.IntegerField(min_value=1)
    expected_version = serializers.IntegerField(
        required=False, min_value=1, help_text="The label's current version: a mismatch is 409."
    )


class LabelMoveSerializer(serializers.Serializer):
    from_version = serializers.IntegerField(allow_null=True, help_text="null: the label was created")
    to_version = serializers.IntegerField(allow_null=True, help_text="null: the label was removed")
    by = serializers.CharField(allow_blank=True)
    at_ms = serializers.IntegerField()
    request = serializers.IntegerField(
        source="request_id", allow_null=True, help_text="The approved request that moved it (approvals)."
    )
    rollout = serializers.JSONField(
        allow_null=True,
        help_text='A rollout step (the label stays): {"event": "started" | "changed" | "halted" | "ended", "id", '
        '"arms", "halted_reason"?}',
    )


class ArmSerializer(serializers.Serializer):
    version = serializers.IntegerField(min_value=1)
    weight = serializers.IntegerField(min_value=0, max_value=100, help_text="Integers summing to 100")


class GuardSerializer(serializers.Serializer):
    max_failure_rate = serializers.FloatField(required=False, min_value=0, max_value=1)
    max_thumbs_down_rate = serializers.FloatField(required=False, min_value=0, max_value=1)
    max_latency_ms_p95 = serializers.IntegerField(required=False, min_value=1)
    min_turns = serializers.IntegerField(min_value=1, help_text="Finished turns an arm needs before it is judged")


class RolloutSetSerializer(serializers.Serializer):
    """Documents the body; `profiles.arms.parse_rollout` checks it (with field paths)."""

    arms = ArmSerializer(many=True)
    sticky = serializers.ChoiceField(choices=["user", "conversation"], required=False, default="user")
    guard = GuardSerializer(required=False)


class ArmStatsSerializer(serializers.Serializer):
    version = serializers.IntegerField()
    weight = serializers.IntegerField()
    stats = serializers.DictField(
        help_text="{turns, completed, failed, cancelled, interrupted, thumbs_up, thumbs_down, latency_ms_p50, "
        "latency_ms_p95, tokens_in, tokens_out, …} of the arm's turns since the rollout started"
    )


class RolloutSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    label = serializers.CharField()  # type: ignore[assignment]  # a field named like Field.label
    label_version = serializers.IntegerField(help_text="The label's own version (served when halted or ended)")
    status = serializers.ChoiceField(choices=["active", "halted", "ended"])
    arms = ArmStatsSerializer(many=True)
    sticky = serializers.ChoiceField(choices=["user", "conversation"])
    guard = serializers.DictField()
    halted_reason = serializers.CharField(allow_null=True)
    started_at_ms = serializers.IntegerField()
    updated_at_ms = serializers.IntegerField()
    ended_at_ms = serializers.IntegerField(allow_null=True)
    by = serializers.CharField(allow_blank=True)


class LabelRequestCreateSerializer(StrictKeysMixin, serializers.Serializer):
    version = serializers.IntegerField(
        required=False, min_value=1, help_text="The version the label is to point at (or `rollout`)."
    )
    rollout = serializers.JSONField(required=False, help_text="A rollout to start on the label: as PUT …/rollout")
    note = serializers.CharField(required=False, allow_blank=True, max_length=2000, default="")

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        if ("version" in attrs) == ("rollout" in attrs):
            raise serializers.ValidationError({"version": "give either version or rollout"})
        return attrs


class ApprovalSerializer(serializers.Serializer):
    username = serializers.CharField()
    at_ms = serializers.IntegerField()


class LabelRequestSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    status = serializers.ChoiceField(choices=["pending", "applied", "rejected", "stale"])
    label = serializers.CharField(source="name")  # type: ignore[assignment]  # a field named like Field.label
    version = serializers.IntegerField(allow_null=True, help_text="null: the request is for a rollout")
    rollout = serializers.JSONField(allow_null=True, help_text="The rollout asked for (arms, sticky, guard)")
    from_version = serializers.IntegerField(allow_null=True, help_text="Where the label pointed when asked.")
    by = serializers.CharField(source="by_username")
    note = serializers.CharField(allow_blank=True)
    approvals = ApprovalSerializer(many=True)
    created_at_ms = serializers.IntegerField()
    decided_at_ms = serializers.IntegerField(allow_null=True)


# `from` and `to` are Python keywords: these serializers are built with their field names as data.
DiffEntrySerializer = type(
    "DiffEntrySerializer",
    (serializers.Serializer,),
    {
        "__doc__": "One change between two profile documents, at a path of the validation error grammar.",
        "op": serializers.ChoiceField(choices=["add", "remove", "change"]),
        "path": serializers.CharField(),
        "from": serializers.JSONField(required=False, help_text="The value before (change, remove)."),
        "to": serializers.JSONField(required=False, help_text="The value after (add, change)."),
    },
)
DiffParamsSerializer = type(
    "DiffParamsSerializer",
    (serializers.Serializer,),
    {"from": serializers.IntegerField(min_value=1), "to": serializers.IntegerField(min_value=1)},
)


class RestoreParamsSerializer(serializers.Serializer):
    dry_run = serializers.BooleanField(
        required=False, default=False, help_text="Answer the diff the restore would apply; write nothing."
    )


class StatsParamsSerializer(serializers.Serializer):
    since_ms = serializers.IntegerField(required=False, min_value=0, help_text="Only turns created since then.")


class VersionStatsSerializer(serializers.Serializer):
    version = serializers.IntegerField()
    turns = serializers.IntegerField()
    completed = serializers.IntegerField()
    failed = serializers.IntegerField()
    cancelled = serializers.IntegerField()
    interrupted = serializers.IntegerField()
    latency_ms_p50 = serializers.IntegerField(allow_null=True, help_text="Of completed turns, start to finish.")
    latency_ms_p95 = serializers.IntegerField(allow_null=True)
    tokens_in = serializers.IntegerField()
    tokens_out = serializers.IntegerField()
    thumbs_up = serializers.IntegerField(help_text="Feedback `up` given to its turns.")
    thumbs_down = serializers.IntegerField(help_text="Feedback `down` given to its turns.")
    first_turn_at_ms = serializers.IntegerField(allow_null=True)
    last_turn_at_ms = serializers.IntegerField(allow_null=True)
