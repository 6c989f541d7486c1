"""Processes the benchmarks start: daphne servers, throwaway databases, the load client and the
Django-side helpers. Everything listens on / connects to 127.0.0.1 only, and every process started
here is stopped (terminate, then kill) when its context ends."""

from __future__ import annotations

import contextlib
import json
import os
import resource
import select
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import closing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
BENCH = ROOT / "bench"
RESULTS = BENCH / "results"
LOGS = RESULTS / "logs"
_venv_python = ROOT / ".venv" / "bin" / "python"
PYTHON = str(_venv_python if _venv_python.exists() else Path(sys.executable))
DAPHNE = str(Path(PYTHON).with_name("daphne"))
HOST = "127.0.0.1"

POSTGRES_ADMIN_URL = os.environ.get("BENCH_POSTGRES_URL", "postgres://postgres@127.0.0.1:5432/postgres")
REDIS_URL = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/3")

# Settings every bench server gets (the figures' conditions); anything else in the environment
# (CHAT_FRAME_BUDGET, CHAT_DB_THREADS, CONN_MAX_AGE, ...) is passed through unchanged.
FORCED_ENV = {
    "DJANGO_SETTINGS_MODULE": "config.settings",
    "ALLOWED_HOSTS": "127.0.0.1,localhost",
    "CHAT_RATE_LIMIT_PER_MINUTE": "1000000",
    "PYTHONDONTWRITEBYTECODE": "1",
}
_CLEARED = ("DATABASE_URL", "REDIS_URL", "OPENAI_BASE_URL", "OPENAI_API_KEY", "ANTHROPIC_BASE_URL", "ANTHROPIC_API_KEY")


def free_port() -> int:
    with closing(socket.socket(socket.AF_INET, socket.SOCK_STREAM)) as sock:
        sock.bind((HOST, 0))
        return sock.getsockname()[1]


def raise_nofile() -> None:
    """As many file descriptors as the hard limit allows (thousands of sockets); used as preexec_fn too."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = 65536 if hard == resource.RLIM_INFINITY else hard
    if soft < target:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))


def base_env(**extra: str | None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in _CLEARED}
    env.setdefault("LOG_LEVEL", "WARNING")
    env.update(FORCED_ENV)
    for key, value in extra.items():
        if value is None:
            env.pop(key, None)
        else:
            env[key] = value
    return env


def _stop(process: subprocess.Popen, timeout: float = 10.0) -> None:
    if process.poll() is not None:
        return
    process.terminate()
    try:
        process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


# --------------------------------------------------------------------------- daphne


class Daphne:
    """`daphne -b 127.0.0.1 -p PORT <app>` in cwd ROOT, with the given environment."""

    def __init__(self, name: str, env: dict[str, str], app: str = "config.asgi:application") -> None:
        self.name, self.env, self.app = name, env, app
        self.port = free_port()
        self.url = f"http://{HOST}:{self.port}"
        self.ws = f"ws://{HOST}:{self.port}"
        self.origin = self.url
        self.process: subprocess.Popen | None = None
        self.log_path = LOGS / f"daphne-{name}-{self.port}.log"

    def start(self, timeout: float = 40.0) -> Daphne:
        self.launch()
        return self.wait_ready(timeout)

    def launch(self) -> Daphne:
        """Start the process without waiting for it to listen (`wait_ready`): other set-up meanwhile."""
        LOGS.mkdir(parents=True, exist_ok=True)
        self._log = open(self.log_path, "wb")  # noqa: SIM115 - closed in stop()
        extra = os.environ.get("BENCH_DAPHNE_ARGS", "").split()
        self.process = subprocess.Popen(
            [DAPHNE, "-b", HOST, "-p", str(self.port), *extra, self.app],
            cwd=ROOT,
            env=self.env,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            preexec_fn=raise_nofile,
        )
        return self

    def wait_ready(self, timeout: float = 40.0) -> Daphne:
        assert self.process is not None
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"daphne {self.name} exited early:\n{self.log_tail()}")
            try:
                with socket.create_connection((HOST, self.port), timeout=0.5):
                    return self
            except OSError:
                time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"daphne {self.name} did not listen within {timeout}s:\n{self.log_tail()}")

    def cpu_seconds(self) -> float:
        """CPU time (user + system, every thread) the process has used so far, from /proc."""
        assert self.process is not None
        fields = Path(f"/proc/{self.process.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime, stime

    def log_tail(self, chars: int = 3000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-chars:]
        except OSError:
            return ""

    def rss_kb(self) -> int:
        assert self.process is not None
        for line in Path(f"/proc/{self.process.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
        raise RuntimeError("no VmRSS")

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def stop(self) -> None:
        if self.process is not None:
            _stop(self.process)
        if getattr(self, "_log", None):
            self._log.close()


class Upstream:
    """The fake OpenAI-compatible provider (`python bench/fake_llm.py serve`: one asyncio loop) in a
    process of its own; `base_url` ends with /v1. Same `start`/`stop` as Daphne (for `running`)."""

    name = "upstream"

    def __init__(self) -> None:
        self.process: subprocess.Popen | None = None
        self.port = 0

    @property
    def base_url(self) -> str:
        return f"http://{HOST}:{self.port}/v1"

    def start(self, timeout: float = 20.0) -> Upstream:
        self.process = subprocess.Popen(
            [PYTHON, "bench/fake_llm.py", "serve"],
            cwd=ROOT,
            env=base_env(),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            preexec_fn=raise_nofile,
        )
        assert self.process.stdout is not None
        ready, _, _ = select.select([self.process.stdout], [], [], timeout)
        line = self.process.stdout.readline() if ready else ""
        if not line.strip():
            self.stop()
            raise RuntimeError("the fake upstream did not start")
        self.port = int(json.loads(line)["port"])
        return self

    def stop(self) -> None:
        if self.process is not None:
            with contextlib.suppress(OSError):
                if self.process.stdin and not self.process.stdin.closed:
                    self.process.stdin.close()  # it ends on stdin EOF
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.process.wait(timeout=3)
            _stop(self.process, timeout=5)


@contextlib.contextmanager
def running(*servers: Daphne | Upstream) -> Iterator[tuple[Daphne | Upstream, ...]]:
    try:
        for server in servers:
            server.start()
        yield servers
    finally:
        for server in servers:
            server.stop()


# --------------------------------------------------------------------------- helpers in subprocesses


def run_json(args: list[str], *, env: dict[str, str], timeout: float, stdin: str | None = None) -> Any:
    """Run a Python helper; its last stdout line is JSON. Killed after `timeout` seconds."""
    process = subprocess.Popen(
        [PYTHON, *args],
        cwd=ROOT,
        env=env,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=raise_nofile,
    )
    try:
        out, err = process.communicate(stdin, timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        out, err = process.communicate()
        raise RuntimeError(f"{args[0]} timed out after {timeout}s; stderr:\n{err[-3000:]}") from None
    finally:
        _stop(process)
    if process.returncode != 0:
        raise RuntimeError(f"{' '.join(args[:2])} failed ({process.returncode}):\n{err[-4000:]}")
    lines = [line for line in out.splitlines() if line.strip()]
    if not lines:
        raise RuntimeError(f"{args[0]} printed nothing; stderr:\n{err[-3000:]}")
    return json.loads(lines[-1])


def client(spec: dict[str, Any], *, timeout: float) -> dict[str, Any]:
    """The websocket/HTTP load client (bench/client.py) in its own process."""
    return run_json(["bench/client.py"], env=base_env(), timeout=timeout, stdin=json.dumps(spec))


class ClientSession:
    """A long-lived client process (idle sockets): reports a JSON line when ready, ends on stdin EOF."""

    def __init__(self, spec: dict[str, Any]) -> None:
        self.spec = spec
        self.process: subprocess.Popen | None = None

    def __enter__(self) -> ClientSession:
        self.process = subprocess.Popen(
            [PYTHON, "bench/client.py"],
            cwd=ROOT,
            env=base_env(),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            preexec_fn=raise_nofile,
        )
        assert self.process.stdin is not None
        self.process.stdin.write(json.dumps(self.spec) + "\n")
        self.process.stdin.flush()
        return self

    def read(self, timeout: float) -> dict[str, Any]:
        assert self.process is not None and self.process.stdout is not None
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            ready, _, _ = select.select([self.process.stdout], [], [], 0.5)
            if ready:
                line = self.process.stdout.readline()
                if not line:
                    break
                if line.strip():
                    return json.loads(line)
            elif self.process.poll() is not None:
                break
        err = self.process.stderr.read() if self.process.poll() is not None and self.process.stderr else ""
        raise RuntimeError(f"client session gave no report within {timeout}s:\n{err[-3000:]}")

    def finish(self, timeout: float = 60.0) -> dict[str, Any]:
        assert self.process is not None and self.process.stdin is not None
        self.process.stdin.close()
        return self.read(timeout)

    def __exit__(self, *exc: object) -> None:
        if self.process is not None:
            with contextlib.suppress(Exception):
                if self.process.stdin and not self.process.stdin.closed:
                    self.process.stdin.close()
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                _stop(self.process, timeout=5)


# --------------------------------------------------------------------------- databases


def postgres_available() -> str | None:
    """None when PostgreSQL and Redis answer, else why not."""
    try:
        import psycopg
        import redis

        psycopg.connect(POSTGRES_ADMIN_URL, connect_timeout=3).close()
        redis.Redis.from_url(REDIS_URL, socket_timeout=3).ping()
    except Exception as exc:  # any failure means: not available here
        return f"{type(exc).__name__}: {exc}"
    return None


@dataclass
class Backend:
    """A database (+ channel layer) flavour. `database()` gives a fresh migrated and seeded copy."""

    name: str
    kind: str  # "sqlite" or "postgres"
    redis: bool
    template_url: str = ""
    info: dict[str, Any] = field(default_factory=dict)  # token, user id of the template
    _made: list[str] = field(default_factory=list)

    @property
    def label(self) -> str:
        return self.name

    def server_env(self, database_url: str, **extra: str | None) -> dict[str, str]:
        return base_env(DATABASE_URL=database_url, REDIS_URL=REDIS_URL if self.redis else None, **extra)


class Databases:
    """Throwaway databases: a migrated + seeded template per engine, copied per benchmark."""

    def __init__(self) -> None:
        self.tmp = Path(tempfile.mkdtemp(prefix="bench-"))
        self.prefix = f"bench_{os.getpid()}_"
        self.counter = 0
        self.pg_made: list[str] = []
        self.backends: dict[str, Backend] = {}
        self.redis_conversations: list[str] = []  # their sequence counters live in Redis (7-day TTL)

    # ----------------------------------------------------------------- templates

    def backend(self, name: str) -> Backend:
        """ "sqlite" (SQLite + in-memory layer) or "postgres" (PostgreSQL + Redis); built on first use."""
        if name in self.backends:
            return self.backends[name]
        if name == "sqlite":
            backend = Backend("SQLite+memory", "sqlite", redis=False)
            path = self.tmp / "template.sqlite3"
            backend.template_url = f"sqlite:///{path}"
        else:
            why = postgres_available()
            if why:
                raise Unavailable(f"PostgreSQL/Redis unavailable ({why})")
            backend = Backend("PostgreSQL+Redis", "postgres", redis=True)
            dbname = self._pg_create()
            backend.template_url = _pg_url(dbname)
        backend.info = run_json(
            ["bench/dbtool.py", "init"], env=base_env(DATABASE_URL=backend.template_url), timeout=180
        )
        self.backends[name] = backend
        return backend

    def copy(self, backend: Backend) -> str:
        """A fresh copy of the backend's template; its URL."""
        self.counter += 1
        if backend.kind == "sqlite":
            src = Path(backend.template_url.removeprefix("sqlite:///"))
            dst = self.tmp / f"db{self.counter}.sqlite3"
            shutil.copyfile(src, dst)
            for suffix in ("-wal", "-shm"):
                if Path(str(src) + suffix).exists():
                    shutil.copyfile(str(src) + suffix, str(dst) + suffix)
            return f"sqlite:///{dst}"
        template = backend.template_url.rsplit("/", 1)[1]
        return _pg_url(self._pg_create(template=template))

    def prepare(self, backend: Backend, database_url: str, **spec: Any) -> dict[str, Any]:
        """Rows a benchmark needs (conversations, profiles) in a database copy; see bench/dbtool.py."""
        result = run_json(
            ["bench/dbtool.py", "prepare"],
            env=base_env(DATABASE_URL=database_url),
            timeout=300,
            stdin=json.dumps(spec),
        )
        if backend.redis:
            self.redis_conversations += result.get("conversations", [])
        return result

    # ----------------------------------------------------------------- PostgreSQL

    def _pg_create(self, template: str | None = None) -> str:
        import psycopg

        self.counter += 1
        name = f"{self.prefix}{self.counter}"
        with psycopg.connect(POSTGRES_ADMIN_URL, autocommit=True) as conn:
            sql = f'CREATE DATABASE "{name}"' + (f' TEMPLATE "{template}"' if template else "")
            for attempt in range(20):  # the template may still have a closing connection
                try:
                    conn.execute(sql)
                    break
                except psycopg.errors.ObjectInUse:
                    if attempt == 19:
                        raise
                    time.sleep(0.25)
        self.pg_made.append(name)
        return name

    def drop(self, url: str) -> None:
        """Drop a copy early (PostgreSQL) or delete it (SQLite) once a benchmark is done with it."""
        if url.startswith("sqlite:///"):
            for suffix in ("", "-wal", "-shm"):
                with contextlib.suppress(OSError):
                    os.unlink(url.removeprefix("sqlite:///") + suffix)
            return
        name = url.rsplit("/", 1)[1]
        self._pg_drop(name)

    def _pg_drop(self, name: str) -> None:
        import psycopg

        with contextlib.suppress(Exception), psycopg.connect(POSTGRES_ADMIN_URL, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        if name in self.pg_made:
            self.pg_made.remove(name)

    def cleanup(self) -> None:
        for name in list(self.pg_made):
            self._pg_drop(name)
        if self.redis_conversations:  # sequence counters (7-day TTL) and groups left by stopped servers
            with contextlib.suppress(Exception):
                import redis

                client = redis.Redis.from_url(REDIS_URL, socket_timeout=5)
                ids = self.redis_conversations
                kinds = ("chat:seq:{}", "chat:seqmark:{}", "asgi:group:conv.{}", "asgi:group:conv-control.{}")
                for i in range(0, len(ids), 250):
                    client.delete(*[kind.format(c) for c in ids[i : i + 250] for kind in kinds])
        shutil.rmtree(self.tmp, ignore_errors=True)


class Unavailable(Exception):
    """A backend this machine does not have: the figure is reported as not run (not a crash)."""


def _pg_url(dbname: str) -> str:
    return POSTGRES_ADMIN_URL.rsplit("/", 1)[0] + "/" + dbname


def ws_url(server: Daphne, conv_id: str, token: str, prefix: str = "") -> str:
    return f"{server.ws}/{prefix}ws/chat/?conv_id={conv_id}&token={token}"


# --------------------------------------------------------------------------- shared by the figures


@dataclass
class Config:
    quick: bool
    runs: int

    def pick(self, full: Any, quick: Any) -> Any:
        return quick if self.quick else full


def probe_shape(server: Daphne, conv_id: str, token: str, *, paced: bool) -> dict[str, Any]:
    """One real turn's frames (types, sizes and, for `paced`, arrival times) for the bare consumer."""
    result = client(
        {"scenario": "probe", "urls": [ws_url(server, conv_id, token)], "turns": 3, "turn_timeout": 60}, timeout=120
    )
    if result["errors"]:
        raise RuntimeError(f"probe turn failed on {server.name}: {result['errors']}")
    frames = result["shapes"][-1]
    if not paced:
        frames = [[kind, size, 0] for kind, size, _ in frames]
    types: dict[str, int] = {}
    for kind, _, _ in frames:
        types[kind] = types.get(kind, 0) + 1
    summary = ", ".join(f"{k} x{v}" if v > 1 else k for k, v in types.items())
    print(f"  real turn: {len(frames)} frames, {sum(f[1] for f in frames)} bytes ({summary})")
    return {"frames": frames, "paced": paced, "hello_bytes": result["hello_bytes"]}


def delta_size(shape: dict[str, Any]) -> int:
    sizes = sorted(size for kind, size, _ in shape["frames"] if kind in ("llm.delta", "llm.snapshot"))
    return sizes[len(sizes) // 2] if sizes else 200


def bare_server(name: str) -> Daphne:
    return Daphne(name, base_env(), app="bench.bare_app:application")


def say(text: str) -> None:
    print(text, flush=True)
