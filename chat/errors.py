"""The chat app's domain errors (part of the one hierarchy rooted at `profiles.errors.ProfileError`,
mapped to HTTP by `profiles.api.errors` and to `error` frames by the consumer)."""

from __future__ import annotations

from profiles.errors import ProfileError


class ConversationForbidden(ProfileError):
    status = 403
    code = "permission_denied"


class QueueFull(ProfileError):
    status = 429
    code = "queue_full"
    retry_after = 5  # a turn takes seconds: the queue moves by then
