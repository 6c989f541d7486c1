"""The chat app's domain errors, in the one hierarchy of `profiles.errors` (mapped to HTTP by
`profiles.api.errors` and to `error` frames by the consumer)."""

from __future__ import annotations

from profiles.errors import Busy, Forbidden


class ConversationForbidden(Forbidden):
    code = "permission_denied"


class QueueFull(Busy):
    code = "queue_full"
    retry_after = 5  # a turn takes seconds: the queue moves by then
