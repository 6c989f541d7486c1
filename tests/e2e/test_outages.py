"""Outages are normal: a PostgreSQL or a Redis server of the test's own is stopped in the middle of a
streaming turn, with real daphne workers in front of it (docs/architecture.md, `chat.dispatcher`).

Each test starts its own servers (the `own_postgres` / `own_redis` fixtures, tests/e2e/own_servers.py),
migrates and seeds that database with `manage.py` in a subprocess, and starts its own workers on it; the
pytest process's own test database is not used (it may be SQLite). Stage 2 of `make test` runs it.

The offline engine answers in about ten chunks; `CHAT_OFFLINE_DELAY_SECONDS` paces them so a turn
lasts long enough to stop a server in its middle. Every wait has a deadline; the only fixed waits are
the outages themselves. On a failure the workers' and servers' logs are attached to the report.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx2 as httpx
import pytest
from websockets.asyncio.client import ClientConnection
from websockets.exceptions import ConnectionClosed

from .helpers import (
    FINISHED_FRAMES,
    ApiUser,
    Frame,
    hello,
    http,
    poll,
    read_until,
    recv,
    send,
    send_turn,
    ws_connect,
)
from .own_servers import OwnPostgres, OwnRedis, run_manage
from .server import LiveServer

pytestmark = [pytest.mark.scaleout, pytest.mark.e2e]

# About 80 characters: the offline engine quotes at most that much, its answer is then ten chunks.
PROMPT = "Please take your time and repeat this whole sentence back to me slowly, word by word."
SLOW = 2.0  # seconds between chunks: a turn of about 18 s, long enough for a 10 s outage in its middle
OUTAGE = 10.0
GRACE = 2.0  # CHAT_OUTAGE_GRACE_SECONDS of the grace test
LONG_OUTAGE = 6.0  # longer than GRACE plus a tick or two
# "Right after" the database is back: a worker's connection pool reconnects with a backoff (seconds).
RIGHT_AFTER = 10.0
SETTLE = 30.0  # bound for "stored once the server is back" (pool reconnect backoff, finish retries <= 5 s)
HTTP_TIMEOUT = 30.0  # one request during an outage (the database pool waits DB_POOL_TIMEOUT, 10 s, at most)

# One manage.py process: migrate, the demo registries and inventory, a user with a DRF token.
SEED = """
import io
from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management import call_command
from rest_framework.authtoken.models import Token
from profiles.yamlio import import_file
call_command("migrate", "--noinput", verbosity=0)
import_file(settings.PROFILES_SEED_FILE, source="seed")
call_command("inventory_seed", stdout=io.StringIO())
user = get_user_model().objects.create_user("alice", "alice@example.com", "pw-e2e-123")
print("OUTAGE-TEST-USER", user.pk, Token.objects.create(user=user).key)
"""


# --------------------------------------------------------------------------- servers


def prepare_database(pg: OwnPostgres) -> ApiUser:
    """Migrate and seed the own database; returns its user (with a token)."""
    output = run_manage(pg.url, "shell", "-c", SEED, env={"REDIS_URL": ""}, timeout=180)
    for line in output.splitlines():
        if line.startswith("OUTAGE-TEST-USER "):
            _, pk, token = line.split()
            return ApiUser(username="alice", token=token, pk=int(pk))
    raise AssertionError(f"the seed printed no user:\n{output[-3000:]}")


def log_tail(path: Any, chars: int = 8000) -> str:
    """The end of a worker's log without traceback bodies (an outage logs one per second or more)."""
    try:
        text = path.read_text(errors="replace")
    except OSError as exc:
        return f"(no log: {exc})"
    lines = [line for line in text.splitlines() if line.strip() and not line[0].isspace()]
    return "\n".join(line for line in lines if not line.startswith(("Traceback", "The above exception")))[-chars:]


@contextlib.contextmanager
def workers(
    count: int, pg: OwnPostgres, redis: OwnRedis | None = None, **settings: float | str
) -> Iterator[list[LiveServer]]:
    """`count` daphne workers on the own PostgreSQL (and the own Redis, else the in-memory layer),
    always stopped; on a failure their logs and the servers' logs are attached to the error."""
    env = {
        "DATABASE_URL": pg.url,
        "REDIS_URL": redis.url if redis is not None else "",
        "LOG_LEVEL": "INFO",
        **{name: str(value) for name, value in settings.items()},
    }
    started: list[LiveServer] = []
    try:
        for _ in range(count):
            worker = LiveServer(env=env)
            started.append(worker)  # stopped below even if its start fails half-way
            worker.start()
        yield started
    except BaseException as exc:
        _stop(started)
        for worker in started:
            exc.add_note(f"--- daphne worker {worker.url} ({worker.log_path}), tail ---\n{log_tail(worker.log_path)}")
        for server in (pg, redis):
            if server is not None:
                exc.add_note(server.log_tail(2000))
        raise
    finally:
        _stop(started)


def _stop(started: list[LiveServer]) -> None:
    for worker in started:
        with contextlib.suppress(Exception):
            worker.stop()


# --------------------------------------------------------------------------- what a client puts together


@dataclass
class Transcript:
    """The answer as a client assembles it from the frames it got, on one or several sockets: per
    message, the deltas as they come, replaced by a replay's `llm.snapshot` (the text so far) and by the
    message's `llm.final` (its whole text)."""

    texts: dict[str, str] = field(default_factory=dict)  # message_id -> text, in the order of llm.start
    streamed: dict[str, str] = field(default_factory=dict)  # message_id -> the deltas this client got
    seqs: list[int] = field(default_factory=list)
    delta_count: int = 0
    end: Frame | None = None
    shown: list[tuple[int, str, str]] = field(default_factory=list)  # (seq, type, the text so far) after each frame

    def feed(self, frames: list[Frame], turn_id: str) -> None:
        for frame in frames:
            kind, data = frame["type"], frame["data"]
            if frame["seq"]:
                self.seqs.append(frame["seq"])
            message_id = data.get("message_id")
            if message_id is not None and not str(message_id).startswith(turn_id):
                continue
            if kind == "llm.start":
                self.texts.setdefault(message_id, "")
            elif kind == "llm.delta":
                self.texts[message_id] = self.texts.get(message_id, "") + data["delta"]
                self.streamed[message_id] = self.streamed.get(message_id, "") + data["delta"]
                self.delta_count += 1
            elif kind in ("llm.snapshot", "llm.final"):
                self.texts[message_id] = data["text"]
            elif kind in FINISHED_FRAMES and data.get("turn_id") == turn_id:
                self.end = frame
            self.shown.append((frame["seq"], kind, self.text))

    @property
    def text(self) -> str:
        return "".join(self.texts.values())

    @property
    def streamed_text(self) -> str:
        return "".join(self.streamed.values())

    @property
    def last_seq(self) -> int:
        return max(self.seqs, default=0)

    def assert_never_a_hole(self, final: str) -> None:
        """What the client showed was, after every frame, the beginning of the final text: no part of the
        answer was skipped (a later delta shown after a missing one), nothing was shown twice."""
        for seq, kind, text in self.shown:
            assert final.startswith(text), (
                f"after frame {seq} ({kind}) the client shows a text that is not the start of the final "
                f"text:\n  shown: {text!r}\n  final: {final!r}\n  frames: {[(s, k) for s, k, _ in self.shown]}"
            )


def count_deltas(frames: list[Frame]) -> int:
    return sum(1 for f in frames if f["type"] == "llm.delta")


def ends(turn_id: str) -> Callable[[Frame], bool]:
    return lambda f: f["type"] in FINISHED_FRAMES and f["data"].get("turn_id") == turn_id


async def frames_until(
    ws: ClientConnection, deadline: float, match: Callable[[Frame], bool] | None = None
) -> list[Frame]:
    """The frames received until `deadline` (monotonic), or up to and including the first that matches."""
    got: list[Frame] = []
    while (remaining := deadline - time.monotonic()) > 0:
        try:
            frame = await recv(ws, remaining)
        except TimeoutError:
            break
        frame["_at"] = time.monotonic()  # when it came (diagnostics)
        got.append(frame)
        if match is not None and match(frame):
            break
    return got


async def start_turn(ws: ClientConnection, prompt: str = PROMPT) -> tuple[str, list[Frame]]:
    """Send a prompt; returns its turn id and the frames up to its first delta."""
    await send_turn(ws, prompt)
    frames = await read_until(ws, "llm.delta", timeout=20)
    turn_id = next(f["data"]["turn_id"] for f in frames if f["type"] == "chat.message")
    return turn_id, frames


# --------------------------------------------------------------------------- REST


async def stored_turn(client: httpx.AsyncClient, conv_id: Any, turn_id: str) -> dict[str, Any] | None:
    """The stored turn, read over REST; None while the server answers 503 (the database is coming back)."""
    response = await client.get(f"/api/chat/conversations/{conv_id}")
    if response.status_code == 503:
        return None
    assert response.status_code == 200, (response.status_code, response.text)
    return next((t for t in response.json()["turns"] if t["turn_id"] == turn_id), None)


async def wait_stored(client: httpx.AsyncClient, conv_id: Any, turn_id: str) -> dict[str, Any]:
    """Poll until the turn is stored with a final status (bounded)."""
    return await poll(
        lambda: stored_turn(client, conv_id, turn_id),
        lambda turn: turn is not None and turn["status"] not in ("queued", "running"),
        timeout=SETTLE,
        interval=0.25,
    )


def assert_unavailable(response: httpx.Response, what: str) -> None:
    """503 with Retry-After and the JSON error shape, code `unavailable` (never a 500)."""
    assert response.status_code == 503, f"{what}: {response.status_code} {response.text[:500]}"
    retry_after = response.headers.get("Retry-After")
    assert retry_after is not None and retry_after.isdigit() and int(retry_after) > 0, (what, dict(response.headers))
    assert response.headers.get("content-type", "").startswith("application/json"), (what, dict(response.headers))
    error = response.json()["error"]
    assert error["code"] == "unavailable", (what, error)
    assert isinstance(error["message"], str) and error["message"], (what, error)


# --------------------------------------------------------------------------- the tests


async def test_a_postgres_outage_of_10_s_mid_turn_keeps_the_answer_streaming_and_stores_it_completed(
    own_postgres: OwnPostgres,
):
    """PostgreSQL is away for 10 s in the middle of a streaming turn (one worker, in-memory layer): the
    socket keeps getting the answer, and once the database is back the turn is stored `completed` with
    exactly the text the client put together (read back over REST)."""
    pg = own_postgres
    user = prepare_database(pg)
    conv_id = uuid.uuid4()
    with workers(1, pg, CHAT_OFFLINE_DELAY_SECONDS=SLOW) as (worker,):
        async with ws_connect(worker, user, conv_id=conv_id) as ws:
            await hello(ws)
            transcript = Transcript()
            turn_id, before = await start_turn(ws)
            transcript.feed(before, turn_id)

            pg.stop()
            stopped = time.monotonic()
            during = await frames_until(ws, stopped + OUTAGE)
            transcript.feed(during, turn_id)
            pg.start()

            after = [] if transcript.end else await read_until(ws, ends(turn_id), timeout=SETTLE)
            transcript.feed(after, turn_id)

        async with http(worker, user, timeout=HTTP_TIMEOUT) as client:
            stored = await wait_stored(client, conv_id, turn_id)

        assert count_deltas(during) >= 3, (
            f"the answer stopped streaming during the outage: {count_deltas(during)} deltas"
        )
        assert not any(f["type"] in FINISHED_FRAMES for f in during), "the turn ended during the outage"
        end = transcript.end
        assert end is not None and end["type"] == "turn.completed", end
        # the client got every delta of the answer: its deltas make the final text
        assert transcript.streamed_text == transcript.text, (transcript.streamed_text, transcript.text)
        assert transcript.text and end["data"]["text"] == transcript.text
        assert stored["status"] == "completed", stored
        assert stored["error"] is None, stored
        assert stored["text"] == transcript.text
        transcript.assert_never_a_hole(stored["text"])


@pytest.mark.parametrize("submitted_on", ["socket_worker", "other_worker"])
async def test_a_redis_outage_of_10_s_mid_turn_on_two_workers_stores_it_completed_and_a_reconnect_replays_the_text(
    own_postgres: OwnPostgres, own_redis: OwnRedis, submitted_on: str
):
    """The socket is on worker A; the turn is submitted on its socket (it runs on A) or over REST on
    worker B (it runs on B, its frames reach A only through Redis). Redis is away for 10 s mid-turn; the
    turn is stored `completed`, and the client reconnecting with `?since_seq=<the last seq it got>`, at
    once when Redis is back (the turn still runs) and again once it is stored, puts the stored text
    together from what it had and the replay, showing at every frame the beginning of that text."""
    pg, redis = own_postgres, own_redis
    user = prepare_database(pg)
    conv_id = uuid.uuid4()
    with workers(2, pg, redis, CHAT_OFFLINE_DELAY_SECONDS=SLOW) as (a, b):
        async with ws_connect(a, user, conv_id=conv_id) as ws:
            await hello(ws)
            had = Transcript()
            if submitted_on == "socket_worker":
                turn_id, before = await start_turn(ws)
            else:
                async with http(b, user, timeout=HTTP_TIMEOUT) as client:
                    response = await client.post(f"/api/chat/conversations/{conv_id}/messages", json={"prompt": PROMPT})
                assert response.status_code == 202, response.text
                turn_id = response.json()["turn_id"]
                before = await read_until(ws, "llm.delta", timeout=20)
            had.feed(before, turn_id)

            redis.stop()
            stopped = time.monotonic()
            try:
                during = await frames_until(ws, stopped + OUTAGE)
            except ConnectionClosed:  # the socket may go; the client reconnects below either way
                during = []
                await asyncio.sleep(max(0.0, stopped + OUTAGE - time.monotonic()))
            had.feed(during, turn_id)
            redis.start()
        since = had.last_seq
        assert since > 0, "the client got no conversation frame before the outage"
        assert had.end is None, f"the turn ended during the outage: {had.end}"

        # A client that reconnects once Redis is back (the turn is still running): the replay, then live.
        rejoined = Transcript(texts=dict(had.texts), seqs=list(had.seqs))
        async with ws_connect(a, user, conv_id=conv_id, since_seq=since) as ws:
            await hello(ws)
            replayed = await read_until(ws, ends(turn_id), timeout=SETTLE + OUTAGE)
        rejoined.feed(replayed, turn_id)

        async with http(a, user, timeout=HTTP_TIMEOUT) as client:
            stored = await wait_stored(client, conv_id, turn_id)

        # The same client reconnecting again after the turn was stored: the stored frames alone.
        late = Transcript(texts=dict(had.texts), seqs=list(had.seqs))
        async with ws_connect(a, user, conv_id=conv_id, since_seq=since) as ws:
            await hello(ws)
            replayed_late = await read_until(ws, ends(turn_id), timeout=SETTLE)
        late.feed(replayed_late, turn_id)

        assert stored["status"] == "completed", stored
        assert stored["error"] is None, stored
        assert had.text and stored["text"].startswith(had.text), (had.text, stored["text"])
        for replay in (replayed, replayed_late):
            seqs = [f["seq"] for f in replay if f["seq"]]
            assert seqs and min(seqs) > since, f"the replay repeated frames up to since_seq={since}: {seqs}"
            assert len(seqs) == len(set(seqs)), f"a frame came twice: {seqs}"
            assert seqs == sorted(seqs), f"frames out of order: {seqs}"
        assert rejoined.end is not None and rejoined.end["type"] == "turn.completed", rejoined.end
        assert rejoined.text == stored["text"], (rejoined.text, stored["text"])
        assert late.end is not None and late.end["type"] == "turn.completed", late.end
        assert late.text == stored["text"], (late.text, stored["text"])
        assert rejoined.end["data"]["text"] == stored["text"]
        # The rejoined client showed the text so far at once (the replay's snapshot), never with a gap.
        rejoined.assert_never_a_hole(stored["text"])
        late.assert_never_a_hole(stored["text"])


async def test_a_postgres_outage_longer_than_the_grace_fails_the_turn_storage_unavailable_keeping_its_text(
    own_postgres: OwnPostgres,
):
    """CHAT_OUTAGE_GRACE_SECONDS=2 and PostgreSQL away for 6 s mid-turn: the client gets `turn.failed`
    (`storage_unavailable`) during the outage or right after it, and the turn is stored `failed` with
    that error and the text the client saw."""
    pg = own_postgres
    user = prepare_database(pg)
    conv_id = uuid.uuid4()
    with workers(1, pg, CHAT_OFFLINE_DELAY_SECONDS=1.5, CHAT_OUTAGE_GRACE_SECONDS=GRACE) as (worker,):
        async with ws_connect(worker, user, conv_id=conv_id) as ws:
            await hello(ws)
            transcript = Transcript()
            turn_id, before = await start_turn(ws)
            transcript.feed(before, turn_id)

            pg.stop()
            stopped = time.monotonic()
            during = await frames_until(ws, stopped + LONG_OUTAGE)
            transcript.feed(during, turn_id)
            pg.start()
            back = time.monotonic()

            # during the outage, or right after it
            after = [] if transcript.end else await frames_until(ws, back + RIGHT_AFTER, match=ends(turn_id))
            transcript.feed(after, turn_id)
            # nothing more of this turn comes once it has ended
            trailing = await frames_until(ws, time.monotonic() + 1.0)

        async with http(worker, user, timeout=HTTP_TIMEOUT) as client:
            stored = await wait_stored(client, conv_id, turn_id)

        # (seconds after the stop, seq, type): the database was back LONG_OUTAGE s (and a start) after the stop
        timeline = [(round(f["_at"] - stopped, 1), f["seq"], f["type"]) for f in during + after]
        end = transcript.end
        assert end is not None, f"no terminal frame during the outage nor {RIGHT_AFTER} s after it; got {timeline}"
        assert end["type"] == "turn.failed", (end, timeline)
        assert end["data"]["status"] == "failed", end
        assert end["data"]["error"]["code"] == "storage_unavailable", end
        assert not [f for f in trailing if f["data"].get("message_id", "").startswith(turn_id)], trailing
        assert transcript.delta_count >= 1 and transcript.text, "the client saw no text"
        assert end["data"]["text"] == transcript.text, (end["data"]["text"], transcript.text)
        assert stored["status"] == "failed", stored
        assert stored["error"]["code"] == "storage_unavailable", stored
        assert stored["text"] == transcript.text, (stored["text"], transcript.text)
        transcript.assert_never_a_hole(stored["text"])


async def test_http_requests_during_a_postgres_outage_are_503_with_retry_after_and_a_socket_send_is_an_unavailable_error(
    own_postgres: OwnPostgres,
):
    """While PostgreSQL is away: the profile API, a REST message and the OpenAI-compatible model list
    answer 503 with Retry-After and `{"error": {"code": "unavailable", "message"}}` (never 500); a
    socket's `chat.send` gets an `error` frame `unavailable` and the socket stays open (`ws.ping` is
    answered). Once the database is back, the same client and socket work again."""
    pg = own_postgres
    user = prepare_database(pg)
    conv_id = uuid.uuid4()
    requests = {
        "GET /api/chat/profiles": ("GET", "/api/chat/profiles", None),
        "POST messages": ("POST", f"/api/chat/conversations/{conv_id}/messages", {"prompt": "during the outage"}),
        "GET /v1/models": ("GET", "/v1/models", None),
    }
    with workers(1, pg) as (worker,):
        async with ws_connect(worker, user, conv_id=conv_id) as ws, http(worker, user, timeout=HTTP_TIMEOUT) as client:
            await hello(ws)  # the conversation exists
            for what, (method, url, body) in requests.items():  # the pool has connections, all answer
                response = await client.request(method, url, json=body)
                assert response.status_code in (200, 202), (what, response.status_code, response.text)
            await read_until(ws, ends_any, timeout=20)  # the turn the POST started

            pg.stop()

            async def requests_answer_503() -> None:
                responses = await asyncio.gather(
                    *(client.request(method, url, json=body) for method, url, body in requests.values())
                )
                for what, response in zip(requests, responses, strict=True):
                    assert_unavailable(response, what)

            async def socket_send_is_an_error() -> dict[str, Any]:
                await send(ws, {"type": "chat.send", "prompt": "during the outage"})
                # (a database call may wait for a pool connection up to DB_POOL_TIMEOUT, 10 s)
                deadline = time.monotonic() + HTTP_TIMEOUT
                answered = await frames_until(ws, deadline, match=lambda f: f["type"] == "error")
                assert answered and answered[-1]["type"] == "error", f"no error frame: {answered}"
                assert not [f for f in answered if f["type"] == "chat.message"], answered
                return answered[-1]["data"]

            # First with the pool's connections broken by the stop, then with none to be had (the
            # socket's send meanwhile).
            await requests_answer_503()
            _, error = await asyncio.gather(requests_answer_503(), socket_send_is_an_error())
            assert error["code"] == "unavailable", error
            assert error["message"], error
            await send(ws, {"type": "ws.ping"})
            pong = await read_until(ws, lambda f: f["type"] in ("ws.pong", "error"), timeout=10)
            assert pong[-1]["type"] == "ws.pong", pong

            pg.start()
            # Back: the same requests succeed again, and the same socket runs a turn.
            await poll(
                lambda: client.get("/api/chat/profiles"), lambda r: r.status_code == 200, timeout=SETTLE, interval=0.25
            )
            await send_turn(ws, "after the outage")
            frames = await read_until(ws, ends_any, timeout=SETTLE)
            assert frames[-1]["type"] == "turn.completed", frames[-1]


def ends_any(frame: Frame) -> bool:
    return frame["type"] in FINISHED_FRAMES
