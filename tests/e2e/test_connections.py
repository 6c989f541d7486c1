"""Bounded connections on PostgreSQL: each worker's psycopg pool (DB_POOL_MAX_SIZE, sized from its
thread pools) keeps four workers under PostgreSQL's default max_connections at full load, and a
database that has no connection left answers 503 with Retry-After, never 500.

Each test starts a PostgreSQL of its own (tests/e2e/own_servers.py) and real daphne workers on it.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterator

import httpx2 as httpx
import pytest

from .own_servers import OwnPostgres, migrate_database, run_manage
from .server import LiveServer

pytestmark = [pytest.mark.scaleout, pytest.mark.e2e]

TOKEN = "0123456789abcdef0123456789abcdef01234567"
MAKE_USER = (
    "from django.contrib.auth import get_user_model; from rest_framework.authtoken.models import Token; "
    f"u = get_user_model().objects.create_user('load', password='x'); Token.objects.create(user=u, key='{TOKEN}')"
)


@contextlib.contextmanager
def workers(pg: OwnPostgres, count: int, **env: str) -> Iterator[list[LiveServer]]:
    servers = [LiveServer(env={"DATABASE_URL": pg.url, "REDIS_URL": "", **env}) for _ in range(count)]
    try:
        for server in servers:
            server.start()
        yield servers
    finally:
        for server in servers:
            server.stop()


def prepared(pg: OwnPostgres) -> None:
    migrate_database(pg.url)
    run_manage(pg.url, "seed_demo")
    run_manage(pg.url, "shell", "-c", MAKE_USER)


async def load(servers: list[LiveServer], *, requests: int, concurrency: int) -> list[httpx.Response]:
    """`requests` GETs of the profile list spread over the workers, `concurrency` at a time."""
    gate = asyncio.Semaphore(concurrency)
    headers = {"Authorization": f"Token {TOKEN}"}
    async with httpx.AsyncClient(timeout=60, limits=httpx.Limits(max_connections=concurrency)) as client:

        async def one(index: int) -> httpx.Response:
            async with gate:
                server = servers[index % len(servers)]
                return await client.get(f"{server.url}/api/chat/profiles", headers=headers)

        return await asyncio.gather(*(one(i) for i in range(requests)))


def server_connections(pg: OwnPostgres) -> int:
    with pg.connect() as conn:
        return conn.execute("SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'client backend'").fetchone()[0]


async def test_four_workers_at_full_load_stay_within_the_default_max_connections():
    with OwnPostgres(max_connections=100) as pg:
        await asyncio.to_thread(prepared, pg)
        with workers(pg, 4) as servers:
            answers = await load(servers, requests=300, concurrency=150)
            peak = await asyncio.to_thread(server_connections, pg)
    statuses = sorted({response.status_code for response in answers})
    assert statuses == [200], statuses
    assert peak <= 4 * 20 + 1  # the pools' bound (+ this probe)


async def test_a_database_with_no_connection_left_answers_503_with_retry_after_never_500():
    """Other clients hold all of max_connections but one (or pools together exceed it: a
    misconfiguration): the pool that got the last connection keeps it and serves, and requests that
    get none within DB_POOL_TIMEOUT are 503 with Retry-After."""
    with OwnPostgres(max_connections=5) as pg:
        await asyncio.to_thread(prepared, pg)
        with workers(pg, 4, DB_POOL_MAX_SIZE="4", DB_POOL_TIMEOUT="1") as servers:
            # Held from before the first request to after the last: at most one worker's pool gets a
            # connection, so at least three workers have none (without them, whether every pool got
            # one of the five depended on the order the pools connected in).
            others = [await asyncio.to_thread(pg.connect) for _ in range(pg.max_connections - 1)]
            try:
                answers = await load(servers, requests=120, concurrency=60)
            finally:
                for conn in others:
                    conn.close()
    statuses = {response.status_code for response in answers}
    assert 500 not in statuses
    assert statuses == {200, 503}, statuses
    refused = [response for response in answers if response.status_code == 503]
    assert len(refused) >= 90, len(refused)  # the three workers without a connection refuse all theirs
    assert all(r.headers.get("Retry-After") and r.json()["error"]["code"] == "unavailable" for r in refused)
