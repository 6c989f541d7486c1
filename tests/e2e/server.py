"""A real ASGI server (daphne) in a subprocess, sharing the test database with the test process."""

from __future__ import annotations

import contextlib
import os
import socket
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import closing
from pathlib import Path

from django.db import connection

ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with closing(socket.socket(socket.AF_INET, socket.SOCK_STREAM)) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_database_url() -> str:
    """The URL of the database pytest-django created, for the server process."""
    s = connection.settings_dict
    if s["ENGINE"].endswith("sqlite3"):
        return f"sqlite:///{s['NAME']}"
    auth = s["USER"] + (f":{s['PASSWORD']}" if s.get("PASSWORD") else "")
    return f"postgres://{auth}@{s['HOST'] or '127.0.0.1'}:{s['PORT'] or 5432}/{s['NAME']}"


def database_copy(directory: Path) -> str:
    """The URL of a copy of the (SQLite) test database, as committed now, for servers that must be the
    only workers on their database: the session's shared server sweeps expired leases too, and with
    in-memory channel layers the frames of a turn it took over would never reach another server's sockets."""
    s = connection.settings_dict
    if not s["ENGINE"].endswith("sqlite3"):
        raise RuntimeError("database_copy is for the SQLite stage (the PostgreSQL stage shares Redis)")
    copy = directory / "copy.sqlite3"
    with closing(sqlite3.connect(s["NAME"])) as source, closing(sqlite3.connect(copy)) as target:
        source.backup(target)
    return f"sqlite:///{copy}"


class LiveServer:
    started: list[LiveServer] = []  # every server started in this session, for the logs of a failed test

    def __init__(self, *, env: dict[str, str] | None = None, port: int | None = None) -> None:
        self.port = port or free_port()
        self.host = "127.0.0.1"
        self.url = f"http://{self.host}:{self.port}"
        self.ws_url = f"ws://{self.host}:{self.port}"
        self.log_path = ROOT / "tests" / "e2e" / "artifacts" / f"daphne-{self.port}.log"
        self.env = {
            **os.environ,
            "DATABASE_URL": test_database_url(),
            "DJANGO_SETTINGS_MODULE": "config.settings",
            "ALLOWED_HOSTS": "127.0.0.1,localhost",
            "CHAT_OFFLINE_DELAY_SECONDS": "0.01",
            # Tests set prices and budgets from outside the server process: it reads them at every turn.
            "CHAT_PRICE_CACHE_SECONDS": "0",
            **(env or {}),
        }
        self.process: subprocess.Popen | None = None

    def start(self, timeout: float = 30.0) -> LiveServer:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        self._log = open(self.log_path, "wb")  # noqa: SIM115 - closed in stop()
        daphne = Path(sys.executable).with_name("daphne")
        LiveServer.started.append(self)
        self.process = subprocess.Popen(
            [str(daphne), "-b", self.host, "-p", str(self.port), "config.asgi:application"],
            cwd=ROOT,
            env=self.env,
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"daphne exited early; see {self.log_path}:\n{self.log_path.read_text()[-3000:]}")
            try:
                with socket.create_connection((self.host, self.port), timeout=0.5):
                    return self
            except OSError:
                time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"daphne did not listen on {self.port} within {timeout}s")

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        if getattr(self, "_log", None):
            self._log.close()

    def log_tail(self, chars: int = 4000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-chars:]
        except OSError as exc:
            return f"(no log: {exc})"

    def kill(self) -> None:
        """SIGKILL: a worker dying mid-turn."""
        if self.process and self.process.poll() is None:
            self.process.kill()
            self.process.wait()


@contextlib.contextmanager
def worker_pair(env: dict[str, str]) -> Iterator[tuple[LiveServer, LiveServer]]:
    """Two daphne workers with `env`, both stopped at the end (also when the second fails to start)."""
    first = LiveServer(env=env).start()
    try:
        second = LiveServer(env=env).start()
    except BaseException:
        first.stop()
        raise
    try:
        yield first, second
    finally:
        first.stop()
        second.stop()
