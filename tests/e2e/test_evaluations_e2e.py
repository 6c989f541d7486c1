"""Evaluation runs in a real worker (#22): a run started over REST is taken by the worker's runner at once,
reports its progress and completes; a run a stopped worker left `running` is resumed by a live worker
when its lease has expired (never stuck)."""

from __future__ import annotations

import asyncio

import pytest

from chat.models import EvaluationRun

from .helpers import ApiUser, http, make_user, poll

pytestmark = pytest.mark.e2e

CASES = [{"input": "what is 6 * 7?", "expect": {"contains": "42"}}, {"input": "hello", "expect": {"contains": "42"}}]


@pytest.fixture
def evaluator(server) -> ApiUser:
    return make_user("evaluator", superuser=True)


async def finished(client, run_id: int) -> dict:
    async def fetch() -> dict:
        return (await client.get(f"/api/chat/evaluations/{run_id}")).json()

    return await poll(fetch, lambda run: run["status"] in ("completed", "failed"), timeout=30)


def test_a_run_started_over_rest_is_taken_by_the_workers_runner(server, evaluator):
    async def scenario() -> dict:
        async with http(server, evaluator) as client:
            made = await client.post("/api/chat/datasets", json={"slug": "math", "cases": CASES})
            assert made.status_code == 201, made.text
            started = await client.post("/api/chat/profiles/analyst/evaluations", json={"dataset": "math"})
            assert started.status_code == 202, started.text
            assert started.json()["status"] == "queued"
            return await finished(client, started.json()["id"])

    run = asyncio.run(scenario())
    assert run["status"] == "completed" and (run["passed"], run["failed"]) == (1, 1)


def test_a_run_left_running_by_a_stopped_worker_is_resumed(server, evaluator):
    async def start() -> int:
        async with http(server, evaluator) as client:
            await client.post("/api/chat/datasets", json={"slug": "math", "cases": CASES})
            started = await client.post("/api/chat/profiles/analyst/evaluations", json={"dataset": "math"})
            return started.json()["id"]

    async def wait(run_id: int) -> dict:
        async with http(server, evaluator) as client:
            return await finished(client, run_id)

    # What a worker killed mid-run leaves: running, one case scored, its lease expired.
    run_id = asyncio.run(start())
    asyncio.run(wait(run_id))
    done = EvaluationRun.objects.get(pk=run_id).results[0]
    EvaluationRun.objects.filter(pk=run_id).update(
        status="running", worker="killed", lease_until_ms=1, results=[done, None], done=1, passed=1, failed=0
    )

    run = asyncio.run(wait(run_id))
    assert run["status"] == "completed" and run["done"] == 2 and run["cases"][0] == done
    assert EvaluationRun.objects.get(pk=run_id).worker != "killed"
