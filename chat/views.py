"""Conversations over HTTP: a REST client can chat without a websocket."""

from __future__ import annotations

from asgiref.sync import async_to_sync
from django.conf import settings
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, PolymorphicProxySerializer, extend_schema
from rest_framework import permissions
from rest_framework.pagination import PageNumberPagination
from rest_framework.request import Request
from rest_framework.response import Response

from profiles.api.mounted import Mounted, MountedViewSet
from profiles.api.openapi import AUTH, BODY, RETRY_AFTER, responses
from profiles.api.throttling import ScopedRateThrottle

from . import selectors, services
from . import serializers as s
from .aio import run_db
from .asyncviews import AsyncAPIView
from .replay import replay
from .turns import await_turn, conversation_delete, turn_enqueue


class ConversationPagination(PageNumberPagination):
    page_size = 20
    page_size_query_param = "page_size"
    max_page_size = 100


# `POST …/messages` answers 202 with either the queued turn's id or, with `?wait=1`, the unfinished turn.
TURN_ACCEPTED = PolymorphicProxySerializer(
    component_name="TurnAccepted",
    serializers=[s.TurnQueuedSerializer, s.TurnSerializer],
    resource_type_field_name=None,
)
RETRY_AFTER_WAIT = OpenApiParameter(
    "Retry-After",
    OpenApiTypes.INT,
    location=OpenApiParameter.HEADER,
    response=[202],
    description="With `?wait=1`: the turn is still queued or running, look again after this many seconds.",
)


class ConversationViewSet(MountedViewSet):
    # Any signed-in user chats; profile-write permissions do not apply here.
    permission_classes = [permissions.IsAuthenticated]
    pagination_class = ConversationPagination  # the list's (this is not a GenericViewSet)

    def get_throttles(self) -> list:
        """Sending a message starts a turn: throttled per user (websocket sends have their own limit)."""
        if self.action == "regenerate":
            self.throttle_scope = "turns"
            return [ScopedRateThrottle()]
        return super().get_throttles()

    def _conversation(self, request: Request, conv_id: str):
        return selectors.conversation_get(conv_id=conv_id, user=request.user, mount=self.mounted)

    @extend_schema(
        parameters=[s.ConversationListParamsSerializer],
        responses=responses({200: s.ConversationSummarySerializer(many=True)}, AUTH, 400, 404),
    )
    def list(self, request: Request) -> Response:
        """The caller's conversations, newest first; `?q=` searches titles, prompts and answers."""
        params = s.ConversationListParamsSerializer(data=request.query_params)
        params.is_valid(raise_exception=True)
        rows = selectors.conversation_list(user=request.user, mount=self.mounted, **params.validated_data)
        paginator = self.pagination_class()
        page = paginator.paginate_queryset(rows, request)
        return paginator.get_paginated_response(s.ConversationSummarySerializer(page, many=True).data)

    @extend_schema(
        request=s.ConversationCreateSerializer,
        responses=responses({201: s.ConversationDetailSerializer}, AUTH, BODY, 403, 404, 409),
    )
    def create(self, request: Request) -> Response:
        body = s.ConversationCreateSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        conversation = services.conversation_create(owner=request.user, mount=self.mounted, **body.validated_data)
        return Response(s.ConversationDetailSerializer(conversation).data, status=201)

    @extend_schema(
        parameters=[s.TurnsPageParamsSerializer],
        responses=responses({200: s.ConversationDetailSerializer}, AUTH, 400, 403, 404),
    )
    def retrieve(self, request: Request, conv_id: str) -> Response:
        """The conversation with its newest `turns_limit` turns; `?before_seq=` pages to older ones."""
        conversation = self._conversation(request, conv_id)
        params = s.TurnsPageParamsSerializer(data=request.query_params)
        params.is_valid(raise_exception=True)
        page = selectors.conversation_turns_page(
            conversation=conversation,
            before_seq=params.validated_data.get("before_seq"),
            limit=params.validated_data["turns_limit"],
        )
        return Response(s.ConversationDetailSerializer(conversation, context={"turns_page": page}).data)

    @extend_schema(
        request=s.ConversationUpdateSerializer,
        responses=responses({200: s.ConversationSummarySerializer}, AUTH, BODY, 403, 404),
    )
    def partial_update(self, request: Request, conv_id: str) -> Response:
        """Rename (`title`) and/or archive (`archived`)."""
        body = s.ConversationUpdateSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        conversation = services.conversation_update(
            conversation=self._conversation(request, conv_id), **body.validated_data
        )
        return Response(s.ConversationSummarySerializer(conversation).data)

    @extend_schema(responses=responses({204: None}, AUTH, 403, 404))
    def destroy(self, request: Request, conv_id: str) -> Response:
        """Delete the conversation (owner only) with its turns and events; a running turn is cancelled first."""
        async_to_sync(conversation_delete)(conversation=self._conversation(request, conv_id), user=request.user)
        return Response(status=204)

    @extend_schema(responses=responses({200: s.TurnSerializer}, AUTH, 403, 404))
    def turn(self, request: Request, conv_id: str, turn_id: str) -> Response:
        """One turn with its full runtime record."""
        turn = selectors.conversation_turn_get(conversation=self._conversation(request, conv_id), turn_id=turn_id)
        return Response(s.TurnSerializer(turn).data)

    @extend_schema(
        request=s.FeedbackSetSerializer, responses=responses({200: s.FeedbackSerializer}, AUTH, BODY, 403, 404, 409)
    )
    def feedback_set(self, request: Request, conv_id: str, turn_id: str) -> Response:
        """Rate a finished answer `up` or `down`, with an optional comment; replaces the caller's earlier rating."""
        conversation = self._conversation(request, conv_id)
        body = s.FeedbackSetSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        feedback = services.turn_feedback_set(
            conversation=conversation, user=request.user, turn_id=turn_id, **body.validated_data
        )
        return Response(s.FeedbackSerializer(feedback).data)

    @extend_schema(responses=responses({204: None}, AUTH, 403, 404))
    def feedback_delete(self, request: Request, conv_id: str, turn_id: str) -> Response:
        """Withdraw the caller's rating of the answer (204 also when there was none)."""
        services.turn_feedback_delete(
            conversation=self._conversation(request, conv_id), user=request.user, turn_id=turn_id
        )
        return Response(status=204)

    @extend_schema(
        request=s.RegenerateSerializer,
        parameters=[RETRY_AFTER],
        responses=responses(
            {202: OpenApiResponse(s.TurnQueuedSerializer, description="The new turn is queued.")},
            AUTH,
            BODY,
            403,
            404,
            409,
            429,
        ),
    )
    def regenerate(self, request: Request, conv_id: str, turn_id: str) -> Response:
        """A new turn replaces the conversation's last (finished) turn: the same prompt (regenerate, retry)
        or `prompt` (edit and resend), on the conversation's current runtime."""
        conversation = self._conversation(request, conv_id)
        body = s.RegenerateSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        submitted = async_to_sync(turn_enqueue)(
            conversation=conversation,
            user=request.user,
            prompt=body.validated_data.get("prompt"),
            idempotency_key=body.validated_data.get("idempotency_key"),
            replaces=turn_id,
        )
        turn = selectors.turn_get(turn_id=submitted.turn.pk)
        return Response({"turn_id": str(turn.pk), "status": turn.status, "created": submitted.created}, status=202)

    @extend_schema(
        parameters=[s.EventsParamsSerializer], responses=responses({200: s.EventsPageSerializer}, AUTH, 400, 403, 404)
    )
    def events(self, request: Request, conv_id: str) -> Response:
        """Frames after `since_seq`, a page at a time: stored frames, the running turn's frames not
        stored yet and its streaming message as `llm.snapshot`; `next_since_seq` continues."""
        conversation = self._conversation(request, conv_id)
        params = s.EventsParamsSerializer(data=request.query_params)
        params.is_valid(raise_exception=True)
        page = async_to_sync(replay)(conversation.pk, **params.validated_data)
        return Response(s.EventsPageSerializer(page).data)


# `POST …/conversations/{id}/messages`: a coroutine on the event loop, so `?wait=1` waits for the turn
# (`chat.turns.await_turn`) without holding a thread. (A comment: the schema would publish a docstring.)
class ConversationMessagesView(Mounted, AsyncAPIView):
    permission_classes = [permissions.IsAuthenticated]
    throttle_classes = [ScopedRateThrottle]  # sending a message starts a turn: throttled per user
    throttle_scope = "turns"

    @extend_schema(
        description="Send a message: a new turn of the conversation, run at once or queued behind the one "
        "running. With `?wait=1` the answer is the finished turn, or the unfinished one after twice the "
        "engine's timeout.",
        request=s.MessageCreateSerializer,
        parameters=[
            OpenApiParameter("wait", int, description="1: answer when the turn has finished"),
            RETRY_AFTER,
            RETRY_AFTER_WAIT,
        ],
        responses=responses(
            {
                200: OpenApiResponse(s.TurnSerializer, description="With `?wait=1`: the finished turn."),
                202: OpenApiResponse(
                    TURN_ACCEPTED,
                    description="Queued: `{turn_id, status, created}`; with `?wait=1`, the unfinished turn.",
                ),
            },
            AUTH,
            BODY,
            403,
            404,
            409,
            429,
        ),
    )
    async def post(self, request: Request, conv_id: str) -> Response:
        body = s.MessageCreateSerializer(data=request.data)
        conversation = await run_db(selectors.conversation_get, conv_id=conv_id, user=request.user, mount=self.mounted)
        body.is_valid(raise_exception=True)
        submitted = await turn_enqueue(conversation=conversation, user=request.user, **body.validated_data)
        if request.query_params.get("wait") in ("1", "true"):
            timeout = settings.CHAT_ENGINE_TIMEOUT_SECONDS * 2
            finished = await await_turn(
                conv_id=conversation.pk, turn_id=submitted.turn.pk, timeout=timeout, read=selectors.turn_if_finished
            )
            if finished is not None:
                return Response(s.TurnSerializer(finished).data, status=200)
            # Still queued or running after the wait: say so, and when to look again.
            turn = await run_db(selectors.turn_get, turn_id=submitted.turn.pk)
            return Response(s.TurnSerializer(turn).data, status=202, headers={"Retry-After": "1"})
        turn = await run_db(selectors.turn_get, turn_id=submitted.turn.pk)
        return Response({"turn_id": str(turn.pk), "status": turn.status, "created": submitted.created}, status=202)
