"""Errors of the gateway, in OpenAI's shape: `{"error": {"message", "type", "param", "code"}}`.

The one place where errors become HTTP for the `/v1/` routes. Domain errors (`profiles.errors` kinds,
the apps' subclasses, the gateway's own below) and DRF's exceptions get their status from the project's
table (`profiles.api.errors`, also used by every other route), so a policy violation is a 403 here as
in the profile API; only the body is reshaped. The gateway's turn outcomes carry their own status
(502/503/504, 409). Statuses are the ones the official `openai` SDK turns into its error classes:
400 BadRequestError, 401 AuthenticationError, 403 PermissionDeniedError, 404 NotFoundError,
409 ConflictError, 429 RateLimitError (with `Retry-After`), 5xx InternalServerError.
"""

from __future__ import annotations

import logging
from typing import Any

from django.http import HttpRequest, JsonResponse
from django.views.decorators.csrf import csrf_exempt
from rest_framework.response import Response

from profiles.api.errors import encodable
from profiles.api.errors import exception_handler as api_exception_handler
from profiles.errors import Forbidden, InvalidInput, NotFound, ProfileError

log = logging.getLogger(__name__)

# OpenAI's error `type` per status (the SDK picks its class from the status, clients read `code`).
TYPES = {
    401: "authentication_error",
    403: "permission_error",
    429: "rate_limit_error",
}
SERVER_ERROR = "server_error"
# Headers of the project's error responses that a client needs here too.
KEPT_HEADERS = ("Retry-After", "WWW-Authenticate")


class ModelNotFound(NotFound):
    code = "model_not_found"

    def __init__(self, model: str) -> None:
        super().__init__(f"The model {model!r} does not exist or you do not have access to it.", field="model")


class ModelNotAllowed(Forbidden):
    """403: the owner may use the model, the API key may not (its scopes)."""

    code = "model_not_allowed"

    def __init__(self, model: str, key_name: str) -> None:
        super().__init__(f"The API key {key_name!r} is not allowed to use the model {model!r}.", field="model")


class UnsupportedParameter(InvalidInput):
    code = "unsupported_parameter"


class TurnOutcomeError(ProfileError):
    """The turn was stored but did not complete in time or at all: the answer is an error whose status
    says why. The client should not retry blindly (a retry is a new turn): `x-should-retry: false`."""

    http_status = 502

    def __init__(self, message: str, *, code: str, http_status: int | None = None) -> None:
        super().__init__(message)
        self.code = code
        if http_status is not None:
            self.http_status = http_status


def error_type(status: int) -> str:
    if status >= 500:
        return SERVER_ERROR
    return TYPES.get(status, "invalid_request_error")


def error_body(status: int, *, message: str, param: str | None = None, code: str | None = None) -> dict[str, Any]:
    """The OpenAI error object; strings a client sent (an unknown key, a model name) stay encodable."""
    return {"error": encodable({"message": message, "type": error_type(status), "param": param, "code": code})}


def exception_handler(exc: Exception, context: dict[str, Any]) -> Response:
    """DRF's hook for the gateway views: every exception becomes an OpenAI-shaped error (never HTML)."""
    if isinstance(exc, TurnOutcomeError):
        body = error_body(exc.http_status, message=exc.message, code=exc.code)
        return Response(body, status=exc.http_status, headers={"x-should-retry": "false"})
    project = api_exception_handler(exc, context)  # statuses from the project's one table
    if project is None:
        log.error("gateway request failed", exc_info=exc)
        return Response(error_body(500, message="internal server error", code=SERVER_ERROR), status=500)
    detail = project.data["error"]
    headers = {name: project[name] for name in KEPT_HEADERS if project.has_header(name)}
    body = error_body(project.status_code, message=detail["message"], param=detail.get("field"), code=detail["code"])
    return Response(body, status=project.status_code, headers=headers)


@csrf_exempt  # token clients send no CSRF token: a POST to an unknown path is a 404 too, not a CSRF 403
def route_not_found(request: HttpRequest, **kwargs: Any) -> JsonResponse:
    """Paths under `v1/` that name no gateway route: OpenAI's 404, not Django's HTML page."""
    body = error_body(404, message=f"no route {request.method} {request.path_info}", code="not_found")
    return JsonResponse(body, status=404)
