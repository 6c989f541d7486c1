"""One JSON error shape for every API route: {"error": {"code", "message", "field"?}}."""

from __future__ import annotations

from typing import Any

from django.core.exceptions import PermissionDenied as DjangoPermissionDenied
from django.core.exceptions import RequestDataTooBig
from django.http import Http404
from rest_framework import exceptions, status
from rest_framework.response import Response

from profiles.errors import ProfileError

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
}


def first_error(detail: Any, path: str = "") -> tuple[str, str]:
    """Flatten DRF's nested error detail to its first (field path, message)."""
    if isinstance(detail, dict):
        key, value = next(iter(detail.items()))
        if key in ("non_field_errors", "detail"):
            return first_error(value, path)
        return first_error(value, f"{path}.{key}" if path else str(key))
    if isinstance(detail, list):
        for index, item in enumerate(detail):
            if item:
                if isinstance(item, (dict, list)):
                    return first_error(item, f"{path}[{index}]")
                return path, str(item)
        return path, "invalid"
    return path, str(detail)


def error_response(status_code: int, body: dict[str, Any], headers: dict[str, str] | None = None) -> Response:
    return Response({"error": body}, status=status_code, headers=headers)


def exception_handler(exc: Exception, context: dict[str, Any]) -> Response | None:
    if isinstance(exc, ProfileError):
        return error_response(exc.status, exc.as_dict())
    if isinstance(exc, RequestDataTooBig):
        return error_response(413, {"code": "too_large", "message": "the request body is too large"})
    if isinstance(exc, Http404):
        exc = exceptions.NotFound()
    elif isinstance(exc, DjangoPermissionDenied):
        exc = exceptions.PermissionDenied()
    if not isinstance(exc, exceptions.APIException):
        return None
    headers: dict[str, str] = {}
    if getattr(exc, "auth_header", None):
        headers["WWW-Authenticate"] = exc.auth_header
    if getattr(exc, "wait", None):
        headers["Retry-After"] = str(int(exc.wait))
    code = CODES.get(exc.status_code, "error")
    if isinstance(exc, exceptions.ValidationError):
        field, message = first_error(exc.detail)
        body = {"code": code, "message": f"{field}: {message}" if field else message}
        if field:
            body["field"] = field
        return error_response(exc.status_code, body, headers)
    return error_response(exc.status_code, {"code": code, "message": str(exc.detail)}, headers)
