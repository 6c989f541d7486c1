"""Domain errors of the profile platform. Each maps to one HTTP status and error code."""

from __future__ import annotations

from typing import Any


class ProfileError(Exception):
    status = 400
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


class NotFound(ProfileError):
    status = 404
    code = "not_found"


class PolicyViolation(ProfileError):
    status = 403
    code = "policy_violation"


class ReadOnly(ProfileError):
    status = 403
    code = "read_only"


class Conflict(ProfileError):
    """409 for invariant conflicts that are not version mismatches (deleting the default profile)."""

    status = 409
    code = "conflict"


class VersionConflict(ProfileError):
    status = 409
    code = "version_conflict"

    def __init__(self, *, expected: int, actual: int | None, what: str = "profile") -> None:
        super().__init__(
            f"{what} version is {actual}, not {expected}: reload and retry",
            field="expected_version",
            expected=expected,
            actual=actual,
        )


class PreconditionFailed(ProfileError):
    status = 412
    code = "precondition_failed"

    def __init__(self, *, expected: int, actual: int | None) -> None:
        super().__init__(
            f'If-Match "{expected}" does not match the current version "{actual}"',
            field="If-Match",
            expected=expected,
            actual=actual,
        )
