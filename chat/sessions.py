"""Browser sessions and chat sockets: logging out in one tab ends the chat in every tab.

A socket authenticated by its session cookie joins its session's group; Django's `user_logged_out`
signal (the logout view) tells that group, and every socket of the session closes with 4401, on every
worker (the channel layer carries it). A socket also checks its session before each turn it submits, so
a session that ended another way (expired, deleted, flushed by another login) cannot send either.
"""

from __future__ import annotations

import hashlib
import logging
from importlib import import_module
from typing import Any

from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from django.conf import settings
from django.contrib.auth import SESSION_KEY, user_logged_out
from django.dispatch import receiver

log = logging.getLogger(__name__)


def session_group(session_key: str) -> str:
    """The channel-layer group of a session's sockets (the key itself never leaves the process)."""
    return "session." + hashlib.sha256(session_key.encode()).hexdigest()[:40]


def socket_session_key(scope: dict[str, Any], user: Any) -> str | None:
    """The session key of a socket signed in by its session cookie, else None (a token, or no session).
    Synchronous: the session may be read from the database."""
    session = scope.get("session")
    key = getattr(session, "session_key", None)
    if not key or user is None or session is None:
        return None
    try:
        owner = session.get(SESSION_KEY)
    except Exception:  # an unreadable session authenticates nothing
        return None
    return key if owner is not None and str(owner) == str(user.pk) else None


def session_alive(session_key: str, user_pk: Any) -> bool:
    """The session still exists, has not expired and is still the user's. Synchronous (one query)."""
    store = import_module(settings.SESSION_ENGINE).SessionStore(session_key=session_key)
    return str(store.load().get(SESSION_KEY)) == str(user_pk)


@receiver(user_logged_out, dispatch_uid="chat.sessions.close_sockets")
def close_sockets(sender: Any, request: Any, user: Any, **kwargs: Any) -> None:
    """Logout: every socket of this session closes (4401). Never fails the logout itself."""
    key = getattr(getattr(request, "session", None), "session_key", None)
    if not key:
        return
    try:
        async_to_sync(get_channel_layer().group_send)(session_group(key), {"type": "session.ended"})
    except Exception:
        log.warning("could not tell the sockets of a session that it ended", exc_info=True)
