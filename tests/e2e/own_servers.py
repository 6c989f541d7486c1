"""A PostgreSQL server and a Redis server of the test's OWN, for outage tests.

Each server runs in a subprocess on a free 127.0.0.1 port with its files in a fresh temporary
directory, and can be stopped (the port then refuses connections), paused (the port accepts but
nothing answers: a hung server), restarted on the SAME port (PostgreSQL keeps its data, Redis starts
empty), and closed (stopped and its directory removed). Every wait is bounded; every server is closed by its context manager,
by the `own_postgres` / `own_redis` fixtures, at interpreter exit, and (signal to the child when the
test process dies, when started from the main thread) even if the test process is killed.

PostgreSQL refuses to run as root: when the tests run as root (CI does), `initdb` and the server run
as the `postgres` system user and the temporary directory is handed to that user.

Plain Python on purpose (no Django import): usable from any fixture or script.

    with OwnPostgres() as pg, OwnRedis() as redis:
        migrate_database(pg.url)
        server = LiveServer(env={"DATABASE_URL": pg.url, "REDIS_URL": redis.url}).start()
        pg.stop()      # outage: new and open connections fail at once
        pg.start()     # back, same port, same data
"""

from __future__ import annotations

import atexit
import contextlib
import os
import pwd
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator, Mapping
from contextlib import closing
from pathlib import Path
from typing import Any, Self

import psycopg
import redis
from psycopg import sql
from redis.backoff import NoBackoff
from redis.retry import Retry

ROOT = Path(__file__).resolve().parents[2]
HOST = "127.0.0.1"
REDIS_SERVER = "/usr/bin/redis-server"

START_TIMEOUT = 30.0
STOP_TIMEOUT = 15.0
KILL_TIMEOUT = 5.0
MIGRATE_TIMEOUT = 300.0

_LIVE: set[_OwnServer] = set()  # closed at interpreter exit if a test or fixture did not


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now (the OS picks it)."""
    with closing(socket.socket(socket.AF_INET, socket.SOCK_STREAM)) as sock:
        sock.bind((HOST, 0))
        return sock.getsockname()[1]


def port_is_open(port: int, host: str = HOST, timeout: float = 0.5) -> bool:
    """True if something accepts TCP connections on the port (a paused server still does)."""
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def migrate_database(url: str, *, timeout: float = MIGRATE_TIMEOUT, env: Mapping[str, str] | None = None) -> str:
    """`python manage.py migrate --noinput` against the database at `url`, in a subprocess of this
    interpreter in the project root. Returns the output; raises RuntimeError with it on failure."""
    return run_manage(url, "migrate", "--noinput", timeout=timeout, env=env)


def run_manage(url: str, *args: str, timeout: float = MIGRATE_TIMEOUT, env: Mapping[str, str] | None = None) -> str:
    """`python manage.py <args>` with DATABASE_URL=url (the ORM of the test process is bound to the
    pytest-django test database, not to an own server: seed an own database this way, e.g.
    `run_manage(pg.url, "inventory_seed")` or `run_manage(pg.url, "shell", "-c", code)`).
    Returns the output; raises RuntimeError with it on failure or after `timeout` seconds."""
    command = [sys.executable, "manage.py", *args]
    environment = {**os.environ, "DJANGO_SETTINGS_MODULE": "config.settings", "DATABASE_URL": url, **(env or {})}
    what = " ".join(args[:2])
    try:
        done = subprocess.run(
            command,
            cwd=ROOT,
            env=environment,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            timeout=timeout,
            check=False,
        )
    except subprocess.TimeoutExpired as exc:  # run() has killed it
        output = _text(exc.output)
        raise RuntimeError(
            f"manage.py {what} did not finish within {timeout}s against {url}:\n{output[-5000:]}"
        ) from None
    output = _text(done.stdout)
    if done.returncode != 0:
        raise RuntimeError(f"manage.py {what} failed (exit {done.returncode}) against {url}:\n{output[-5000:]}")
    return output


# --------------------------------------------------------------------------- common process handling


class _OwnServer:
    """A server subprocess in its own session with a log file in a temporary directory."""

    name = "server"

    def __init__(self, port: int | None) -> None:
        self.host = HOST
        self._fixed_port = port is not None
        self.port = port or free_port()
        self.root: Path | None = None
        self.log_path: Path | None = None
        self.process: subprocess.Popen[bytes] | None = None
        self._log: Any = None
        self._paused: list[int] = []
        self._started_once = False

    # ----- lifecycle (subclasses provide _prepare, _command, _wait_ready, _stop_signal)

    def start(self, timeout: float = START_TIMEOUT) -> Self:
        """Start the server and wait (at most `timeout` s) until it answers. Returns self."""
        if self.running:
            return self
        _LIVE.add(self)
        if self.root is None:
            self.root = Path(tempfile.mkdtemp(prefix=f"own-{self.name}-"))
            self.log_path = self.root / f"{self.name}.log"
            try:
                self._prepare()
            except BaseException:
                shutil.rmtree(self.root, ignore_errors=True)
                self.root = None
                raise
        attempts = 1 if self._fixed_port or self._started_once else 3
        for attempt in range(attempts):
            try:
                self._spawn()
                self._wait_ready(timeout)
                break
            except _PortTaken:
                # free_port() is only free when asked: another process took it meanwhile. Only on the
                # first start (nobody has the URL yet) may the server move to another port.
                self._kill()
                if attempt == attempts - 1:
                    raise RuntimeError(f"{self.name}: port {self.port} in use\n{self.log_tail()}") from None
                self.port = free_port()
            except BaseException:
                self._kill()
                raise
        self._started_once = True
        self._after_start()
        return self

    def stop(self, *, crash: bool = False, timeout: float = STOP_TIMEOUT) -> None:
        """Stop the server: a clean shutdown, or with `crash=True` an abrupt one (PostgreSQL:
        immediate shutdown, crash recovery at the next start; Redis: SIGKILL). Open connections are
        cut. Returns once the process has exited and the port refuses connections (bounded)."""
        process = self.process
        if process is None:
            return
        if process.poll() is None:
            self.resume()
            process.send_signal(self._stop_signal(crash))
            try:
                process.wait(timeout)
            except subprocess.TimeoutExpired:
                self._kill()
        self._kill()  # reaps, kills any straggler child, closes the log
        deadline = time.monotonic() + KILL_TIMEOUT
        while port_is_open(self.port, timeout=0.2):
            if time.monotonic() > deadline:
                raise RuntimeError(f"{self.name}: port {self.port} still accepts connections after the stop")
            time.sleep(0.05)

    def restart(self, timeout: float = START_TIMEOUT) -> Self:
        """Stop (if running) and start again on the same port with the same data. Returns self."""
        self.stop()
        return self.start(timeout)

    def close(self) -> None:
        """Stop the server and remove its directory. Safe to call twice, and after a failed start."""
        try:
            self.stop(timeout=KILL_TIMEOUT)
        finally:
            self._kill()
            if self.root is not None:
                shutil.rmtree(self.root, ignore_errors=True)
                self.root = None
            _LIVE.discard(self)

    def __enter__(self) -> Self:
        try:
            return self.start()
        except BaseException:
            self.close()
            raise

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    # ----- hang (not refuse)

    def pause(self) -> None:
        """Freeze the server (SIGSTOP to it and its children): connections are accepted by the
        kernel but nothing answers, as with a hung server or a network partition. `resume()` ends it."""
        if not self.running or self._paused:
            return
        assert self.process is not None
        pids = [self.process.pid]
        os.kill(self.process.pid, signal.SIGSTOP)  # first: no new children while we look
        pids += _descendants(self.process.pid)
        for pid in pids[1:]:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGSTOP)
        self._paused = pids

    def resume(self) -> None:
        """Undo `pause()`."""
        for pid in reversed(self._paused):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGCONT)
        self._paused = []

    @contextlib.contextmanager
    def paused(self) -> Iterator[None]:
        """`with server.paused(): ...` - hung for the block, answering again after it."""
        self.pause()
        try:
            yield
        finally:
            self.resume()

    # ----- diagnostics

    def log_tail(self, chars: int = 3000) -> str:
        if self.log_path is None or not self.log_path.exists():
            return "(no log)"
        return f"--- {self.log_path} (tail) ---\n" + self.log_path.read_text(errors="replace")[-chars:]

    def __repr__(self) -> str:
        state = "paused" if self._paused else "running" if self.running else "stopped"
        return f"<{type(self).__name__} {self.host}:{self.port} {state}>"

    # ----- internals

    def _prepare(self) -> None:
        """Once, in the fresh directory, before the first start."""

    def _after_start(self) -> None:
        """After every successful start (must be idempotent)."""

    def _command(self) -> list[str]:
        raise NotImplementedError

    def _popen_kwargs(self) -> dict[str, Any]:
        return {}

    def _stop_signal(self, crash: bool) -> int:
        raise NotImplementedError

    def _wait_ready(self, timeout: float) -> None:
        raise NotImplementedError

    def _spawn(self) -> None:
        assert self.root is not None and self.log_path is not None
        self._log = open(self.log_path, "ab")  # noqa: SIM115 - closed in _kill()
        self._log.write(f"===== {time.strftime('%H:%M:%S')} start on port {self.port}\n".encode())
        self._log.flush()
        kwargs = self._popen_kwargs()
        self.process = subprocess.Popen(
            _with_parent_death_signal(self._command(), self._stop_signal(crash=True)),
            cwd=self.root,
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # a Ctrl-C on the terminal goes to pytest, which then closes us
            **kwargs,
        )

    def _check_alive(self) -> None:
        assert self.process is not None
        if self.process.poll() is not None:
            tail = self.log_tail()
            if "Address already in use" in tail.rsplit("===== ", 1)[-1]:
                raise _PortTaken
            raise RuntimeError(f"{self.name} exited early with code {self.process.returncode}\n{tail}")

    def _kill(self) -> None:
        """The hard end: SIGKILL to the process and its children, reaped; the log closed."""
        process = self.process
        if process is not None:
            if process.poll() is None:
                children = _descendants(process.pid)
                self.resume()
                with contextlib.suppress(ProcessLookupError):
                    process.kill()
                with contextlib.suppress(subprocess.TimeoutExpired):
                    process.wait(KILL_TIMEOUT)
                for pid in children:
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(pid, signal.SIGKILL)
            self._paused = []
            self.process = None
        if self._log is not None:
            self._log.close()
            self._log = None


class _PortTaken(Exception):
    pass


# --------------------------------------------------------------------------- PostgreSQL


def postgres_bin_dir() -> Path:
    """The bin directory of the highest PostgreSQL version installed (Debian layout), else PATH."""
    candidates = []
    for path in Path("/usr/lib/postgresql").glob("*/bin"):
        if (path / "initdb").exists() and (path / "postgres").exists():
            with contextlib.suppress(ValueError):
                candidates.append((tuple(int(part) for part in path.parent.name.split(".")), path))
    if candidates:
        return max(candidates)[1]
    initdb = shutil.which("initdb")
    if initdb:
        return Path(initdb).parent
    raise RuntimeError("no PostgreSQL server binaries (initdb, postgres) in /usr/lib/postgresql/*/bin or on PATH")


class OwnPostgres(_OwnServer):
    """A throwaway PostgreSQL cluster: trust auth, user `postgres`, 127.0.0.1 only, a unix socket
    in its directory, fsync off. `dbname` (created at the first start) is the database of `url`.
    `settings` adds server settings (`{"statement_timeout": "5s"}`), passed as `-c name=value`."""

    name = "postgres"

    def __init__(
        self,
        *,
        port: int | None = None,
        dbname: str = "app",
        max_connections: int = 100,
        shared_buffers: str = "16MB",
        settings: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(port)
        self.user = "postgres"
        self.dbname = dbname
        self.max_connections = max_connections
        self.shared_buffers = shared_buffers
        self.settings = dict(settings or {})
        self.bin_dir = postgres_bin_dir()
        self.data_dir: Path | None = None

    @property
    def url(self) -> str:
        return self.url_for(self.dbname)

    def url_for(self, dbname: str) -> str:
        return f"postgres://{self.user}@{self.host}:{self.port}/{dbname}"

    def connect(self, dbname: str | None = None, **kwargs: Any) -> psycopg.Connection[Any]:
        """A psycopg connection (autocommit, 2 s connect timeout unless given)."""
        kwargs.setdefault("autocommit", True)
        kwargs.setdefault("connect_timeout", 2)
        return psycopg.connect(self.url_for(dbname or self.dbname), **kwargs)

    def create_database(self, name: str) -> str:
        """CREATE DATABASE `name`; returns its URL."""
        with self.connect("postgres") as conn:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        return self.url_for(name)

    def _prepare(self) -> None:
        assert self.root is not None
        ids = _postgres_ids()
        if ids:
            os.chown(self.root, *ids)
        self.root.chmod(0o700)
        self.data_dir = self.root / "data"
        command = [
            str(self.bin_dir / "initdb"),
            *("-D", str(self.data_dir), "-U", self.user, "-A", "trust", "-E", "UTF8", "--no-locale", "--no-sync"),
        ]
        try:
            done = subprocess.run(
                command,
                cwd=self.root,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                timeout=60,
                check=False,
                **self._popen_kwargs(),
            )
        except subprocess.TimeoutExpired as exc:
            raise RuntimeError(f"initdb did not finish within 60s:\n{_text(exc.output)}") from None
        if done.returncode != 0:
            raise RuntimeError(f"initdb failed (exit {done.returncode}):\n{_text(done.stdout)}")

    def _command(self) -> list[str]:
        settings = {
            "port": str(self.port),
            "listen_addresses": self.host,
            "unix_socket_directories": str(self.root),
            "max_connections": str(self.max_connections),
            "shared_buffers": self.shared_buffers,
            "fsync": "off",
            "synchronous_commit": "off",
            "full_page_writes": "off",
            "logging_collector": "off",
            **self.settings,
        }
        options = [arg for key, value in settings.items() for arg in ("-c", f"{key}={value}")]
        return [str(self.bin_dir / "postgres"), "-D", str(self.data_dir), *options]

    def _popen_kwargs(self) -> dict[str, Any]:
        ids = _postgres_ids()
        return {"env": self._env(), **({"user": ids[0], "group": ids[1], "extra_groups": []} if ids else {})}

    def _env(self) -> dict[str, str]:
        return {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "LC_ALL": "C",
            "LANG": "C",
            "HOME": str(self.root),
        }

    def _stop_signal(self, crash: bool) -> int:
        return signal.SIGQUIT if crash else signal.SIGINT  # immediate / fast shutdown

    def _wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while True:
            self._check_alive()
            try:
                with self.connect("postgres") as conn:
                    conn.execute("SELECT 1")
                return
            except psycopg.OperationalError as exc:
                if time.monotonic() > deadline:
                    raise TimeoutError(
                        f"postgres did not accept connections on {self.port} within {timeout}s: {exc}\n"
                        + self.log_tail()
                    ) from None
            time.sleep(0.05)

    def _after_start(self) -> None:
        if self.dbname == "postgres":
            return
        with self.connect("postgres") as conn:
            exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [self.dbname]).fetchone()
        if not exists:
            self.create_database(self.dbname)


def _postgres_ids() -> tuple[int, int] | None:
    """(uid, gid) of the `postgres` user when we are root (PostgreSQL refuses root), else None."""
    if os.geteuid() != 0:
        return None
    try:
        entry = pwd.getpwnam("postgres")
    except KeyError:
        raise RuntimeError("running as root, and there is no `postgres` user to run PostgreSQL as") from None
    return entry.pw_uid, entry.pw_gid


# --------------------------------------------------------------------------- Redis


class OwnRedis(_OwnServer):
    """A throwaway redis-server on 127.0.0.1 without persistence: a restart starts EMPTY."""

    name = "redis"

    def __init__(self, *, port: int | None = None, executable: str = REDIS_SERVER) -> None:
        super().__init__(port)
        self.executable = executable

    @property
    def url(self) -> str:
        return f"redis://{self.host}:{self.port}/0"

    def client(self, **kwargs: Any) -> redis.Redis:
        """A redis-py client that fails fast in an outage: 1 s timeouts and no retries unless given
        (redis-py's default retries three times with backoff: several seconds per failed command)."""
        kwargs.setdefault("socket_connect_timeout", 1.0)
        kwargs.setdefault("socket_timeout", 1.0)
        kwargs.setdefault("retry", Retry(NoBackoff(), 0))
        return redis.Redis(host=self.host, port=self.port, db=0, **kwargs)

    def _command(self) -> list[str]:
        return [
            self.executable,
            *("--port", str(self.port), "--bind", self.host),
            *("--save", "", "--appendonly", "no"),
            *("--dir", str(self.root), "--daemonize", "no", "--logfile", ""),
        ]

    def _stop_signal(self, crash: bool) -> int:
        return signal.SIGKILL if crash else signal.SIGTERM

    def _wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while True:
            self._check_alive()
            client = self.client(socket_connect_timeout=0.5, socket_timeout=0.5)
            try:
                if client.ping():
                    return
            except redis.RedisError as exc:
                if time.monotonic() > deadline:
                    raise TimeoutError(
                        f"redis did not answer PING on {self.port} within {timeout}s: {exc}\n" + self.log_tail()
                    ) from None
            finally:
                client.close()
            time.sleep(0.05)


# --------------------------------------------------------------------------- helpers


def _text(output: bytes | str | None) -> str:
    if output is None:
        return ""
    return output.decode(errors="replace") if isinstance(output, bytes) else output


def _descendants(pid: int) -> list[int]:
    """The pids of the process's children and their children (from /proc; [] elsewhere)."""
    children: dict[int, list[int]] = {}
    with contextlib.suppress(OSError):
        for entry in os.scandir("/proc"):
            if not entry.name.isdigit():
                continue
            try:
                stat = Path(entry.path, "stat").read_text()
            except OSError:
                continue
            ppid = int(stat.rsplit(")", 1)[1].split()[1])  # after "(comm)": state, ppid
            children.setdefault(ppid, []).append(int(entry.name))
    found, todo = [], [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


_SETPRIV = shutil.which("setpriv")


def _with_parent_death_signal(command: list[str], sig: int) -> list[str]:
    """Have the kernel send `sig` to the server if the test process dies without closing it
    (SIGKILL, SIGTERM from a CI timeout). Linux delivers it when the THREAD that started the child
    ends, so only a start from the main thread gets it (a start from a worker thread would die with
    the thread); the other paths (fixtures, atexit) close those."""
    if (
        not _SETPRIV
        or not sys.platform.startswith("linux")
        or threading.current_thread() is not threading.main_thread()
    ):
        return command
    return [_SETPRIV, "--pdeathsig", signal.Signals(sig).name, "--", *command]


@atexit.register
def _close_all() -> None:
    for server in list(_LIVE):
        with contextlib.suppress(Exception):
            server.close()
