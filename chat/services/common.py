"""What the chat services share: the worker's id and the limits of what clients send."""

from __future__ import annotations

import os
import socket
import uuid

from django.db import connection

WORKER_ID = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
MAX_PROMPT_CHARS = 16_000
MAX_IDEMPOTENCY_KEY = 128
MAX_FEEDBACK_COMMENT_CHARS = 2_000


def writers_serialised() -> bool:
    """Whether a write transaction's reads see every row committed before its first statement returned,
    whoever committed it: SQLite's (`BEGIN IMMEDIATE` takes the database's one write lock, and in WAL mode
    a writer reads the newest snapshot), so the reads a write depends on can ride in the same statement as
    its lock or its write. Not PostgreSQL's: a statement that waited for a row lock sees its subqueries'
    rows as of its start (READ COMMITTED), and a transaction committed meanwhile is visible only from the
    next statement."""
    return connection.vendor == "sqlite"
