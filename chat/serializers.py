"""Read and write serializers of the conversations API."""

from __future__ import annotations

from typing import Any

from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from profiles.api.openapi import NON_BLANK_PATTERN
from profiles.api.serializers import FieldsBoundOnce, JSONObjectField, ProfileRefField, SlugTextField, StrictKeysMixin
from profiles.validation import parse_profile_ref

from . import selectors
from .models import Conversation, Turn, TurnFeedback
from .services import MAX_FEEDBACK_COMMENT_CHARS, MAX_PROMPT_CHARS


class FeedbackSerializer(serializers.ModelSerializer):
    """The caller's rating of an answer; `at_ms`: when it was given or last replaced."""

    at_ms = serializers.IntegerField(source="updated_at_ms")

    class Meta:
        model = TurnFeedback
        fields = ["rating", "comment", "at_ms"]


class FeedbackSetSerializer(StrictKeysMixin, serializers.Serializer):
    rating = serializers.ChoiceField(choices=TurnFeedback.Rating.choices)
    comment = serializers.CharField(
        required=False, allow_blank=True, max_length=MAX_FEEDBACK_COMMENT_CHARS, help_text="why (optional)"
    )


class TurnSerializer(serializers.ModelSerializer):
    turn_id = serializers.UUIDField(source="id")
    runtime = serializers.SerializerMethodField()
    feedback = serializers.SerializerMethodField(help_text="the caller's rating of the answer, or null")

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
            "profile_ref",
            "rollout",
            "fingerprint",
            "engine",
            "overrides_applied",
            "middlewares",
            "tools",
            "runtime_config",
            "tool_calls",
            "artifacts",
            "suggestions",
            "middleware_events",
            "usage",
            "error",
            "created_at_ms",
            "started_at_ms",
            "finished_at_ms",
            "runtime",
            "replaces",
            "feedback",
        ]
        extra_kwargs = {
            "replaces": {"read_only": True, "help_text": "the turn this one replaces (regenerate, retry, edit)"}
        }

    @extend_schema_field(FeedbackSerializer(allow_null=True))
    def get_feedback(self, turn: Turn) -> Any:
        return None if turn.caller_feedback is None else FeedbackSerializer(turn.caller_feedback).data

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
    archived = serializers.SerializerMethodField()
    turn_count = serializers.SerializerMethodField(help_text="in lists; null elsewhere")

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
            "created_at_ms",
            "updated_at_ms",
            "archived",
            "archived_at_ms",
            "turn_count",
        ]

    def get_archived(self, conversation: Conversation) -> bool:
        return conversation.archived_at_ms is not None

    def get_turn_count(self, conversation: Conversation) -> int | None:
        return getattr(conversation, "turn_count", None)

    def get_profile_selection(self, conversation: Conversation) -> dict[str, str] | None:
        """The conversation's own selection: `ref` as chosen and `mode` (`follow` the serving label or
        the latest version, `pinned` to a version, or following a `label`)."""
        ref = selectors.conversation_ref(conversation)
        if not ref:
            return None
        return {
            "registry": conversation.selected_registry,
            "slug": conversation.selected_profile,
            "ref": ref,
            "mode": parse_profile_ref(ref).mode,
        }


class ConversationDetailSerializer(ConversationSummarySerializer):
    """A conversation with one page of its turns: the newest ones, ascending by seq.

    The page is `context["turns_page"]` (a `selectors.TurnsPage`), else the newest default page.
    `turns_more` says older turns exist; `turns_before_seq` is the `before_seq` that fetches them.
    """

    turns = serializers.SerializerMethodField()
    turns_more = serializers.SerializerMethodField()
    turns_before_seq = serializers.SerializerMethodField()
    last_seq = serializers.SerializerMethodField(help_text="frames up to this seq are reflected in `turns`")

    class Meta(ConversationSummarySerializer.Meta):
        fields = [*ConversationSummarySerializer.Meta.fields, "last_seq", "turns", "turns_more", "turns_before_seq"]

    def get_last_seq(self, conversation: Conversation) -> int:
        return selectors.conversation_replay_from(conversation=conversation)

    def _page(self, conversation: Conversation) -> selectors.TurnsPage:
        page = self.context.get("turns_page")
        if page is None:
            pages = self.__dict__.setdefault("_turns_pages", {})
            if conversation.pk not in pages:
                pages[conversation.pk] = selectors.conversation_turns_page(conversation=conversation)
            page = pages[conversation.pk]
        return page

    @extend_schema_field(TurnSerializer(many=True))
    def get_turns(self, conversation: Conversation) -> Any:  # a ReturnList of TurnSerializer rows
        return TurnSerializer(self._page(conversation).turns, many=True, context=self.context).data

    def get_turns_more(self, conversation: Conversation) -> bool:
        return self._page(conversation).more

    def get_turns_before_seq(self, conversation: Conversation) -> int | None:
        return self._page(conversation).before_seq


class TurnsPageParamsSerializer(serializers.Serializer):
    """Query parameters of a conversation's hydration: the newest `turns_limit` turns with seq < `before_seq`."""

    turns_limit = serializers.IntegerField(
        min_value=1, max_value=selectors.TURNS_PAGE_MAX, default=selectors.TURNS_PAGE_DEFAULT
    )
    before_seq = serializers.IntegerField(min_value=1, required=False)


class ConversationCreateSerializer(StrictKeysMixin, serializers.Serializer):
    profile = ProfileRefField(required=False, allow_blank=False)
    registry = SlugTextField(required=False, allow_blank=False)
    title = serializers.CharField(required=False, allow_blank=True, max_length=200)


class ConversationUpdateSerializer(StrictKeysMixin, serializers.Serializer):
    title = serializers.CharField(required=False, allow_blank=True, max_length=200)
    archived = serializers.BooleanField(required=False, help_text="true: archive; false: bring it back")

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        attrs = super().validate(attrs)
        if not attrs:
            raise serializers.ValidationError({"title": ["send title and/or archived"]})
        return attrs


class ConversationListParamsSerializer(serializers.Serializer):
    """Query parameters of the conversation list (pagination has its own: `page`, `page_size`)."""

    q = serializers.CharField(
        required=False,
        allow_blank=True,
        max_length=200,
        help_text="only conversations whose title, or a prompt or answer of one of their turns, contains this "
        "text (case-insensitive)",
    )
    archived = serializers.BooleanField(
        required=False, default=False, help_text="true: the archived conversations instead of the others"
    )


@extend_schema_field({"type": "string", "pattern": NON_BLANK_PATTERN, "maxLength": MAX_PROMPT_CHARS})
class PromptField(serializers.CharField):
    """The prompt as sent (not trimmed); the service refuses blank and overlong prompts and NUL."""


class MessageCreateSerializer(FieldsBoundOnce, StrictKeysMixin, serializers.Serializer):
    prompt = PromptField(trim_whitespace=False)
    request_overrides = JSONObjectField(required=False, allow_null=True)
    idempotency_key = serializers.CharField(required=False, max_length=128)


class RegenerateSerializer(StrictKeysMixin, serializers.Serializer):
    """Regenerate, retry or edit-and-resend the conversation's last turn: a new turn replaces it."""

    prompt = PromptField(
        trim_whitespace=False, required=False, help_text="the edited prompt; absent: the replaced turn's prompt"
    )
    idempotency_key = serializers.CharField(required=False, max_length=128)


class TurnQueuedSerializer(serializers.Serializer):
    """The answer to a message sent without `?wait=1`: the turn is queued (or already known)."""

    turn_id = serializers.UUIDField()
    status = serializers.ChoiceField(choices=Turn.Status.choices)
    created = serializers.BooleanField(help_text="false: an earlier message with this idempotency_key made the turn")


class EventsParamsSerializer(serializers.Serializer):
    since_seq = serializers.IntegerField(min_value=0, default=0)
    limit = serializers.IntegerField(min_value=1, max_value=1000, default=500)


class EventsPageSerializer(serializers.Serializer):
    """A page of a conversation's frames (`chat.replay.Replay`)."""

    frames = serializers.ListField(child=serializers.DictField())
    next_since_seq = serializers.IntegerField(help_text="pass as since_seq for what comes next")
    more = serializers.BooleanField(help_text="true: more stored frames remain after this page")
