"""What the chat services share: the worker's id and the limits of what clients send."""

from __future__ import annotations

import os
import socket
import uuid

WORKER_ID = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
MAX_PROMPT_CHARS = 16_000
MAX_IDEMPOTENCY_KEY = 128
MAX_FEEDBACK_COMMENT_CHARS = 2_000
