"""Websocket authentication (session or token) and the origin check."""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qs

from channels.auth import AuthMiddleware
from channels.security.websocket import OriginValidator
from channels.sessions import CookieMiddleware, SessionMiddleware
from django.conf import settings

from profiles import keys
from profiles.models import ApiKey

from .aio import db


def user_for_token(key: str) -> Any:
    token = keys.token_get(key)
    return token.user if token is not None and token.user.is_active else None


_user_for_token = db(user_for_token)


def bearer_caller(authorization: str) -> tuple[Any, ApiKey | None] | None:
    """(user, API key or None) of an `Authorization: Bearer <token or sk-… key>` header, for endpoints
    outside DRF (`/mcp`); None when it names nobody (an unknown, revoked or expired key included)."""
    scheme, _, secret = authorization.partition(" ")
    secret = secret.strip()
    if scheme.lower() not in ("bearer", "token") or not secret:
        return None
    if secret.startswith(keys.SECRET_PREFIX):
        key = keys.key_for_secret(secret)
        return (key.owner, key) if key is not None else None
    user = user_for_token(secret)
    return (user, None) if user is not None else None


def _token_from_scope(scope: dict[str, Any]) -> str | None:
    for name, value in scope.get("headers", []):
        if name == b"authorization":
            scheme, _, key = value.decode("latin-1").partition(" ")
            if scheme.lower() in ("token", "bearer") and key.strip():
                return key.strip()
    query = parse_qs(scope.get("query_string", b"").decode())
    return (query.get("token") or [None])[-1]


class TokenOrSessionAuth(AuthMiddleware):
    """`?token=` or `Authorization: Token <key>` for API clients; otherwise the session decides (channels'
    `AuthMiddleware`). A socket whose token names a user does not look its session's user up as well
    (a hop to the process's one sync thread per socket)."""

    async def __call__(self, scope, receive, send):
        key = _token_from_scope(scope)
        user = await _user_for_token(key) if key else None
        if user is not None:
            return await self.inner({**scope, "user": user}, receive, send)
        return await super().__call__(scope, receive, send)


class SessionOrTokenAuth:
    def __init__(self, inner) -> None:
        self.session_stack = CookieMiddleware(SessionMiddleware(TokenOrSessionAuth(inner)))

    async def __call__(self, scope, receive, send):
        return await self.session_stack(scope, receive, send)


class AllowedHostsOrigin(OriginValidator):
    """Browsers always send Origin on websockets: it must match ALLOWED_HOSTS (cross-site socket
    hijacking). Non-browser clients send none; they authenticate with a token or their own cookie."""

    def __init__(self, application) -> None:
        super().__init__(application, settings.ALLOWED_HOSTS)

    def valid_origin(self, parsed_origin) -> bool:
        if parsed_origin is None:
            return True
        return super().valid_origin(parsed_origin)
