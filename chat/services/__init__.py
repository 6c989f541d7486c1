"""Conversation and turn writes (reads are in `chat.selectors`). Synchronous (ORM); async callers
run them on the database pool (`chat.aio.run_db`).

One turn runs at a time per conversation on any worker: a worker claims it with a conditional
UPDATE of `Conversation.active_turn` (works the same on SQLite and PostgreSQL).

The services live in `conversations`, `submission` (a turn queued, and frames stored), `running` (its claim,
checkpoints, finish and interruptions) and `feedback`; callers import them from here.
"""

from profiles.timestamps import now_ms

from .common import MAX_FEEDBACK_COMMENT_CHARS, MAX_IDEMPOTENCY_KEY, MAX_PROMPT_CHARS, WORKER_ID
from .conversations import (
    Opened,
    conversation_build,
    conversation_create,
    conversation_delete,
    conversation_open,
    conversation_rename,
    conversation_select_profile,
    conversation_update,
)
from .events import event_rows, events_store
from .feedback import rollout_judge, turn_feedback_delete, turn_feedback_set
from .running import (
    INTERRUPTED_ERROR,
    LEASE_EXPIRED_ERROR,
    RECORD_FIELDS,
    Checkpoint,
    Finished,
    storage_unavailable_error,
    turn_finish,
    turn_start,
    turns_checkpoint,
    turns_interrupt_expired,
    turns_mark_interrupted,
)
from .submission import Submitted, turn_submit

__all__ = [
    "INTERRUPTED_ERROR",
    "LEASE_EXPIRED_ERROR",
    "MAX_FEEDBACK_COMMENT_CHARS",
    "MAX_IDEMPOTENCY_KEY",
    "MAX_PROMPT_CHARS",
    "RECORD_FIELDS",
    "WORKER_ID",
    "Checkpoint",
    "Finished",
    "Opened",
    "Submitted",
    "conversation_build",
    "conversation_create",
    "conversation_delete",
    "conversation_open",
    "conversation_rename",
    "conversation_select_profile",
    "conversation_update",
    "event_rows",
    "events_store",
    "now_ms",
    "rollout_judge",
    "storage_unavailable_error",
    "turn_feedback_delete",
    "turn_feedback_set",
    "turn_finish",
    "turn_start",
    "turn_submit",
    "turns_checkpoint",
    "turns_interrupt_expired",
    "turns_mark_interrupted",
]
