"""The one domain error hierarchy (every app's errors derive from it). Errors say what went wrong
(`code`, the kind of error by their base class); `profiles.api.errors` maps the kinds to HTTP statuses
and the chat consumer to `error` frames, each in one place."""

from __future__ import annotations

from typing import Any

# (field path, message) pairs, as validators collect them.
Errors = list[tuple[str, str]]


class ProfileError(Exception):
    code = "invalid"
    retry_after: int | None = None  # seconds: when trying again may succeed (HTTP Retry-After)

    def __init__(self, message: str, *, field: str | None = None, **extra: Any) -> None:
        super().__init__(message)
        self.message = message
        self.field = field
        self.extra = extra

    def as_dict(self) -> dict[str, Any]:
        body: dict[str, Any] = {"code": self.code, "message": self.message}
        if self.field:
            body["field"] = self.field
        body.update(self.extra)
        return body


class InvalidInput(ProfileError):
    """400. `errors` optionally lists every (field, message) found, the first one is the headline."""

    def __init__(self, message: str, *, field: str | None = None, errors: list[tuple[str, str]] | None = None):
        super().__init__(message, field=field)
        self.errors = errors or ([(field, message)] if field else [])
        if len(self.errors) > 1:
            self.extra["errors"] = [{"field": f, "message": m} for f, m in self.errors]

    @classmethod
    def from_errors(cls, errors: list[tuple[str, str]]) -> InvalidInput:
        field, message = errors[0]
        return cls(f"{field}: {message}" if field else message, field=field or None, errors=errors)


class StackError(InvalidInput):
    """A stack that does not resolve (a layer that is gone, a cycle, too many layers, a merged runtime
    that is invalid): a write that would store one gets it as a 400 on `stack[i]`; resolving a stored
    one turns it into `ProfileUnavailable`."""


class NotFound(ProfileError):
    code = "not_found"


class NotVisible(NotFound):
    """A profile the user may not use: answered exactly like a missing one (404, same message: nothing
    leaks). Code that resolves a stored selection tells the two apart (`access_revoked`)."""


class Restricted(NotVisible):
    """A profile the user may not use, in a registry they may write: they see every slug of it (a create
    would answer 409 for this one anyway; lists flag it `restricted`), so it is a 403, not a 404. Code
    that resolves a stored selection treats it like any `NotVisible`."""

    code = "permission_denied"


class Forbidden(ProfileError):
    """The caller may not do this (whatever the input)."""

    code = "permission_denied"


class PolicyViolation(Forbidden):
    code = "policy_violation"


class ReadOnly(Forbidden):
    code = "read_only"


class Conflict(ProfileError):
    """An invariant conflict that is not a version mismatch (deleting the default profile)."""

    code = "conflict"


class ApprovalRequired(Conflict):
    """409: the registry requires approvals to move or remove this label: ask with a request instead."""

    code = "approval_required"


class RequestClosed(Conflict):
    """409: the label request is no longer pending (applied, rejected, or stale: its label moved)."""

    code = "request_closed"


class Busy(ProfileError):
    """Try again later (`retry_after` seconds)."""

    code = "busy"
    retry_after = 1


class ProfileUnavailable(Conflict):
    """409: the profile exists but cannot run as stored: its stack does not resolve (older data: a cycle,
    a layer that is gone). Refused when it is selected; a turn on it fails with this message; a socket
    whose profile it is stays open."""

    code = "profile_unavailable"

    def __init__(self, message: str, *, field: str | None = None, profile: dict[str, Any] | None = None) -> None:
        super().__init__(message, field=field)
        self.profile = profile or {}  # the version refused: `{registry, slug, version, ref, label}`


class VersionConflict(Conflict):
    code = "version_conflict"

    def __init__(self, *, expected: int, actual: int | None, what: str = "profile") -> None:
        # `actual` None: it has no version (a label that is not set); a message never says "is None".
        if actual is None:
            state = f"has no current version (expected {expected})"
        else:
            state = f"version is {actual}, not {expected}"
        super().__init__(
            f"{what} {state}: reload and retry",
            field="expected_version",
            expected=expected,
            actual=actual,
        )


class PreconditionFailed(ProfileError):
    code = "precondition_failed"

    def __init__(self, *, expected: int, actual: int | None) -> None:
        super().__init__(
            f'If-Match "{expected}" does not match the current version "{actual}"'
            if actual is not None
            else f'If-Match "{expected}" was sent, and there is no current version',
            field="If-Match",
            expected=expected,
            actual=actual,
        )


class Unavailable(ProfileError):
    """503: the database or Redis did not answer. Nothing was written; trying again after
    `retry_after` seconds may succeed (outages are normal: they last seconds)."""

    code = "unavailable"
    retry_after = 5


# The exceptions that mean "the infrastructure is away", not "the request is wrong": connection
# refused or lost, a pool with no free connection, a timed-out lock. psycopg's errors reach Django code
# as django.db errors; redis-py's come from the sequencer, the channel layer and a Redis cache.
def is_outage(exc: BaseException) -> bool:
    from django.db import InterfaceError, OperationalError
    from redis.exceptions import ConnectionError as RedisConnectionError
    from redis.exceptions import TimeoutError as RedisTimeoutError

    return isinstance(exc, OperationalError | InterfaceError | RedisConnectionError | RedisTimeoutError)


def outage_error(exc: BaseException) -> Unavailable:
    """The error a client gets for an outage: what was away, never the driver's text (it may name hosts)."""
    from django.db import Error as DatabaseError

    what = "the database" if isinstance(exc, DatabaseError) else "the message broker (Redis)"
    return Unavailable(f"{what} is not answering; nothing was changed: try again in a few seconds")
