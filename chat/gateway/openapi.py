"""What the OpenAPI schema says about the gateway: bearer tokens, strict request objects, the OpenAI
error body per status, the trace headers and the two media types of a completion (JSON, or server-sent
events with `stream: true`)."""

from __future__ import annotations

from typing import Any

from drf_spectacular.extensions import OpenApiAuthenticationExtension, OpenApiSerializerExtension
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse

from profiles.api.openapi import RETRY_AFTER

from . import serializers as s
from .inputs import CONVERSATION_HEADER, TURN_HEADER
from .response_objects import ResponseObjectSerializer

TAGS = ["openai-compatible"]

ERRORS = {
    400: "`invalid_request_error`: malformed or unsupported input (`param` names it), e.g. client-side tools, "
    "`n` > 1, earlier messages without `X-Conversation-Id`, text that cannot be stored.",
    401: "`authentication_error`: no valid token (`Authorization: Bearer <token>`).",
    403: "`permission_error`: e.g. `policy_violation`, an override the profile's policy refuses; or another "
    "user's conversation.",
    404: "`invalid_request_error`: `model_not_found`, or no such conversation in this app.",
    409: "`cancelled`: the turn was cancelled (its partial text is stored).",
    413: "`too_large`: the request body is larger than the server accepts.",
    415: "`unsupported_media_type`: the body is not `application/json`.",
    429: "`rate_limit_error`: `throttled` or `queue_full`; try again after `Retry-After` seconds.",
    502: "`server_error`: the turn failed (`code` is the turn's error code); it is stored with its partial text.",
    503: "`server_error`, `interrupted`: the server stopped while the turn ran.",
    504: "`server_error`, `timeout`: the turn did not finish in time; it goes on and is stored.",
}
TURN_OUTCOMES = (409, 502, 503, 504)


def errors(*codes: int) -> dict[int, OpenApiResponse]:
    return {code: OpenApiResponse(s.OpenAIErrorSerializer, description=ERRORS[code]) for code in codes}


def trace_header(name: str, description: str, statuses: list[int]) -> OpenApiParameter:
    return OpenApiParameter(
        name,
        OpenApiTypes.UUID,
        location=OpenApiParameter.HEADER,
        response=statuses,
        required=True,
        description=description,
    )


CONVERSATION_REQUEST = OpenApiParameter(
    CONVERSATION_HEADER,
    OpenApiTypes.UUID,
    location=OpenApiParameter.HEADER,
    required=False,
    description="Continue this conversation of yours (the server keeps its context); absent: a new conversation.",
)
TRACE_HEADERS = [
    trace_header(CONVERSATION_HEADER, "The conversation the turn was stored in.", [200, *TURN_OUTCOMES]),
    trace_header(
        TURN_HEADER, "The stored turn (its runtime record: `GET …/api/chat/conversations/{id}`).", [200, *TURN_OUTCOMES]
    ),
]
SHOULD_RETRY = OpenApiParameter(
    "x-should-retry",
    {"type": "string", "enum": ["false"]},
    location=OpenApiParameter.HEADER,
    response=list(TURN_OUTCOMES),
    required=True,
    description="The turn is stored: a retry would be a new turn (the openai SDK then does not retry).",
)
SSE_DESCRIPTION = (
    "With `stream: true`, `text/event-stream`: `data: <chat.completion.chunk>` events (a role chunk, "
    "content deltas, a chunk with `finish_reason`, a usage chunk with `stream_options.include_usage`), then "
    '`data: [DONE]`. A turn that fails or times out sends `data: {"error": {...}}` before `[DONE]`.'
)
# One server-sent event: its `data` is a `chat.completion.chunk` or an error object (JSON), or `[DONE]`.
SSE_EVENT = {
    "type": "object",
    "properties": {
        "event": {"type": "string", "enum": ["message"]},
        "data": {
            "type": "string",
            "pattern": r"^(\[DONE\]|\{.*\})$",
            "description": 'A `chat.completion.chunk` or `{"error": {...}}` as JSON, or `[DONE]` (the last event).',
        },
    },
    "required": ["data"],
}
COMPLETION_RESPONSES: dict[Any, Any] = {
    (200, "application/json"): OpenApiResponse(s.ChatCompletionSerializer, description="The finished turn's answer."),
    (200, "text/event-stream"): OpenApiResponse(SSE_EVENT, description=SSE_DESCRIPTION),
    **errors(400, 401, 403, 404, 409, 413, 415, 429, 502, 503, 504),
}
COMPLETION_PARAMETERS = [CONVERSATION_REQUEST, *TRACE_HEADERS, SHOULD_RETRY, RETRY_AFTER]


class BearerTokenScheme(OpenApiAuthenticationExtension):
    target_class = "chat.gateway.views.BearerTokenAuthentication"
    name = "bearerAuth"

    def get_security_definition(self, auto_schema: Any) -> dict[str, Any]:
        return {"type": "http", "scheme": "bearer", "description": "A DRF token: `Authorization: Bearer <token>`."}


class StrictObjectExtension(OpenApiSerializerExtension):
    """Request objects of the gateway refuse unknown keys (400): `additionalProperties: false`."""

    target_class = "chat.gateway.serializers.StrictObject"
    match_subclasses = True

    def map_serializer(self, auto_schema: Any, direction: Any) -> dict[str, Any]:
        schema = auto_schema._map_serializer(self.target, direction, bypass_extensions=True)
        schema["additionalProperties"] = False
        return schema


RESPONSE_SSE_DESCRIPTION = (
    "With `stream: true`, `text/event-stream` of Responses events (`event: <type>` and `data: {type, "
    "sequence_number, …}`): `response.created`, `response.in_progress`, `response.output_item.added`, "
    "`response.content_part.added`, `response.output_text.delta` per delta, `response.output_text.done`, "
    "`response.content_part.done`, `response.output_item.done`, `response.completed`; `response.failed` for "
    "a turn that failed; `error` when it did not finish in time."
)
RESPONSE_EVENT = {
    "type": "string",
    "description": "Server-sent events: `event: <type>` then `data: <JSON event>` (see the description).",
}
RESPONSE_RESPONSES: dict[Any, Any] = {
    (200, "application/json"): OpenApiResponse(
        ResponseObjectSerializer, description="The finished turn as a Response object."
    ),
    (200, "text/event-stream"): OpenApiResponse(RESPONSE_EVENT, description=RESPONSE_SSE_DESCRIPTION),
    **errors(400, 401, 403, 404, 409, 413, 415, 429, 502, 503, 504),
}
RESPONSE_PARAMETERS = [*TRACE_HEADERS, SHOULD_RETRY, RETRY_AFTER]
