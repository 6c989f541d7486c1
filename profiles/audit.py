"""The audit log: every write to registries, profiles and labels appends who did what, to which object,
the structured change and from where, in the write's own transaction (a refused write leaves none).

Services pass the actor they already check permissions for; where the request came from (its address, and
for an API key its id) is request state, kept in a context variable by `AuditOriginMiddleware` so that no
service signature carries it. Writes from files (import, seed) are the system's.
"""

from __future__ import annotations

import contextvars
from dataclasses import dataclass
from typing import Any

from asgiref.sync import iscoroutinefunction, markcoroutinefunction

from .models import AuditEvent
from .timestamps import now_ms


@dataclass(frozen=True)
class Origin:
    ip: str | None
    key_id: int | None = None  # the API key that authenticated the request, when one did


_origin: contextvars.ContextVar[Origin | None] = contextvars.ContextVar("audit_origin", default=None)


def set_origin(origin: Origin | None) -> contextvars.Token:
    return _origin.set(origin)


def audit_record(
    *, actor: Any, source: str, action: str, object_type: str, registry: str, slug: str = "", changes: Any = None
) -> AuditEvent:
    """Append an entry (call it inside the write's transaction). `actor` None or a file `source`: the system."""
    origin = _origin.get()
    user = actor if actor is not None and getattr(actor, "is_authenticated", False) else None
    if user is not None:
        kind = "key" if origin is not None and origin.key_id is not None else "user"
        actor_id, username = user.pk, user.get_username()
    else:
        kind, actor_id, username = "system", None, source
    return AuditEvent.objects.create(
        at_ms=now_ms(),
        actor_type=kind,
        actor_id=actor_id,
        actor_username=username,
        action=action,
        object_type=object_type,
        registry=registry,
        slug=slug,
        changes=changes if changes is not None else {},
        ip=origin.ip if origin is not None else None,
    )


def field_changes(before: dict[str, Any], after: dict[str, Any]) -> dict[str, Any]:
    """`{field: {"from": old, "to": new}}` for each field whose value differs."""
    return {k: {"from": before.get(k), "to": v} for k, v in after.items() if before.get(k) != v}


class AuditOriginMiddleware:
    """Keeps the request's address for the audit entries its writes append (both modes)."""

    sync_capable = True
    async_capable = True

    def __init__(self, get_response: Any) -> None:
        self.get_response = get_response
        self.async_mode = iscoroutinefunction(get_response)
        if self.async_mode:
            markcoroutinefunction(self)

    def __call__(self, request: Any) -> Any:
        if self.async_mode:
            return self.__acall__(request)
        token = set_origin(Origin(request.META.get("REMOTE_ADDR") or None))
        try:
            return self.get_response(request)
        finally:
            _origin.reset(token)

    async def __acall__(self, request: Any) -> Any:
        token = set_origin(Origin(request.META.get("REMOTE_ADDR") or None))
        try:
            return await self.get_response(request)
        finally:
            _origin.reset(token)
