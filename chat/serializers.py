"""Read and write serializers of the conversations API."""

from __future__ import annotations

from typing import Any

from rest_framework import serializers

from .models import Conversation, Turn


def _ms(value: Any) -> int:
    return int(value.timestamp() * 1000)


class TurnSerializer(serializers.ModelSerializer):
    turn_id = serializers.UUIDField(source="id")
    runtime = serializers.SerializerMethodField()

    class Meta:
        model = Turn
        fields = [
            "turn_id",
            "seq",
            "status",
            "prompt",
            "text",
            "runtime_key",
            "registry",
            "profile_slug",
            "profile_version",
            "fingerprint",
            "engine",
            "overrides_applied",
            "middlewares",
            "tools",
            "tool_calls",
            "artifacts",
            "suggestions",
            "usage",
            "error",
            "created_at_ms",
            "started_at_ms",
            "finished_at_ms",
            "runtime",
        ]

    def get_runtime(self, turn: Turn) -> dict[str, Any]:
        """The compact marker the UI shows under an answer."""
        return {
            "runtime_key": turn.runtime_key,
            "profile_version": turn.profile_version,
            "fingerprint": turn.fingerprint,
        }


class ConversationSummarySerializer(serializers.ModelSerializer):
    conv_id = serializers.UUIDField(source="id")
    profile_selection = serializers.SerializerMethodField()
    created_at_ms = serializers.SerializerMethodField()
    updated_at_ms = serializers.SerializerMethodField()

    class Meta:
        model = Conversation
        fields = [
            "conv_id",
            "mount",
            "title",
            "profile_selection",
            "current_runtime_key",
            "current_fingerprint",
            "current_profile_version",
            "last_seq",
            "created_at_ms",
            "updated_at_ms",
        ]

    def get_profile_selection(self, conversation: Conversation) -> dict[str, str] | None:
        if not conversation.selected_profile:
            return None
        return {"registry": conversation.selected_registry, "slug": conversation.selected_profile}

    def get_created_at_ms(self, conversation: Conversation) -> int:
        return _ms(conversation.created_at)

    def get_updated_at_ms(self, conversation: Conversation) -> int:
        return _ms(conversation.updated_at)


class ConversationDetailSerializer(ConversationSummarySerializer):
    turns = TurnSerializer(many=True, read_only=True)

    class Meta(ConversationSummarySerializer.Meta):
        fields = [*ConversationSummarySerializer.Meta.fields, "turns"]


class ConversationCreateSerializer(serializers.Serializer):
    profile = serializers.CharField(required=False, allow_blank=False)
    registry = serializers.CharField(required=False, allow_blank=False)
    title = serializers.CharField(required=False, allow_blank=True, max_length=200)


class ConversationUpdateSerializer(serializers.Serializer):
    title = serializers.CharField(allow_blank=True, max_length=200)


class MessageCreateSerializer(serializers.Serializer):
    prompt = serializers.CharField(trim_whitespace=False)
    request_overrides = serializers.JSONField(required=False, allow_null=True)
    idempotency_key = serializers.CharField(required=False, max_length=128)
