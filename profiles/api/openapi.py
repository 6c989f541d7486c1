"""What the OpenAPI schema says about errors and headers, shared by every API (profiles, conversations,
inventory): the error body `{"error": {"code", "message", "field"?}}` per status, `Retry-After` on
429, `ETag` on profile documents and the `If-Match` request header of the version-checked writes.

`responses(...)` builds an `extend_schema(responses=...)` dict: the success responses given, plus one
documented error response per status code a route can answer (`AUTH` for every signed-in route).
"""

from __future__ import annotations

from typing import Any

from drf_spectacular.extensions import OpenApiSerializerExtension
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse
from rest_framework import serializers

from profiles.merge_patch import MEDIA_TYPE as MERGE_PATCH_MEDIA_TYPE

ERROR_DESCRIPTIONS = {
    400: "`invalid`: the input is malformed or breaks a rule; `field` names it.",
    401: "`not_authenticated`: no valid session or token.",
    403: "`permission_denied` (also: a profile restricted to groups the caller is not in, in a registry they "
    "may write), `policy_violation` or `read_only`.",
    404: "`not_found`: the resource in the URL (or a registry/profile it names) does not exist.",
    409: "`version_conflict` (with `expected` and `actual`), `conflict`, or `profile_unavailable` (the profile "
    "named cannot be used: its stack does not resolve).",
    412: "`precondition_failed`: `If-Match` does not match the current version (with `expected` and `actual`).",
    413: "`too_large`: the request body is larger than the server accepts.",
    415: "`unsupported_media_type`: the body is not `application/json` (nor, on a PATCH, "
    "`application/merge-patch+json`).",
    429: "`throttled` or `queue_full`: try again after `Retry-After` seconds.",
}

# A slug as clients may send it (the services trim and lower-case it, then require this form).
SLUG_PATTERN = r"^[A-Za-z0-9](?:[A-Za-z0-9._-]{0,126}[A-Za-z0-9])?$"
SLUG_SCHEMA = {"type": "string", "pattern": SLUG_PATTERN, "maxLength": 128}
# A profile ref: `slug` (follow), `slug@3` (a version) or `slug@production` (a label; `latest` = newest).
REF_PATTERN = SLUG_PATTERN.removesuffix("$") + r"(?:@(?:[0-9]+|[A-Za-z][A-Za-z0-9_-]{0,63}))?$"
REF_SCHEMA = {"type": "string", "pattern": REF_PATTERN, "maxLength": 193}
LABEL_SCHEMA = {"type": "string", "pattern": r"^[A-Za-z][A-Za-z0-9_-]{0,63}$", "maxLength": 64}

# A JSON object the services check in depth (runtime, policy, extensions, request overrides); null = none.
JSON_OBJECT_SCHEMA = {"type": "object", "additionalProperties": {}}
# A profile's base layers, in order (the services check that they exist, cycles and the lineage size).
STACK_SCHEMA = {
    "type": "array",
    "items": {
        "type": "object",
        "properties": {
            "registry": SLUG_SCHEMA,
            "slug": SLUG_SCHEMA,
            "version": {"type": "integer", "minimum": 1},
        },
        "required": ["slug"],
        "additionalProperties": False,
    },
}
# Django group names (empty: everyone).
GROUPS_SCHEMA = {"type": "array", "items": {"type": "string", "maxLength": 150}}
# A registry's group defaults, first match wins (each profile must be one of the registry's).
GROUP_DEFAULTS_SCHEMA = {
    "type": "array",
    "items": {
        "type": "object",
        "properties": {"group": {"type": "string", "maxLength": 150}, "profile": SLUG_SCHEMA},
        "required": ["group", "profile"],
        "additionalProperties": False,
    },
}
# Text that must not be blank once trimmed, and without NUL (which no database stores).
NON_BLANK_PATTERN = r"^[^\x00]*[^\s\x00][^\x00]*$"

# Every route needs a signed-in user.
AUTH = (401,)
# Routes that read a JSON body.
BODY = (400, 413, 415)


class ApiErrorItemSerializer(serializers.Serializer):
    field = serializers.CharField(allow_null=True)
    message = serializers.CharField()


class ApiErrorDetailSerializer(serializers.Serializer):
    code = serializers.CharField(help_text="Stable machine-readable code, e.g. `invalid`, `not_found`.")
    message = serializers.CharField()
    field = serializers.CharField(required=False, help_text="Path of the offending input, e.g. `runtime.tools[0]`.")
    errors = ApiErrorItemSerializer(many=True, required=False, help_text="Every problem, when there are several.")  # type: ignore[assignment]  # a field: DRF pops declared fields off the class
    expected = serializers.IntegerField(required=False, allow_null=True)
    actual = serializers.IntegerField(required=False, allow_null=True)


class ApiErrorSerializer(serializers.Serializer):
    error = ApiErrorDetailSerializer()


def error_response(status: int) -> OpenApiResponse:
    return OpenApiResponse(ApiErrorSerializer, description=ERROR_DESCRIPTIONS[status])


def responses(success: dict[int, Any], *errors: int | tuple[int, ...]) -> dict[int, Any]:
    """`{status: response}`: `success` plus the error body for each status in `errors` (ints or tuples);
    a status given in `success` keeps its own description."""
    codes: set[int] = set()
    for item in errors:
        codes.update(item if isinstance(item, tuple) else (item,))
    merged = {**{code: error_response(code) for code in codes}, **success}
    return {code: merged[code] for code in sorted(merged)}


# --------------------------------------------------------------------------- headers

RETRY_AFTER = OpenApiParameter(
    "Retry-After",
    OpenApiTypes.INT,
    location=OpenApiParameter.HEADER,
    response=[429],
    required=True,
    description="Seconds to wait before trying again.",
)
ETAG = OpenApiParameter(
    "ETag",
    OpenApiTypes.STR,
    location=OpenApiParameter.HEADER,
    response=[200, 201],
    required=True,
    pattern=r'^"[0-9]+"$',
    description='The version of the document, quoted (`"3"`): send it back as `If-Match`.',
)
LOCATION = OpenApiParameter(
    "Location",
    OpenApiTypes.URI,
    location=OpenApiParameter.HEADER,
    response=[201],
    required=True,
    description="URL of the created resource.",
)
REGISTRY_PARAM = OpenApiParameter(
    "registry", SLUG_SCHEMA, description="Registry slug; absent = the mount's default registry"
)
SLUG_PATH = OpenApiParameter("slug", SLUG_SCHEMA, location=OpenApiParameter.PATH, description="Profile slug")
REGISTRY_PATH = OpenApiParameter("slug", SLUG_SCHEMA, location=OpenApiParameter.PATH, description="Registry slug")
REF_PATH = OpenApiParameter(
    "slug", REF_SCHEMA, location=OpenApiParameter.PATH, description="Profile ref: `slug`, `slug@3` or `slug@label`"
)
LABEL_PATH = OpenApiParameter("name", LABEL_SCHEMA, location=OpenApiParameter.PATH, description="Label name")
IF_MATCH = OpenApiParameter(
    "If-Match",
    OpenApiTypes.STR,
    location=OpenApiParameter.HEADER,
    required=False,
    description='Only write if the current version is this one (`"3"` or `3`): a mismatch is 412.',
)


def merge_patch_body(serializer: Any) -> dict[str, Any]:
    """`extend_schema(request=...)` of a PATCH that takes a JSON Merge Patch (RFC 7396): its own media type
    first, and plain JSON, which means the same."""
    return {MERGE_PATCH_MEDIA_TYPE: serializer, "application/json": serializer}


# --------------------------------------------------------------------------- strict request bodies


class StrictKeysExtension(OpenApiSerializerExtension):
    """Request bodies of `StrictKeysMixin` serializers refuse unknown keys (400): the schema says
    `additionalProperties: false` and lists the keys they accept besides their fields (server-owned
    keys echoed back from a document, which are ignored, and the keys naming the target)."""

    target_class = "profiles.api.serializers.StrictKeysMixin"
    match_subclasses = True

    def map_serializer(self, auto_schema: Any, direction: Any) -> dict[str, Any]:
        schema = auto_schema._map_serializer(self.target, direction, bypass_extensions=True)
        properties = schema.setdefault("properties", {})
        for key in sorted(self.target.ignored):
            properties.setdefault(key, {"description": "Server-owned: ignored when echoed back."})
        for key in self.target.fixed:
            properties.setdefault(
                key, {**SLUG_SCHEMA, "description": f"Must name the target's {key}: it cannot change."}
            )
        schema["additionalProperties"] = False
        return schema
