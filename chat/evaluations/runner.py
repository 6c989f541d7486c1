"""Runs evaluations in the worker processes, beside people's turns and never in their way.

Each worker's runner takes the runs no worker holds (queued, or running on a lease that expired because
its worker stopped: resumed from the first case without a result), and runs their cases as real turns,
each in a conversation of its own owned by the run's author and shown in no list, pinned to the run's
version, through the one pipeline (`chat.turns.turn_enqueue`, `await_turn`). At most
`CHAT_EVAL_CONCURRENCY` case turns run at once per worker, whatever the number of runs, so evaluations
never take more than that from the turns of people. Each case's result is stored as it is scored (the
run's progress), and the lease is renewed while the run goes on.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from typing import Any

from django.conf import settings
from django.db import DatabaseError

from profiles.errors import ProfileError, is_outage
from profiles.mounts import get_mount

from ..aio import run_db, run_tool
from ..gateway.selectors import turn_result
from ..models import EvaluationRun, Turn
from ..services import MAX_PROMPT_CHARS, conversation_create
from ..turns import await_turn, dispatcher, turn_enqueue
from . import selectors, services
from .scorers import judge_prompt, judge_verdict, score

log = logging.getLogger(__name__)
POLL_SECONDS = 5.0


class EvaluationRunner:
    def __init__(self) -> None:
        self.loop: asyncio.AbstractEventLoop | None = None
        self.tasks: set[asyncio.Task[Any]] = set()
        self.running: set[int] = set()
        self._wake: asyncio.Event | None = None
        self._slots: tuple[asyncio.AbstractEventLoop, asyncio.Semaphore] | None = None

    @property
    def slots(self) -> asyncio.Semaphore:
        """`CHAT_EVAL_CONCURRENCY` case turns at once on this loop (the server's; a test's own)."""
        loop = asyncio.get_running_loop()
        if self._slots is None or self._slots[0] is not loop:
            self._slots = (loop, asyncio.Semaphore(settings.CHAT_EVAL_CONCURRENCY))
        return self._slots[1]

    def bind(self, loop: asyncio.AbstractEventLoop) -> None:
        """Start watching for runs on the server's loop (at its first request: daphne has no lifespan); a
        loop that ended (a test's) is replaced by the next one."""
        if self.loop is None or self.loop.is_closed():
            self.loop = loop
            self._wake = asyncio.Event()
            self._keep(loop.create_task(self._watch(), name="evaluation-runner"))

    def poke(self) -> None:
        """A run was queued: look now (from any thread)."""
        if self.loop is not None and self._wake is not None and not self.loop.is_closed():
            self.loop.call_soon_threadsafe(self._wake.set)

    def _keep(self, task: asyncio.Task[Any]) -> None:
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    async def _watch(self) -> None:
        assert self._wake is not None
        while True:
            try:
                for run_id in await run_db(selectors.runs_due):
                    # At most as many runs as case slots per worker: the others stay for other workers.
                    if run_id not in self.running and len(self.running) < settings.CHAT_EVAL_CONCURRENCY:
                        self._keep(asyncio.get_running_loop().create_task(self.execute(run_id)))
            except DatabaseError as exc:  # an outage: look again later
                log.warning("evaluation runner: runs not read (%s)", exc)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), POLL_SECONDS)
            self._wake.clear()

    async def execute(self, run_id: int) -> None:
        """Claim the run and score every case it has no result for; then finish it. An outage pauses it (its
        lease expires, and a worker resumes it when the database is back); a lost lease stops this worker's
        part; anything else fails the case it happened in, never the run's end."""
        if run_id in self.running:
            return
        self.running.add(run_id)
        try:
            run = await run_db(services.evaluation_claim, run_id=run_id)
            if run is None:
                return
            heartbeat = asyncio.get_running_loop().create_task(self._renew(run_id, asyncio.current_task()))
            try:
                error = "" if run.created_by is not None else "the run's author no longer exists"
                if not error:
                    pending = [i for i, result in enumerate(run.results) if result is None]
                    outcomes = await asyncio.gather(*(self._case(run, i) for i in pending), return_exceptions=True)
                    paused = next((o for o in outcomes if isinstance(o, BaseException)), None)
                    if paused is not None:
                        raise paused
            finally:
                heartbeat.cancel()
                await asyncio.gather(heartbeat, return_exceptions=True)
            await run_db(services.evaluation_finish, run_id=run_id, error=error)
        except Exception as exc:
            if not is_outage(exc):
                raise
            log.warning("evaluation run %s paused by an outage: %s", run_id, type(exc).__name__)
        finally:
            self.running.discard(run_id)

    async def _renew(self, run_id: int, owner: asyncio.Task[Any] | None) -> None:
        """Renew the lease a third of it at a time; when another worker took the run, stop this one."""
        while True:
            await asyncio.sleep(services.LEASE_MS / 3000)
            try:
                kept = await run_db(services.evaluation_renew, run_id=run_id)
            except Exception as exc:
                if not is_outage(exc):
                    raise
                continue
            if not kept and owner is not None:
                owner.cancel()
                return

    async def _case(self, run: EvaluationRun, index: int) -> None:
        case = run.cases[index]
        async with self.slots:
            started = time.monotonic()
            try:
                turn, problem = await self._turn(run, f"{run.profile}@{run.version}", case["input"], index)
            except Exception as exc:
                if is_outage(exc):
                    raise  # the run pauses; the case runs again when it resumes
                log.exception("evaluation run %s: case %s could not run", run.pk, index + 1)
                turn, problem = None, f"could not run: {type(exc).__name__}"
            latency_ms = int((time.monotonic() - started) * 1000)
            reasons = [problem] if problem else []
            output = turn.text if turn is not None else ""
            if turn is not None and not problem:
                if turn.fingerprint != run.fingerprint:
                    reasons.append(
                        f"ran on another runtime ({turn.fingerprint}): its tools or the server's settings changed"
                    )
                try:  # a dataset's own patterns: off the event loop
                    reasons += await run_tool(score, case.get("expect") or {}, output)
                except Exception as exc:
                    reasons.append(f"could not be scored: {type(exc).__name__}: {str(exc)[:200]}")
                if case.get("judge"):
                    reasons += await self._judge(run, case, output, index)
        usage = (turn.usage if turn is not None else None) or {}
        result = {
            "input": case["input"],
            "output": output,
            "passed": not reasons,
            "reasons": reasons,
            "latency_ms": latency_ms,
            "tokens": usage.get("total_tokens"),
            "cost_usd": usage.get("cost_usd"),
            "turn_id": str(turn.pk) if turn is not None else None,
        }
        await run_db(services.evaluation_record_case, run_id=run.pk, index=index, result=result)

    async def _judge(self, run: EvaluationRun, case: dict[str, Any], output: str, index: int) -> list[str]:
        judge = case["judge"]
        asked = judge_prompt(judge["criteria"], case["input"], output, limit=MAX_PROMPT_CHARS)
        verdict, problem = await self._turn(run, judge["profile"], asked, index)
        if problem or verdict is None:
            return [f"the judge could not answer: {problem}"]
        passed, reason = judge_verdict(verdict.text)
        return [] if passed else [f"the judge failed it: {reason}"]

    async def _turn(self, run: EvaluationRun, ref: str, prompt: str, index: int) -> tuple[Turn | None, str]:
        """A turn of a new conversation of the run on `ref`: (the finished turn, "") or (turn or None, why not)."""
        try:
            conversation = await run_db(
                conversation_create,
                owner=run.created_by,
                mount=get_mount(run.mount),
                registry=run.registry,
                profile=ref,
                title=f"evaluation {run.pk}, case {index + 1}",
                purpose="evaluation",
            )
            submitted = await turn_enqueue(conversation=conversation, user=run.created_by, prompt=prompt)
        except ProfileError as exc:
            return None, f"{exc.code}: {exc.message}"
        found = await await_turn(
            conv_id=conversation.pk,
            turn_id=submitted.turn.pk,
            timeout=settings.CHAT_ENGINE_TIMEOUT_SECONDS * 2,
            read=turn_result,
        )
        if found is None:  # it ends now: its slot goes to the next case
            await dispatcher.request_cancel(conversation.pk)
            return None, "the turn did not finish in time (cancelled)"
        turn = found.turn
        if turn.status != Turn.Status.COMPLETED:
            error = turn.error if isinstance(turn.error, dict) else {}
            return turn, f"the turn {turn.status}: {error.get('code', '')} {error.get('message', '')}".strip()
        return turn, ""


runner = EvaluationRunner()
