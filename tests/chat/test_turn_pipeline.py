"""The turn pipeline at scale, through the production path (websocket -> consumer -> worker -> runner):
bounded writes per turn whatever the number of deltas, local frames that write nothing, a bounded
history, tools isolated from other conversations, leases renewed on a timer and swept by any worker.
"""

from __future__ import annotations

import asyncio
import threading
import uuid
from collections.abc import Iterator
from types import SimpleNamespace

import channels.consumer
import pytest
from channels.layers import get_channel_layer
from django.db import connection
from django.db.backends.base.base import BaseDatabaseWrapper
from django.db.backends.utils import CursorWrapper
from rest_framework.authtoken.models import Token

from chat import control, frames, replay, selectors, services
from chat import dispatcher as dispatcher_module
from chat.aio import run_db
from chat.live import LiveTurn
from chat.models import Conversation, ConversationEvent, Turn, TurnChunk
from chat.runtime import tools as chat_tools
from chat.turns import dispatcher

from .factories import ConversationFactory, TurnFactory, turns_counted
from .fake_openai import FakeOpenAIServer, remote_profile

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("seeded_registries")]
WRITES = ("INSERT", "UPDATE", "DELETE")
LONG_PROMPT = "Please tell me a long story about the sea, the wind, the boats and the people who sail them " * 2


class SqlLog(list):
    """Statements (the list) and, in `params`, the parameters of each."""

    def __init__(self) -> None:
        super().__init__()
        self.params: list[object] = []

    def clear(self) -> None:
        super().clear()
        self.params.clear()


@pytest.fixture
def sql_log(monkeypatch) -> SqlLog:
    """Every SQL statement run on any thread (the chat pools use their own connections)."""
    log = SqlLog()
    original = CursorWrapper._execute_with_wrappers

    def recording(self, sql, params, many, executor):
        log.append(sql)
        log.params.append(params)
        return original(self, sql, params, many, executor)

    monkeypatch.setattr(CursorWrapper, "_execute_with_wrappers", recording)
    return log


class Commits:
    count = 0


@pytest.fixture
def commits(monkeypatch) -> Commits:
    """Transactions committed on any thread (SQLite logs their BEGIN; psycopg sends it unlogged)."""
    counter = Commits()
    original = BaseDatabaseWrapper.commit

    def counting(self):  # type: ignore[no-untyped-def]
        counter.count += 1
        return original(self)

    monkeypatch.setattr(BaseDatabaseWrapper, "commit", counting)
    return counter


def mark_statements(log: list[str]) -> list[str]:
    """The sequencer's reads and raises of a conversation's reserved mark (`chat.sequencer`)."""
    return [sql for sql in log if 'SET "last_seq"' in sql or sql.startswith('SELECT "chat_conversation"."last_seq"')]


def writes(log: list[str]) -> list[str]:
    return [sql for sql in log if sql.lstrip().upper().startswith(WRITES)]


@pytest.fixture
def fake() -> Iterator[FakeOpenAIServer]:
    with FakeOpenAIServer() as server:
        yield server


@pytest.fixture
def quiet_timer(settings) -> None:
    """No checkpoint or lease renewal during the (short) turns of a test."""
    settings.CHAT_CHECKPOINT_SECONDS = 60
    settings.CHAT_TURN_LEASE_SECONDS = 600


def types(frames: list[dict]) -> list[str]:
    return [f["type"] for f in frames]


# --------------------------------------------------------------------------- database writes


async def test_a_turn_of_1000_deltas_makes_the_same_writes_as_a_turn_of_10(
    connected, frames_until, fake, sql_log, settings, quiet_timer
):
    settings.CHAT_DELTA_COALESCE_SECONDS = 0  # every provider chunk is its own llm.delta frame
    settings.CHAT_FRAME_BUDGET = 10**9
    await run_db(remote_profile, fake)
    counts = []
    for pieces in (10, 1000):
        fake.stream_text([f"w{i} " for i in range(pieces)])
        communicator, _ = await connected(profile="remote")
        sql_log.clear()
        await communicator.send_json_to({"type": "chat.send", "prompt": "go"})
        frames = await frames_until(communicator, timeout=20)
        assert types(frames).count("llm.delta") == pieces
        assert types(frames)[-1] == "turn.completed"
        counts.append(writes(sql_log))

    few, many = counts
    assert len(few) == len(many), (few, many)
    # submit + chat.message, the claim with the runtime record and first frames, the finish with the rest
    assert len(few) <= 12, few


@pytest.mark.backends
async def test_a_new_conversations_first_frames_are_numbered_without_reading_or_writing_its_mark(
    connected, frames_until, sql_log, quiet_timer
):
    """The socket that creates its conversation stores it with its first block of numbers reserved and
    primes the sequencer (in the process, or Redis): its first turn neither reads the conversation's mark
    nor raises it."""
    communicator, _ = await connected()

    await communicator.send_json_to({"type": "chat.send", "prompt": "first"})
    assert types(await frames_until(communicator, timeout=20))[-1] == "turn.completed"

    assert mark_statements(sql_log) == []


async def test_a_socket_that_creates_its_conversation_looks_for_it_once(connected, sql_log):
    _, hello = await connected()

    by_id = 'FROM "chat_conversation" WHERE "chat_conversation"."id" ='
    looks = [sql for sql in sql_log if sql.lstrip().upper().startswith("SELECT") and by_id in sql]
    assert hello["type"] == "ws.hello"
    assert len(looks) == 1, looks  # not found: created (no second look whether another user has it)


@pytest.mark.backends
async def test_a_socket_turn_costs_9_statements_on_either_backend_in_2_transactions(
    connected, frames_until, sql_log, commits, quiet_timer
):
    communicator, _ = await connected()
    await communicator.send_json_to({"type": "chat.send", "prompt": "first"})  # numbers reserved, runtime built
    await frames_until(communicator, timeout=20)
    sql_log.clear()
    commits.count = 0

    await communicator.send_json_to({"type": "chat.send", "prompt": "2 + 2"})
    assert types(await frames_until(communicator, timeout=20))[-1] == "turn.completed"

    statements = [sql.lstrip().split()[0].upper() for sql in sql_log]
    # The writer's write alone is its own transaction (no savepoint); the submission claims the turn of
    # an idle conversation under its row lock, with the runtime record (profile and history read there):
    # the lock (the turn counts are on the row), the registry with the user's selection, the history, the
    # turn, the claim, the message; the finish: the turn, its frames, the release (returning the row's
    # count of queued turns).
    assert "SAVEPOINT" not in statements, sql_log
    assert commits.count == 2, sql_log  # submission with its claim, finish
    assert len(statements) - statements.count("BEGIN") == 9, sql_log  # SQLite's BEGIN IMMEDIATE aside


@pytest.fixture
def written(monkeypatch) -> list[tuple[str, object]]:
    """(statement, parameters) of every INSERT, UPDATE and DELETE, on any thread."""
    log: list[tuple[str, object]] = []
    original = CursorWrapper._execute_with_wrappers

    def recording(self, sql, params, many, executor):
        if sql.lstrip().upper().startswith(WRITES):
            log.append((sql, params))
        return original(self, sql, params, many, executor)

    monkeypatch.setattr(CursorWrapper, "_execute_with_wrappers", recording)
    return log


def text_bytes(log: list[tuple[str, object]]) -> int:
    """Characters of text parameters written (the turn's text, its chunks, stored frames)."""

    def size(value: object) -> int:
        if isinstance(value, str):
            return len(value)
        if isinstance(value, list | tuple):
            return sum(size(v) for v in value)
        return 0

    return sum(size(params) for _, params in log)


async def test_checkpoints_append_only_what_is_new_and_the_text_is_written_whole_once(
    connected, frames_until, fake, written, settings
):
    """At a realistic pace a turn is checkpointed many times: each checkpoint appends only the text new
    since the last one (a chunk), the turn's row gets its text once, at the end, and the chunks go: the
    text written stays linear in the answer, never its square."""
    settings.CHAT_DELTA_COALESCE_SECONDS = 0
    settings.CHAT_FRAME_BUDGET = 10**9
    settings.CHAT_CHECKPOINT_SECONDS = 0.1
    settings.CHAT_TURN_LEASE_SECONDS = 600
    await run_db(remote_profile, fake)
    fake.stream_text([f"word{i:04d}-of-the-answer " for i in range(150)], chunk_delay=0.01)
    communicator, _ = await connected(profile="remote")
    written.clear()

    await communicator.send_json_to({"type": "chat.send", "prompt": "go"})
    frames = await frames_until(communicator, timeout=30)

    assert types(frames)[-1] == "turn.completed"
    answer = frames[-1]["data"]["text"]
    chunk_inserts = [
        params for sql, params in written if sql.lstrip().upper().startswith('INSERT INTO "CHAT_TURNCHUNK"')
    ]
    chunk_chars = text_bytes([("", params) for params in chunk_inserts])
    text_updates = [sql for sql, _ in written if sql.startswith('UPDATE "chat_turn" SET') and '"text" =' in sql]
    assert len(chunk_inserts) >= 5  # the pace really made several checkpoints
    assert chunk_chars < len(answer) + 40 * len(chunk_inserts)  # each character once (+ ids and offsets)
    assert len(text_updates) == 1  # the end; no checkpoint rewrote the text so far
    turn = await run_db(Turn.objects.get, pk=frames[-1]["data"]["turn_id"])
    assert turn.text == answer
    assert not await run_db(TurnChunk.objects.filter(turn=turn).exists)  # the end consolidated


async def test_a_message_whose_text_is_the_turns_is_stored_without_it_and_replayed_whole(
    connected, frames_until, quiet_timer
):
    """A one-message answer's text is stored once, in the turn's row: its `llm.final` (stored with the
    turn's end) leaves it out, and the replay puts it back."""
    communicator, _ = await connected()
    await communicator.send_json_to({"type": "chat.send", "prompt": "hello"})
    sent = await frames_until(communicator, timeout=20)
    final = next(f for f in sent if f["type"] == "llm.final")
    conv_id = final["conv_id"]

    stored = await run_db(ConversationEvent.objects.values_list("frame", flat=True).get, seq=final["seq"])
    replayed, _ = await run_db(selectors.events_after, conv_id=conv_id, since_seq=0, upto_seq=None, limit=100)

    assert final["data"]["text"] and "text" not in stored["data"], stored
    assert next(f for f in replayed if f["seq"] == final["seq"]) == final


async def test_hello_pong_and_error_frames_write_nothing(connected, chat_user, sql_log):
    conversation = await run_db(ConversationFactory, owner=chat_user, mount="chat")
    sql_log.clear()

    communicator, hello = await connected(conv_id=conversation.pk)
    await communicator.send_json_to({"type": "ws.ping"})
    pong = await communicator.receive_json_from(timeout=5)
    await communicator.send_to(text_data="not json")
    error = await communicator.receive_json_from(timeout=5)

    assert (hello["seq"], pong["type"], pong["seq"], error["type"], error["seq"]) == (0, "ws.pong", 0, "error", 0)
    assert writes(sql_log) == []


async def test_the_history_sent_is_bounded_by_the_default_window_in_the_query(
    connected, frames_until, fake, chat_user, settings, sql_log
):
    settings.CHAT_DEFAULT_CONTEXT_TURNS = 5
    await run_db(remote_profile, fake)
    conversation = await run_db(ConversationFactory, owner=chat_user, mount="chat", selected_registry="default")
    await run_db(Conversation.objects.filter(pk=conversation.pk).update, selected_profile="remote")
    for seq in range(1, 31):
        await run_db(
            TurnFactory, conversation=conversation, seq=seq, prompt=f"q{seq}", text=f"a{seq}", status="completed"
        )
    fake.stream_text(["fine"])
    communicator, _ = await connected(conv_id=conversation.pk)
    sql_log.clear()

    await communicator.send_json_to({"type": "chat.send", "prompt": "and now?"})
    frames = await frames_until(communicator, timeout=10)

    assert types(frames)[-1] == "turn.completed"
    sent = fake.requests[-1].body["messages"]
    assert [m["content"] for m in sent if m["role"] == "user"] == ["q26", "q27", "q28", "q29", "q30", "and now?"]
    history = [
        params
        for sql, params in zip(sql_log, sql_log.params, strict=True)
        if "ORDER BY" in sql and '"chat_turn"."seq" DESC' in sql and sql.rstrip().endswith("LIMIT %s")
    ]
    assert history and list(history[0])[-1] == 5, "the window is applied in the query"
    turn = await run_db(Turn.objects.get, pk=frames[0]["data"]["turn_id"])
    assert turn.engine["history_turns"] == 5  # recorded with the turn's runtime


async def test_a_regenerated_turn_does_not_send_the_answer_it_replaces_as_history(
    connected, frames_until, fake, chat_user
):
    """Claimed with its submission, before its row marks the turn it replaces: the history still ends
    before that turn."""
    await run_db(remote_profile, fake)
    conversation = await run_db(ConversationFactory, owner=chat_user, mount="chat", selected_registry="default")
    await run_db(Conversation.objects.filter(pk=conversation.pk).update, selected_profile="remote")
    await run_db(TurnFactory, conversation=conversation, seq=1, prompt="q1", text="a1", status="completed")
    last = await run_db(TurnFactory, conversation=conversation, seq=2, prompt="q2", text="a2", status="completed")
    fake.stream_text(["again"])
    communicator, _ = await connected(conv_id=conversation.pk)

    await communicator.send_json_to({"type": "chat.regenerate", "turn_id": str(last.pk)})
    frames = await frames_until(communicator, timeout=10)

    assert types(frames)[-1] == "turn.completed"
    sent = fake.requests[-1].body["messages"]
    assert [(m["role"], m["content"]) for m in sent if m["role"] != "system"] == [
        ("user", "q1"),
        ("assistant", "a1"),
        ("user", "q2"),
    ]


# --------------------------------------------------------------------------- no single shared thread


async def test_a_slow_tool_in_one_conversation_does_not_delay_another_conversation(
    connected, frames_until, settings, monkeypatch, fast_turns
):
    settings.CHAT_TOOL_TIMEOUT_SECONDS = 1.0
    released, finished = threading.Event(), threading.Event()
    real_run = chat_tools.CalculatorTool.run

    def hanging_run(self, args, ctx):
        released.wait(10)  # blocks its thread like a stuck network call
        finished.set()
        return real_run(self, args, ctx)

    monkeypatch.setattr(chat_tools.CalculatorTool, "run", hanging_run)
    slow, _ = await connected(profile="agent")
    other, _ = await connected()
    try:
        await slow.send_json_to({"type": "chat.send", "prompt": "what is 2+2"})
        await frames_until(slow, "tool.start", timeout=10)
        await other.send_json_to({"type": "chat.send", "prompt": "hello while the tool hangs"})
        other_frames = await frames_until(other, timeout=10)
        # the other conversation streamed and finished while the tool thread was still blocked
        assert types(other_frames)[-1] == "turn.completed"
        assert not finished.is_set()

        slow_frames = await frames_until(slow, timeout=10)
        # the tool timed out: its caller was freed and the turn ended, the tool thread still blocked
        result = next(f["data"] for f in slow_frames if f["type"] == "tool.result")
        assert result["error"] == "tool 'calculator' timed out after 1s"
        assert types(slow_frames)[-1] == "turn.completed"
        assert not finished.is_set()
    finally:
        released.set()


# --------------------------------------------------------------------------- leases


async def test_a_turn_interrupted_elsewhere_is_stopped_and_never_overwritten(connected, frames_until, settings):
    settings.CHAT_OFFLINE_DELAY_SECONDS = 0.05
    settings.CHAT_CHECKPOINT_SECONDS = 60
    communicator, _ = await connected()
    await communicator.send_json_to({"type": "chat.send", "prompt": LONG_PROMPT})
    frames = await frames_until(communicator, "llm.delta", timeout=10)
    turn_id = frames[0]["data"]["turn_id"]

    # Another worker finds the lease expired (this worker looked dead) and interrupts the turn.
    await run_db(Turn.objects.filter(pk=turn_id).update, lease_until_ms=services.now_ms() - 1)
    await dispatcher.sweep()
    frames += await frames_until(communicator, "turn.failed", timeout=5)
    # This worker's next renewal finds it no longer holds the turn: it stops writing and sending.
    await dispatcher.checkpoint()
    await asyncio.sleep(0.3)
    with pytest.raises(asyncio.TimeoutError):
        while True:
            frame = await communicator.receive_json_from(timeout=0.5)
            assert frame["type"] not in ("turn.completed", "llm.final"), frame

    turn = await run_db(Turn.objects.get, pk=turn_id)
    assert turn.status == "interrupted"
    assert frames[-1]["data"]["status"] == "interrupted"
    assert not [t for t in dispatcher.live.values() if t.turn_id == turn_id]
    stored = await run_db(
        lambda: list(ConversationEvent.objects.filter(turn_id=turn_id).values_list("type", flat=True))
    )
    assert "turn.completed" not in stored


async def test_a_worker_that_cannot_renew_its_lease_stops_its_turn_before_it_expires(
    connected, frames_until, settings, monkeypatch
):
    settings.CHAT_OFFLINE_DELAY_SECONDS = 0.25  # a turn of about 3 s: longer than the lease
    settings.CHAT_TURN_LEASE_SECONDS = 1.0

    def database_down(**kwargs):
        raise RuntimeError("the database is unreachable")

    monkeypatch.setattr(services, "turns_checkpoint", database_down)
    communicator, _ = await connected()
    await communicator.send_json_to({"type": "chat.send", "prompt": LONG_PROMPT})
    frames = await frames_until(communicator, "turn.started", timeout=5)
    turn_id = frames[0]["data"]["turn_id"]

    # The turn stops itself (LeaseLost) within 80% of the lease, then any sweep interrupts it.
    frames += await frames_until(communicator, "turn.failed", timeout=5)
    assert "turn.completed" not in types(frames)
    assert types(frames).count("llm.delta") < 6  # it stopped streaming when it could not renew
    turn = await run_db(Turn.objects.get, pk=turn_id)
    assert turn.status == "interrupted"


async def test_a_checkpoint_renews_only_the_leases_that_are_due(chat_user, settings, monkeypatch):
    """Under load a tick renews the few turns a third into their lease, not every running turn."""
    settings.CHAT_TURN_LEASE_SECONDS = 15.0
    conversations = [await run_db(ConversationFactory, owner=chat_user) for _ in range(2)]
    turns = [
        await run_db(
            TurnFactory, conversation=c, seq=1, status=Turn.Status.RUNNING, worker=services.WORKER_ID, lease_until_ms=1
        )
        for c in conversations
    ]
    fresh, due = (LiveTurn(str(t.pk), str(t.conversation_id)) for t in turns)
    now = dispatcher_module.time.monotonic()
    fresh.renewed(now)  # just renewed: 12 s of its (80%) deadline left
    due.renewed(now - 6)  # renewed 6 s ago: 6 s left, under 0.8 - 1/3 of the lease
    monkeypatch.setattr(dispatcher, "live", {t.turn_id: t for t in (fresh, due)})

    assert await dispatcher.checkpoint()

    leases = dict(
        await run_db(
            lambda: list(Turn.objects.filter(pk__in=[t.pk for t in turns]).values_list("pk", "lease_until_ms"))
        )
    )
    assert leases[turns[0].pk] == 1  # not due: untouched
    assert leases[turns[1].pk] > 1
    assert due.lease_deadline > fresh.lease_deadline - 1


async def test_a_checkpoint_that_stores_text_renews_the_lease_with_its_chunk_and_no_write_of_its_own(
    chat_user, settings, monkeypatch, sql_log
):
    """One write per turn per checkpoint: the chunk carries the lease. The sweep judges a turn by its
    newest chunk's lease as well as its row's."""
    settings.CHAT_TURN_LEASE_SECONDS = 15.0
    conversation = await run_db(ConversationFactory, owner=chat_user)
    turn = await run_db(
        TurnFactory,
        conversation=conversation,
        seq=1,
        status=Turn.Status.RUNNING,
        worker=services.WORKER_ID,
        lease_until_ms=1,
    )
    live = LiveTurn(str(turn.pk), str(conversation.pk))
    now = dispatcher_module.time.monotonic()
    live.renewed(now - 6)  # due
    live.sent(
        frames.make(type="llm.delta", conv_id=conversation.pk, seq=5, data={"delta": "so far", "message_id": "m"})
    )
    monkeypatch.setattr(dispatcher, "live", {live.turn_id: live})
    sql_log.clear()

    assert await dispatcher.checkpoint()

    assert [sql.split(" (")[0] for sql in writes(sql_log)] == ['INSERT INTO "chat_turnchunk"'], sql_log
    assert live.lease_deadline > now + 10
    # Its row's lease is long past, its chunk's is not: no worker may take it.
    assert await run_db(services.turns_interrupt_expired) == []
    await run_db(TurnChunk.objects.filter(turn_id=turn.pk).update, lease_until_ms=1)
    swept = await run_db(services.turns_interrupt_expired)
    assert [(turn_id, text) for _, turn_id, text in swept] == [(str(turn.pk), "so far")]


async def test_a_turn_handed_to_a_busy_drain_runs_after_the_turn_it_runs_now(monkeypatch):
    """A submission that claimed its turn while the conversation's drain was still ending the turn before
    hands it to that drain, which runs it next: it is running already, so the queue would not find it."""
    ran, release = [], asyncio.Event()

    async def execute(turn, prepared):
        ran.append((turn, prepared))
        if len(ran) == 1:
            await release.wait()
        return False

    drains = dispatcher_module.Dispatcher(execute)
    drains.loop = asyncio.get_running_loop()  # the server loop (its timer is not needed here)
    monkeypatch.setattr(dispatcher_module.selectors, "turn_next_queued", lambda **kwargs: None)
    before, claimed = SimpleNamespace(pk="the turn before"), SimpleNamespace(pk="the claimed turn")
    task = await drains.kick("c1", first=before, prepared=None)
    await asyncio.sleep(0)

    assert await drains.kick("c1", first=claimed, prepared="what it runs on", claimed=True) is task
    assert drains.runs_here(claimed.pk)
    release.set()
    await asyncio.wait_for(task, 5)

    assert ran == [(before, None), (claimed, "what it runs on")]
    assert not drains.runs_here(claimed.pk)  # it ran to its end


async def test_any_worker_sweeps_expired_leases_on_its_timer_and_the_queue_goes_on(
    connected, chat_user, settings, fast_turns, wait_turn
):
    settings.CHAT_TURN_LEASE_SECONDS = 0.6
    await connected()  # a serving process: its timer runs
    conversation = await run_db(ConversationFactory, owner=chat_user, mount="chat")
    dead = await run_db(
        TurnFactory,
        conversation=conversation,
        seq=1,
        status="running",
        worker="gone:1:x",
        text="partial answer",
        lease_until_ms=services.now_ms() + 300,  # still valid now: nobody may take it yet
    )
    await run_db(Conversation.objects.filter(pk=conversation.pk).update, active_turn=dead)
    waiting = await run_db(TurnFactory, conversation=conversation, seq=2, prompt="are you there?")
    assert (await run_db(Turn.objects.get, pk=dead.pk)).status == "running"

    # no message, no restart: the timer finds the expired lease
    interrupted = await wait_turn(dead.pk, statuses=("interrupted",), timeout=5)
    assert interrupted.text == "partial answer"  # the last checkpoint is kept
    assert (await wait_turn(waiting.pk, timeout=5)).status == "completed"


@pytest.mark.concurrency
def test_two_workers_claiming_the_same_turn_one_wins(chat_user, seeded_registries):
    conversation = ConversationFactory(owner=chat_user, mount="chat")
    turn = TurnFactory(conversation=conversation, seq=1, prompt="once")
    barrier = threading.Barrier(4)
    results: list[tuple[str, bool]] = []

    def claim(worker: str) -> None:
        barrier.wait()
        try:
            results.append((worker, services.turn_start(turn=turn, record=None, worker=worker)))
        finally:
            from django.db import connection

            connection.close()

    threads = [threading.Thread(target=claim, args=(f"w{i}",)) for i in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)

    winners = [w for w, won in results if won]
    assert len(results) == 4 and len(winners) == 1
    turn.refresh_from_db()
    assert (turn.status, turn.worker) == ("running", winners[0])


def test_a_turn_interrupted_while_running_cannot_be_finished_as_completed(chat_user, seeded_registries):
    conversation = ConversationFactory(owner=chat_user, mount="chat")
    turn = TurnFactory(conversation=conversation, seq=1, prompt="race")
    assert services.turn_start(turn=turn, record=None, worker="w1")
    assert len(services.turns_mark_interrupted(turn_ids=[turn.pk])) == 1

    frame = frames.make(type="turn.completed", conv_id=conversation.pk, seq=9, data={})
    result = services.turn_finish(turn_id=turn.pk, status="completed", text="late", frames=[frame], worker="w1")

    turn.refresh_from_db()
    assert result.finished is False
    assert (turn.status, turn.text) == ("interrupted", "")
    assert not ConversationEvent.objects.filter(turn=turn).exists()


# --------------------------------------------------------------------------- replay


async def test_a_socket_joining_mid_turn_gets_the_snapshot_then_live_deltas_without_gap(
    connected, frames_until, settings, quiet_timer
):
    settings.CHAT_OFFLINE_DELAY_SECONDS = 0.03
    settings.CHAT_DELTA_COALESCE_SECONDS = 0.001
    conv_id = uuid.uuid4()
    first, _ = await connected(conv_id=conv_id)
    await first.send_json_to({"type": "chat.send", "prompt": LONG_PROMPT})
    seen = await frames_until(first, "llm.delta", timeout=5)
    seen += [await first.receive_json_from(timeout=5) for _ in range(3)]

    joined, _ = await connected(conv_id=conv_id, since_seq=0)
    replayed = await frames_until(joined, timeout=15)

    final = next(f["data"]["text"] for f in replayed if f["type"] == "llm.final")
    snapshot = [f for f in replayed if f["type"] == "llm.snapshot"]
    assert len(snapshot) == 1
    assert types(replayed)[:3] == ["chat.message", "turn.started", "llm.start"]
    after = replayed[replayed.index(snapshot[0]) + 1 :]
    deltas = "".join(f["data"]["delta"] for f in after if f["type"] == "llm.delta")
    assert snapshot[0]["data"]["text"] + deltas == final  # nothing missing, nothing twice
    seqs = [f["seq"] for f in replayed]
    assert seqs == sorted(seqs) and len(set(seqs)) == len(seqs)
    assert snapshot[0]["seq"] >= seen[-1]["seq"]


async def test_a_socket_frames_never_wait_for_the_one_sync_thread(connected, frames_until, quiet_timer, monkeypatch):
    """Channels' consumers close stale connections on the process's one sync thread before every
    handler, so every frame of every socket queued behind that thread; this consumer has no connection there."""
    hops = []

    async def counted() -> None:
        hops.append(1)

    monkeypatch.setattr(channels.consumer, "aclose_old_connections", counted)
    communicator, _ = await connected()

    await communicator.send_json_to({"type": "chat.send", "prompt": "2 + 2"})
    frames_sent = await frames_until(communicator, timeout=20)

    assert types(frames_sent)[-1] == "turn.completed" and len(frames_sent) >= 5
    assert hops == []


def layer_messages(monkeypatch) -> list[str]:
    """The types of the messages sent to groups of the channel layer from now on."""
    layer, asked = get_channel_layer(), []
    original = layer.group_send

    async def recording(group, message):
        asked.append(message["type"])
        return await original(group, message)

    monkeypatch.setattr(layer, "group_send", recording)
    return asked


def running_turn(owner) -> tuple[Conversation, Turn]:
    """A conversation whose active turn is running (as stored; no process runs it here)."""
    conversation = ConversationFactory(owner=owner, mount="chat")
    turn = TurnFactory(conversation=conversation, status=Turn.Status.RUNNING)
    Conversation.objects.filter(pk=conversation.pk).update(active_turn=turn)
    return conversation, turn


async def test_a_replay_of_a_turn_running_in_this_process_does_not_ask_through_the_channel_layer(
    connected, frames_until, settings, quiet_timer, monkeypatch
):
    settings.CHAT_OFFLINE_DELAY_SECONDS = 0.03
    conv_id = uuid.uuid4()
    first, _ = await connected(conv_id=conv_id)
    await first.send_json_to({"type": "chat.send", "prompt": LONG_PROMPT})
    await frames_until(first, "llm.delta", timeout=5)
    asked = layer_messages(monkeypatch)

    live = await dispatcher.ask_replay(conv_id)

    assert live is not None and live["message"] is not None  # the text so far of the streaming message
    assert "turn.replay" not in asked
    await frames_until(first, timeout=15)


async def test_a_socket_joining_a_turn_running_here_reads_only_the_stored_frames(
    connected, frames_until, settings, quiet_timer, sql_log
):
    """The replay does not look whether a turn runs (the conversation's row) when it runs in this
    process: one read, the stored frames, and the turn's own replay for the rest."""
    settings.CHAT_OFFLINE_DELAY_SECONDS = 0.03
    conv_id = uuid.uuid4()
    first, _ = await connected(conv_id=conv_id)
    await first.send_json_to({"type": "chat.send", "prompt": LONG_PROMPT})
    await frames_until(first, "llm.delta", timeout=5)
    sql_log.clear()

    page = await replay.replay(conv_id, 0)

    reads = [sql for sql in sql_log if sql.lstrip().upper().startswith("SELECT")]
    assert [frame["type"] for frame in page.frames][-1] == "llm.snapshot"
    assert len(reads) == 1 and 'FROM "chat_conversationevent"' in reads[0], sql_log
    await frames_until(first, timeout=15)


async def test_on_one_process_a_replay_of_a_turn_not_registered_here_asks_nobody(
    connected, chat_user, quiet_timer, monkeypatch
):
    """With the in-memory layer every turn runs in this process: a conversation whose turn is claimed but
    not registered here yet (or any more) has its frames stored. Asking the layer waited for an answer
    nobody would send (0.4 s, up to 2 s: streamed completions waited that long for their first chunk)."""
    await connected()  # the server loop is this one
    conversation, _ = await run_db(running_turn, chat_user)
    asked = layer_messages(monkeypatch)

    live = await dispatcher.ask_replay(conversation.pk)

    assert live is None
    assert "turn.replay" not in asked


async def test_a_replay_while_the_turn_here_has_published_nothing_yet_keeps_every_stored_frame(
    connected, chat_user, quiet_timer
):
    """Claimed and registered, its first frames stored but not sent yet: the replay has every stored
    frame (the live copies that follow are dropped by seq); it had none (`upto` 0)."""
    from chat.replay import replay

    await connected()
    conversation, turn = await run_db(running_turn, chat_user)
    message = frames.make(type="chat.message", conv_id=conversation.pk, seq=1, data={"turn_id": str(turn.pk)})
    await run_db(services.events_store, conv_id=conversation.pk, frames=[message], turn_id=turn.pk)

    async with dispatcher.running(LiveTurn(str(turn.pk), str(conversation.pk))):
        page = await replay(conversation.pk, 0)

    assert [f["seq"] for f in page.frames] == [1]
    assert page.next_since_seq == 1


async def test_asking_a_replay_stops_when_the_turn_has_ended_and_nobody_answers(chat_user, settings, monkeypatch):
    """A turn that ended between the look at the conversation and the request: nobody answers, and the
    ask does not wait out its whole timeout for it (it did: completions waited 2 s for their first chunk)."""
    monkeypatch.setattr(control, "REPLAY_TIMEOUT_SECONDS", 60.0)
    conversation = await run_db(ConversationFactory, owner=chat_user, mount="chat")  # no running turn

    live = await asyncio.wait_for(dispatcher.ask_replay(conversation.pk), timeout=10)

    assert live is None


async def test_the_detail_says_from_which_seq_to_replay(chat_api, chat_user, connected, frames_until, fast_turns):
    communicator, hello = await connected()
    await communicator.send_json_to({"type": "chat.send", "prompt": "hi"})
    frames = await frames_until(communicator)

    detail = await run_db(lambda: chat_api.get(f"/api/chat/conversations/{hello['conv_id']}").json())

    assert detail["last_seq"] == frames[-1]["seq"]  # every frame up to it is in the stored turns


async def test_a_queue_left_behind_is_restarted_by_the_timer(
    connected, chat_user, settings, fast_turns, monkeypatch, wait_turn
):
    monkeypatch.setattr(dispatcher_module, "RECOVER_SECONDS", 0.2)
    settings.CHAT_TURN_LEASE_SECONDS = 0.6  # a tick every 0.2 s
    await connected()  # a serving process: its timer runs (and has done its start-up recovery)
    conversation = await run_db(ConversationFactory, owner=chat_user, mount="chat")
    # queued, nothing running, and nobody kicked it (as when a drain stopped on a database error)
    stranded = await run_db(TurnFactory, conversation=conversation, seq=1, prompt="anyone?")

    assert (await wait_turn(stranded.pk, timeout=5)).status == "completed"


@pytest.mark.backends
async def test_a_completion_in_a_new_conversation_resolves_its_model_once_commits_twice_and_reads_no_answer(
    chat_user, sql_log, commits, quiet_timer, monkeypatch
):
    """The gateway resolves the model (with its overrides) once, in the write that stores the new
    conversation with its first turn, claimed (one transaction, with the reservation of the numbers its
    frames got before it existed), and the turn runs on it; a first turn reads no history, and the answer
    is its terminal frame with the identity its submission stored: no read after its end (this process
    runs it). 9 statements on either backend, in three trips to the database threads: the request's
    authentication, the submission, the finish."""
    from chat import aio

    from .test_gateway import asgi_post, read_body

    token = (await run_db(Token.objects.create, user=chat_user)).key
    body = {"model": "agent", "messages": [{"role": "user", "content": "2 + 2"}]}
    communicator, headers = await asgi_post(chat_user, body, token)  # the runtime is built and cached
    await read_body(communicator)
    assert headers[":status"] == 200
    sql_log.clear()
    commits.count = 0
    trips: list[str] = []
    cleanly = aio._cleanly

    def counted(fn, args, kwargs):
        trips.append(getattr(fn, "__name__", repr(fn)))
        return cleanly(fn, args, kwargs)

    monkeypatch.setattr(aio, "_cleanly", counted)

    communicator, headers = await asgi_post(chat_user, body, token)
    await read_body(communicator)

    assert headers[":status"] == 200
    assert trips == ["initial", "_commit", "_commit"], trips  # authentication, the submission, the finish
    statements = [sql.lstrip().split()[0].upper() for sql in sql_log]
    assert commits.count == 2, sql_log  # the conversation with its turn claimed, the finish
    assert len([sql for sql in sql_log if 'FROM "profiles_profile"' in sql]) == 1, sql_log
    assert not [sql for sql in sql_log if 'SELECT "chat_turn"."prompt", "chat_turn"."text"' in sql]  # history
    assert mark_statements(sql_log) == []
    assert not [sql for sql in sql_log if sql.startswith('SELECT "chat_turn"."id", "chat_turn"."text"')]  # answer
    assert not [sql for sql in sql_log if 'FROM "chat_conversationevent"' in sql]  # its stored terminal frame
    assert len(statements) - statements.count("BEGIN") == 9, "\n".join(sql[:120] for sql in sql_log)
    conv_id = headers["x-conversation-id"]
    conversation = await run_db(Conversation.objects.get, pk=conv_id)
    seqs = await run_db(
        lambda: list(ConversationEvent.objects.filter(conversation_id=conv_id).values_list("seq", flat=True))
    )
    assert seqs and conversation.last_seq >= max(seqs)  # a restarted counter starts above them


def _vm_steps(action) -> int:
    """SQLite virtual-machine steps (in hundreds) that `action` makes on this thread's connection."""
    steps = [0]

    def count() -> int:
        steps[0] += 1
        return 0

    connection.ensure_connection()
    connection.connection.set_progress_handler(count, 100)
    try:
        action()
    finally:
        connection.connection.set_progress_handler(None, 100)
    return steps[0]


@pytest.mark.django_db(transaction=True)
def test_submitting_and_finishing_a_turn_reads_no_other_turn_of_a_long_conversation(chat_user):
    """The submission's counts (last seq, turns waiting) and the finish's look for a queued turn read the
    conversation's row: the work SQLite does is the same in a conversation of 10 turns or of 3,000."""
    if connection.vendor != "sqlite":
        pytest.skip("counts SQLite's virtual-machine steps")

    def turn_in(earlier: int) -> int:
        conversation = ConversationFactory(owner=chat_user, mount="chat")
        Turn.objects.bulk_create(
            Turn(conversation=conversation, seq=seq, prompt="q", text="a", status="completed", created_at_ms=seq)
            for seq in range(1, earlier + 1)
        )
        turns_counted(conversation)

        def submit_and_finish() -> None:
            turn = services.turn_submit(conversation=conversation, user=chat_user, prompt="now?").turn
            assert services.turn_start(turn=turn, record=None, worker="w1")
            assert services.turn_finish(turn_id=turn.pk, status="completed", text="ok", worker="w1").finished

        return _vm_steps(submit_and_finish)

    short, long = turn_in(10), turn_in(3000)
    assert long <= short + 5, (short, long)  # a scan of 3,000 turns would be hundreds more
