"""One JSON error shape for every API route: {"error": {"code", "message", "field"?}}.

The one place errors become HTTP: `exception_handler` (DRF's hook) maps the domain errors of
`profiles.errors` (and the apps' subclasses of them) and DRF's own exceptions; `ApiErrorPages` gives
Django's 400/403/404/500 handlers the same shape under the API prefixes (URLs no view matched,
exceptions no handler knew).
"""

from __future__ import annotations

import sys
from collections.abc import Iterable
from typing import Any

from django.core.exceptions import PermissionDenied as DjangoPermissionDenied
from django.core.exceptions import RequestDataTooBig
from django.http import Http404, HttpRequest, HttpResponse, JsonResponse
from django.views import defaults
from rest_framework import exceptions, status
from rest_framework.response import Response

from profiles.errors import (
    Busy,
    Conflict,
    Forbidden,
    NotFound,
    PreconditionFailed,
    ProfileError,
    Restricted,
    Unavailable,
    is_outage,
    outage_error,
)

CODES = {
    status.HTTP_400_BAD_REQUEST: "invalid",
    status.HTTP_401_UNAUTHORIZED: "not_authenticated",
    status.HTTP_403_FORBIDDEN: "permission_denied",
    status.HTTP_404_NOT_FOUND: "not_found",
    status.HTTP_405_METHOD_NOT_ALLOWED: "method_not_allowed",
    status.HTTP_406_NOT_ACCEPTABLE: "not_acceptable",
    status.HTTP_409_CONFLICT: "conflict",
    status.HTTP_415_UNSUPPORTED_MEDIA_TYPE: "unsupported_media_type",
    status.HTTP_429_TOO_MANY_REQUESTS: "throttled",
    status.HTTP_500_INTERNAL_SERVER_ERROR: "server_error",
    status.HTTP_503_SERVICE_UNAVAILABLE: "unavailable",
}


def first_error(detail: Any, path: str = "") -> tuple[str, str]:
    """Flatten DRF's nested error detail to its first (field path, message)."""
    if isinstance(detail, dict):
        key, value = next(iter(detail.items()))
        if key in ("non_field_errors", "detail"):
            return first_error(value, path)
        if isinstance(key, int):  # ListField / many=True errors are keyed by index
            return first_error(value, f"{path}[{key}]")
        return first_error(value, f"{path}.{key}" if path else str(key))
    if isinstance(detail, list):
        for index, item in enumerate(detail):
            if item:
                if isinstance(item, (dict, list)):
                    return first_error(item, f"{path}[{index}]")
                return path, str(item)
        return path, "invalid"
    return path, str(detail)


def encodable(value: Any) -> Any:
    """`value` with lone surrogates in its strings escaped (`\\ud800`): an error that quotes hostile
    input (an unknown key, an invalid choice) must still encode as UTF-8, or the 400 becomes a 500."""
    if isinstance(value, str):
        if value.isascii():
            return value
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            return value.encode("utf-8", "backslashreplace").decode("utf-8")
        return value
    if isinstance(value, dict):
        return {encodable(k): encodable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [encodable(v) for v in value]
    return value


def error_response(status_code: int, body: dict[str, Any], headers: dict[str, str] | None = None) -> Response:
    return Response({"error": encodable(body)}, status=status_code, headers=headers)


# Each kind of domain error and its HTTP status: the only place they meet.
HTTP_STATUS: tuple[tuple[type[ProfileError], int], ...] = (
    (Restricted, 403),  # a NotFound for the code that resolves selections; its writers see the slug
    (NotFound, 404),
    (Forbidden, 403),
    (PreconditionFailed, 412),
    (Conflict, 409),
    (Busy, 429),
    (Unavailable, 503),
    (ProfileError, 400),
)


def http_status(exc: ProfileError) -> int:
    return next(status for kind, status in HTTP_STATUS if isinstance(exc, kind))


def exception_handler(exc: Exception, context: dict[str, Any]) -> Response | None:
    if is_outage(exc):
        exc = outage_error(exc)
    if isinstance(exc, ProfileError):
        retry = {"Retry-After": str(exc.retry_after)} if exc.retry_after else None
        return error_response(http_status(exc), exc.as_dict(), retry)
    if isinstance(exc, RequestDataTooBig):
        return error_response(413, {"code": "too_large", "message": "the request body is too large"})
    if isinstance(exc, Http404):
        exc = exceptions.NotFound()
    elif isinstance(exc, DjangoPermissionDenied):
        exc = exceptions.PermissionDenied()
    if not isinstance(exc, exceptions.APIException):
        return None
    headers: dict[str, str] = {}
    auth_header = getattr(exc, "auth_header", None)  # set by DRF on authentication failures only
    if auth_header:
        headers["WWW-Authenticate"] = auth_header
    if isinstance(exc, exceptions.Throttled):
        # Always said on a 429 (the schema requires it): at least 1 s, also when DRF has no estimate.
        headers["Retry-After"] = str(max(1, int(exc.wait or 0)))  # type: ignore[attr-defined]  # stubs omit `wait`
    code = CODES.get(exc.status_code, "error")
    if isinstance(exc, exceptions.ValidationError):
        field, message = first_error(exc.detail)
        body = {"code": code, "message": f"{field}: {message}" if field else message}
        if field:
            body["field"] = field
        return error_response(exc.status_code, body, headers)
    return error_response(exc.status_code, {"code": code, "message": str(exc.detail)}, headers)


# --------------------------------------------------------------------------- Django's error handlers


class ApiErrorPages:
    """`handler400/403/404/500` for the URLconf: the JSON error shape for paths under one of
    `api_prefixes`, Django's own pages elsewhere. The 500 body never includes the exception."""

    MESSAGES = {
        400: "bad request",
        403: "permission denied",
        404: "no API resource at this URL",
        500: "internal server error",
        503: "the database or Redis is not answering: try again in a few seconds",
    }

    def __init__(self, api_prefixes: Iterable[str]) -> None:
        self.api_prefixes = tuple(sorted(set(api_prefixes)))

    def is_api(self, request: HttpRequest) -> bool:
        return request.path_info.startswith(self.api_prefixes)

    def json(self, status_code: int) -> JsonResponse:
        body = {"code": CODES[status_code], "message": self.MESSAGES[status_code]}
        return JsonResponse({"error": body}, status=status_code)

    def bad_request(self, request: HttpRequest, exception: Exception) -> HttpResponse:
        return self.json(400) if self.is_api(request) else defaults.bad_request(request, exception)

    def permission_denied(self, request: HttpRequest, exception: Exception) -> HttpResponse:
        return self.json(403) if self.is_api(request) else defaults.permission_denied(request, exception)

    def page_not_found(self, request: HttpRequest, exception: Exception) -> HttpResponse:
        return self.json(404) if self.is_api(request) else defaults.page_not_found(request, exception)

    def server_error(self, request: HttpRequest) -> HttpResponse:
        """An exception nothing handled (in a view, a middleware, a session save): an outage is a 503
        with `Retry-After`, never a 500."""
        exc = sys.exc_info()[1]
        if exc is not None and is_outage(exc):
            retry = str(Unavailable.retry_after)
            if self.is_api(request):
                response: HttpResponse = self.json(503)
            else:
                response = HttpResponse(OUTAGE_PAGE, status=503, content_type="text/html; charset=utf-8")
            response["Retry-After"] = retry
            return response
        return self.json(500) if self.is_api(request) else defaults.server_error(request)


# A page without templates or the database (both may be what is away): it reloads itself.
OUTAGE_PAGE = (
    '<!doctype html><html lang="en"><head><meta charset="utf-8"><meta http-equiv="refresh" content="5">'
    "<title>Back in a moment</title></head><body><h1>Back in a moment</h1>"
    "<p>The database is not answering. This page tries again every 5 seconds.</p></body></html>"
)
