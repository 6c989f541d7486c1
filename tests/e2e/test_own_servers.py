"""Smoke test of the outage-test infrastructure (tests/e2e/own_servers.py): a PostgreSQL and a Redis
server of the test's own, stopped (connections fail at once), paused (nothing answers) and restarted
on the same port. No Django database and no daphne: a few seconds."""

from __future__ import annotations

import socket
import struct
import time

import psycopg
import pytest
import redis

from .own_servers import OwnPostgres, OwnRedis, port_is_open

pytestmark = [pytest.mark.scaleout]

FAST = 1.5  # seconds: "fails at once", as opposed to hanging until some timeout


def pg_answers(port: int, timeout: float = 0.3) -> bool:
    """Whether a PostgreSQL server answers on the port: sends the SSLRequest every client starts
    with, which a live server answers with one byte at once (a paused one never does)."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.sendall(struct.pack("!ii", 8, 80877103))
        try:
            return len(sock.recv(1)) == 1
        except TimeoutError:
            return False


def test_own_postgres_stops_pauses_and_restarts_with_its_data(own_postgres: OwnPostgres) -> None:
    pg = own_postgres
    port = pg.port
    assert port not in (5432, 6379)
    assert pg.url == f"postgres://postgres@127.0.0.1:{port}/app"
    with psycopg.connect(pg.url, autocommit=True) as conn:
        assert conn.execute("SELECT current_user, current_database()").fetchone() == ("postgres", "app")
        conn.execute("CREATE TABLE kept (value int)")
        conn.execute("INSERT INTO kept VALUES (42)")

    # stop: an open connection is cut, a new one is refused, both at once
    open_conn = pg.connect()
    pg.stop()
    assert not pg.running and not port_is_open(port)
    started = time.monotonic()
    with pytest.raises(psycopg.OperationalError):
        open_conn.execute("SELECT 1")
    with pytest.raises(psycopg.OperationalError, match="refused"):
        psycopg.connect(pg.url, connect_timeout=5)
    assert time.monotonic() - started < FAST
    open_conn.close()

    # back on the same port with the same data
    pg.start()
    assert pg.port == port
    with pg.connect() as conn:
        assert conn.execute("SELECT value FROM kept").fetchall() == [(42,)]

    # restart() of a running server, and a crash (immediate shutdown, recovery at the next start)
    pg.restart()
    pg.stop(crash=True)
    pg.start()
    with pg.connect() as conn:
        assert conn.execute("SELECT value FROM kept").fetchall() == [(42,)]

    # paused: the port accepts, nothing answers; resumed: answers again
    assert pg_answers(port)
    with pg.paused():
        assert port_is_open(port)
        assert not pg_answers(port)
    assert pg_answers(port)
    with pg.connect() as conn:
        assert conn.execute("SELECT 1").fetchone() == (1,)

    assert pg.create_database("second") == f"postgres://postgres@127.0.0.1:{port}/second"
    with psycopg.connect(pg.url_for("second"), autocommit=True) as conn:
        assert conn.execute("SELECT current_database()").fetchone() == ("second",)


def test_own_redis_stops_pauses_and_restarts_empty(own_redis: OwnRedis) -> None:
    server = own_redis
    port = server.port
    assert port not in (5432, 6379)
    assert server.url == f"redis://127.0.0.1:{port}/0"
    client = redis.Redis.from_url(server.url, socket_connect_timeout=1, socket_timeout=1)
    assert client.ping()
    client.set("gone", "after the restart")

    # stop: refused at once (the helper client does not retry; redis-py's default would, for seconds)
    server.stop()
    assert not server.running and not port_is_open(port)
    fast_client = server.client()
    started = time.monotonic()
    with pytest.raises(redis.ConnectionError):
        fast_client.ping()
    assert time.monotonic() - started < FAST

    # back on the same port, empty (no persistence)
    server.start()
    assert server.port == port
    assert fast_client.ping()
    assert client.get("gone") is None and client.dbsize() == 0
    server.restart()
    assert client.ping()

    # paused: commands time out instead of being refused
    with server.paused():
        assert port_is_open(port)
        with pytest.raises(redis.TimeoutError):
            server.client(socket_timeout=0.3).ping()
    assert fast_client.ping()
    client.close()
    fast_client.close()


def test_close_is_idempotent_and_cleans_up() -> None:
    never_started = OwnRedis()
    never_started.close()
    never_started.close()

    with OwnPostgres(dbname="postgres") as pg, OwnRedis() as server:
        root_dirs = [pg.root, server.root]
        processes = [pg.process, server.process]
        assert all(d is not None and d.exists() for d in root_dirs)
        server.pause()  # closing a paused server must not hang
    for own in (pg, server):
        assert not own.running and not port_is_open(own.port)
        own.close()  # again: a no-op
    assert all(p is not None and p.poll() is not None for p in processes)
    assert not any(d is not None and d.exists() for d in root_dirs)
