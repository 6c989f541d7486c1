"""The OpenAI-compatible routes of a mount: thin async views (parse, one service, serialise).

They are DRF views (authentication, permissions, throttles, the schema) whose handlers are coroutines
on the server's event loop (`chat.asyncviews.AsyncAPIView`): a request that waits for its turn holds no
thread.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from django.http import StreamingHttpResponse
from drf_spectacular.openapi import AutoSchema
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework.negotiation import BaseContentNegotiation, DefaultContentNegotiation
from rest_framework.parsers import BaseParser
from rest_framework.permissions import IsAuthenticated
from rest_framework.renderers import BaseRenderer, JSONRenderer
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.throttling import BaseThrottle

from profiles.api.authentication import ApiKeyAuthentication, TokenAuthentication
from profiles.api.mounted import Mounted
from profiles.api.parsers import SafeJSONParser
from profiles.api.throttling import ScopedRateThrottle
from profiles.models import ApiKey

from .. import limits
from ..aio import run_db
from ..asyncviews import AsyncAPIView
from . import errors, inputs, openapi, response_objects, responses, services
from . import serializers as s


class BearerTokenAuthentication(TokenAuthentication):
    """The project's DRF tokens as OpenAI clients send them: `Authorization: Bearer <token>`."""

    keyword = "Bearer"


class KeyRateThrottle(BaseThrottle):
    """An API key's per-minute limits (`chat.limits`), exact across workers; the window it leaves is said
    in the `x-ratelimit-*` headers of the answer, a refusal included (429 with `Retry-After`)."""

    def allow_request(self, request: Request, view: Any) -> bool:
        key = request.auth if isinstance(request.auth, ApiKey) else None
        if key is not None:
            try:
                view.rate_window = limits.admit(key)
            except limits.RateLimited as exc:
                view.rate_window = exc.window
                raise
        return True


class JSONAnswers(BaseContentNegotiation):
    """Answers are JSON (or a stream of JSON events): an SSE client's `Accept` never makes a 406."""

    def select_parser(self, request: Request, parsers: Iterable[BaseParser]) -> Any:
        return DefaultContentNegotiation().select_parser(request, parsers)

    def select_renderer(
        self, request: Request, renderers: Iterable[BaseRenderer], format_suffix: str | None = None
    ) -> Any:
        first = next(iter(renderers))
        return first, first.media_type


class GatewayView(Mounted, AsyncAPIView):
    authentication_classes = [ApiKeyAuthentication, BearerTokenAuthentication, TokenAuthentication]
    permission_classes = [IsAuthenticated]
    parser_classes = [SafeJSONParser]
    renderer_classes = [JSONRenderer]
    content_negotiation_class = JSONAnswers
    throttle_classes: list = [KeyRateThrottle]
    trace_headers: dict[str, str] | None = None  # set once a turn exists: on every answer, errors too
    rate_window: limits.Window | None = None  # the key's minute, when it has limits

    def key(self, request: Request) -> ApiKey | None:
        """The API key the request came with (its scopes apply), or None for the project's tokens."""
        return request.auth if isinstance(request.auth, ApiKey) else None

    def get_exception_handler(self) -> Any:
        return errors.exception_handler

    def finalize_response(self, request: Request, response: Any, *args: Any, **kwargs: Any) -> Any:
        response = super().finalize_response(request, response, *args, **kwargs)
        headers = {**(self.rate_window.headers() if self.rate_window else {}), **(self.trace_headers or {})}
        for name, value in headers.items():
            response[name] = value
        return response


def event_stream(events: Any) -> StreamingHttpResponse:
    """Server-sent events, sent as they come (no proxy buffering, no cache)."""
    return StreamingHttpResponse(
        events, content_type="text/event-stream", headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
    )


MODEL_PATH = OpenApiParameter(
    "model", str, location=OpenApiParameter.PATH, description="A model id: `slug` or `registry/slug`."
)


class ListSchema(AutoSchema):
    """`…_list`, not `…_retrieve`: the list of models and one model are two operations."""

    def get_operation_id(self) -> str:
        return super().get_operation_id().removesuffix("_retrieve") + "_list"


class ModelListView(GatewayView):
    schema = ListSchema()

    @extend_schema(
        tags=openapi.TAGS,
        responses={200: s.ModelListSerializer, **openapi.errors(401)},
        description="Every profile the caller may use, as OpenAI models.",
    )
    async def get(self, request: Request) -> Response:
        rows = await run_db(services.model_list, mount=self.mounted, user=request.user, key=self.key(request))
        return Response(s.model_list_body(rows, self.mounted))


class ModelDetailView(GatewayView):
    @extend_schema(
        tags=openapi.TAGS,
        parameters=[MODEL_PATH],
        responses={200: s.ModelObjectSerializer, **openapi.errors(401, 404)},
    )
    async def get(self, request: Request, model: str) -> Response:
        row = await run_db(
            services.model_get, mount=self.mounted, model=model, user=request.user, key=self.key(request)
        )
        return Response(s.model_object(row, self.mounted))


class ChatCompletionView(GatewayView):
    # Each completion is a turn: the REST turn throttle (per user, CHAT_REST_TURN_RATE) applies too.
    throttle_classes = [KeyRateThrottle, ScopedRateThrottle]
    throttle_scope = "turns"

    @extend_schema(
        tags=openapi.TAGS,
        request=s.ChatCompletionRequestSerializer,
        parameters=openapi.COMPLETION_PARAMETERS,
        responses=openapi.COMPLETION_RESPONSES,
        description="The model's profile answers the last user message as a turn of a conversation of yours "
        "(`X-Conversation-Id`), with its middlewares and tools on the server. " + openapi.SSE_DESCRIPTION,
    )
    async def post(self, request: Request) -> Any:
        body = s.ChatCompletionRequestSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        completion = await services.completion_create(
            user=request.user,
            mount=self.mounted,
            body=body.validated_data,
            conversation_id=request.headers.get(inputs.CONVERSATION_HEADER),
            key=self.key(request),
        )
        self.trace_headers = completion.headers()
        if completion.stream:
            include_usage = bool((body.validated_data.get("stream_options") or {}).get("include_usage"))
            return event_stream(s.sse(completion, include_usage=include_usage))
        return Response(s.completion_body(completion, await completion.result()))


RESPONSE_PATH = OpenApiParameter(
    "response_id", str, location=OpenApiParameter.PATH, description="`resp_` and the turn's id (hex)."
)


class ResponseCreateView(GatewayView):
    # Each response is a turn: the REST turn throttle (per user, CHAT_REST_TURN_RATE) applies too.
    throttle_classes = [KeyRateThrottle, ScopedRateThrottle]
    throttle_scope = "turns"

    @extend_schema(
        tags=openapi.TAGS,
        request=responses.ResponseRequestSerializer,
        parameters=openapi.RESPONSE_PARAMETERS,
        responses=openapi.RESPONSE_RESPONSES,
        description="The model's profile answers `input` as a turn of a new conversation of yours, or of the "
        "conversation `previous_response_id` ends. " + openapi.RESPONSE_SSE_DESCRIPTION,
    )
    async def post(self, request: Request) -> Any:
        body = responses.ResponseRequestSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        asked = responses.response_input(body.validated_data)
        conv_id = None
        if asked.previous is not None:
            conv_id = await run_db(
                responses.previous_conversation, user=request.user, mount=self.mounted, previous=asked.previous
            )
        completion = await services.submit(
            user=request.user,
            mount=self.mounted,
            data=asked.data,
            conv_id=conv_id,
            key=self.key(request),
            metadata=asked.metadata,
        )
        self.trace_headers = completion.headers()
        if completion.stream:
            return event_stream(responses.response_events(completion, mount=self.mounted))
        result = await completion.result()
        turn, previous = await run_db(responses.response_row, turn_id=result.turn.pk)
        return Response(response_objects.response_body(turn, mount=self.mounted, previous=previous))


class ResponseDetailView(GatewayView):
    @extend_schema(
        tags=openapi.TAGS,
        parameters=[RESPONSE_PATH],
        responses={200: response_objects.ResponseObjectSerializer, **openapi.errors(401, 403, 404)},
        description="A stored response (a turn of one of your conversations), finished or in progress.",
    )
    async def get(self, request: Request, response_id: str) -> Response:
        body = await run_db(
            responses.response_get, user=request.user, mount=self.mounted, raw_id=response_id, key=self.key(request)
        )
        return Response(body)
