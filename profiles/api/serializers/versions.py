"""A profile's versions over the API: labels, rollouts, label requests and approvals, diffs, restores, stats."""

from __future__ import annotations

from typing import Any

from rest_framework import serializers

from .bodies import StrictKeysMixin


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
