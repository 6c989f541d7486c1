"""How API callers authenticate: the project's tokens (DRF's `Authorization: Token …`) and API keys
(`Authorization: Bearer sk-…`, `profiles.keys`). Imported by DRF's settings: it imports no view."""

from __future__ import annotations

from typing import Any

from django.utils.translation import gettext_lazy as _
from rest_framework import authentication
from rest_framework.authentication import BaseAuthentication, get_authorization_header
from rest_framework.exceptions import AuthenticationFailed
from rest_framework.request import Request

from profiles import keys
from profiles.models import ApiKey


class ApiKeyAuthentication(BaseAuthentication):
    """`Authorization: Bearer sk-…`: the key's owner is the user, the key is `request.auth` (its scopes and
    limits apply). A secret that is unknown, revoked or expired is a 401; other bearer values are left to
    the next authentication (the project's tokens)."""

    def authenticate(self, request: Request) -> tuple[Any, ApiKey] | None:
        parts = get_authorization_header(request).split()
        if len(parts) != 2 or parts[0].lower() != b"bearer" or not parts[1].startswith(keys.SECRET_PREFIX.encode()):
            return None
        key = keys.key_for_secret(parts[1].decode("latin-1"))
        if key is None:
            raise AuthenticationFailed("invalid API key: unknown, revoked or expired")
        return key.owner, key

    def authenticate_header(self, request: Request) -> str:
        return "Bearer"


class TokenAuthentication(authentication.TokenAuthentication):
    """DRF's token authentication (`Authorization: Token …`) with its lookup compiled once (`keys.token_get`):
    every request that carries a token makes it. The same answers as DRF's."""

    def authenticate_credentials(self, key: str) -> tuple[Any, Any]:
        token = keys.token_get(key)
        if token is None:
            raise AuthenticationFailed(_("Invalid token."))
        if not token.user.is_active:
            raise AuthenticationFailed(_("User inactive or deleted."))
        return token.user, token
