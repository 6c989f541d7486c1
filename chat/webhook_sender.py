"""Each worker's webhook sender: a task on the server's loop that sends the due deliveries of
`profiles.webhooks`' outbox every WEBHOOK_POLL_SECONDS, one shared HTTP client, database work on the
chat pools. Started with the server loop (its first request); stopped deliveries are due again."""

from __future__ import annotations

import asyncio
import contextvars
import logging
from typing import Any

import httpx2
from django.conf import settings

from profiles import webhooks
from profiles.errors import is_outage
from profiles.timestamps import now_ms

from .aio import run_db

log = logging.getLogger(__name__)


CONCURRENT_SENDS = 8  # a slow receiver holds one of these, not the others' deliveries


async def deliver_due(client: Any) -> int:
    """Send what is due now (one batch, at most CONCURRENT_SENDS at a time); returns how many were tried."""
    claimed = await run_db(webhooks.claim_due, now_ms())
    slots = asyncio.Semaphore(CONCURRENT_SENDS)

    async def one(delivery_id: int, url: str, secret: str, body: dict[str, Any], attempts: int) -> None:
        async with slots:
            status_code, error = await webhooks.send(client, url, secret, body)
            await run_db(webhooks.record_attempt, delivery_id, attempts, status_code=status_code, error=error)

    await asyncio.gather(*(one(*item) for item in claimed))
    return len(claimed)


class WebhookSender:
    def __init__(self) -> None:
        self.loop: asyncio.AbstractEventLoop | None = None
        self.task: asyncio.Task | None = None

    def bind(self, loop: asyncio.AbstractEventLoop) -> None:
        if self.loop is not loop:
            self.loop = loop
            self.task = loop.create_task(self._forever(), context=contextvars.Context())

    async def _forever(self) -> None:
        client = httpx2.AsyncClient(timeout=webhooks.SEND_TIMEOUT_SECONDS, follow_redirects=False)
        try:
            while True:
                try:
                    sent = await deliver_due(client)
                except asyncio.CancelledError:
                    raise
                except Exception as exc:  # the database away, or a bug: the next round tries again
                    if not is_outage(exc):
                        log.exception("sending webhooks failed")
                    sent = 0
                if sent < webhooks.BATCH:
                    await asyncio.sleep(settings.WEBHOOK_POLL_SECONDS)
        finally:
            await client.aclose()


sender = WebhookSender()
