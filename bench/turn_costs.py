"""Figure 8: what one turn costs the database, in-process (no daphne).

The Django side runs in a subprocess (`python bench/turn_costs.py`, JSON spec on stdin, DATABASE_URL
set) through the production turn path, `chat.turns.turn_enqueue(...)` called without a server loop,
which runs the turn inline before returning. Queries are counted like CaptureQueriesContext does, on
every thread's connection (the worker runs ORM code on its own thread pools).

  - database writes (INSERT/UPDATE/DELETE) and written bytes (the write statements' text, values
    included) per turn at 10 and at 1,000 deltas, at delay 0 and at 20 ms between deltas (a 20 s answer:
    the checkpoint timer runs, as on a server: the turn runs on a served loop; a conversation's second
    turn), CHAT_DELTA_COALESCE_MS=0
    unless the environment sets it, so every engine delta is one llm.delta frame;
  - stored bytes per turn (the turn row's text + its stored event frames' JSON) at 1 KB and 100 KB answers
    (the openai engine against bench/fake_llm.py: exact sizes, ~100-byte deltas);
  - turn time and queries per turn as the conversation grows to 10, 100, 1,000 earlier completed turns
    (offline engine, delay 0).
"""

from __future__ import annotations

import json
import os
import statistics
import sys
import time
import uuid
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.report import Row  # noqa: E402
from bench.servers import Unavailable, base_env, run_json  # noqa: E402

SHAPES = [(10, 1024), (1000, 102_400)]  # (deltas, answer bytes)
# (deltas, answer bytes, ms between deltas): the paced 1,000-delta turn lasts 20 s (4 s in quick mode).
PACED = [(10, 1024, 0), (1000, 102_400, 0), (10, 1024, 20), (1000, 102_400, 20)]
PACED_QUICK = [(10, 1024, 0), (1000, 102_400, 0), (10, 1024, 20), (200, 102_400, 20)]
HISTORY = [10, 100, 1000]
WRITE_PREFIXES = ("INSERT", "UPDATE", "DELETE")
TRANSACTION_CONTROL = ("BEGIN", "COMMIT", "ROLLBACK", "SAVEPOINT", "RELEASE")
CONCURRENT = [1, 20]  # turns submitted at once


# --------------------------------------------------------------------------- orchestrator side


def figure8(cfg, dbs) -> list[Row]:
    rows: list[Row] = []
    backends = ["sqlite"] if cfg.quick else ["sqlite", "postgres"]
    for name in backends:
        try:
            backend = dbs.backend(name)
        except Unavailable as exc:
            rows.append(Row.not_run(8, "turn costs in-process", backend="PostgreSQL", note=str(exc)))
            continue
        url = dbs.copy(backend)
        try:
            env = base_env(
                DATABASE_URL=url,
                CHAT_OFFLINE_DELAY_SECONDS="0",
                CHAT_DELTA_COALESCE_MS=os.environ.get("CHAT_DELTA_COALESCE_MS", "0"),
            )
            paced = PACED_QUICK if cfg.quick else PACED
            spec = {"runs": cfg.runs, "shapes": SHAPES, "history": HISTORY, "paced": paced, "concurrent": CONCURRENT}
            result = run_json(["bench/turn_costs.py"], env=env, timeout=600, stdin=json.dumps(spec))
        finally:
            dbs.drop(url)
        label = backend.label.split("+")[0]
        coalesce = env["CHAT_DELTA_COALESCE_MS"]
        print(f"  {label}: {json.dumps(result['summary'])}")
        (d_small, b_small), (d_big, b_big) = SHAPES
        small, big = result["shapes"][str(d_small)], result["shapes"][str(d_big)]
        note = f"coalesce {coalesce} ms"
        rows.append(Row(8, f"DB writes/turn, {d_small} deltas", label, "writes", small["writes"], goal="—", note=note))
        rows.append(
            Row(
                8,
                f"DB writes/turn, {d_big:,} deltas",
                label,
                "writes",
                big["writes"],
                baseline=small["writes"],
                baseline_label=f"{d_small} deltas",
                ratio="value/base",
                goal="—",
                note=note,
            )
        )
        for shape, size in ((small, b_small), (big, b_big)):
            rows.append(
                Row(
                    8,
                    f"stored bytes/turn, {size // 1024} KB answer",
                    label,
                    "bytes",
                    shape["stored"],
                    baseline=[size] * len(shape["stored"]),
                    baseline_label="answer bytes",
                    ratio="value/base",
                    goal="—",
                    note=f"llm.delta rows stored: {shape['deltas']}",
                )
            )
        for deltas, size, delay in spec["paced"]:
            point = result["paced"][f"{deltas}/{delay}"]
            what = f"{deltas:,} deltas, {delay} ms apart, {size // 1024} KB"
            paced_goal = bool(deltas >= 200 and delay)
            rows.append(
                Row(
                    8,
                    f"writes/turn, {what}",
                    label,
                    "writes",
                    point["writes"],
                    goal="≤ 12" if paced_goal else "—",
                    checks=[("value", "<=", 12)] if paced_goal else [],
                    note="served loop",
                )
            )
            rows.append(
                Row(
                    8,
                    f"written bytes/turn, {what}",
                    label,
                    "bytes",
                    point["written"],
                    baseline=[size] * len(point["written"]),
                    baseline_label="answer bytes",
                    ratio="value/base",
                    goal="≤ 3x" if paced_goal else "—",
                    checks=[("ratio", "<=", 3)] if paced_goal else [],
                    note=f"write transactions {_median(point['transactions'])}, statements {_median(point['queries'])}",
                )
            )
        alone = result["concurrent"][str(CONCURRENT[0])]
        for count in CONCURRENT:
            runs = result["concurrent"][str(count)]
            together = f"{count} turns at once" if count > 1 else "1 turn alone"
            rows.append(
                Row(
                    8,
                    f"SQL statements/turn, {together} (served, socket path)",
                    label,
                    "statements",
                    [r["statements"] - r["await_reads"] for r in runs],
                    goal="≤ 10",
                    checks=[("value", "<=", 10)],
                    note=f"of which BEGIN/COMMIT/SAVEPOINT {_median([r['control'] for r in runs]):.1f}",
                )
            )
            rows.append(
                Row(
                    8,
                    f"write transactions/turn, {together} (served)",
                    label,
                    "transactions",
                    [r["transactions"] for r in runs],
                    baseline=None if count == CONCURRENT[0] else [r["transactions"] for r in alone],
                    baseline_label="1 turn alone",
                    ratio=None if count == CONCURRENT[0] else "value/base",
                    goal="≤ 1 (batched)" if count > 1 else "—",
                    checks=[("value", "<=", 1)] if count > 1 else [],
                )
            )
        base = result["history"][str(HISTORY[0])]
        for count in HISTORY:
            point = result["history"][str(count)]
            first = count == HISTORY[0]
            rows.append(
                Row(
                    8,
                    f"turn time, {count:,} earlier turns",
                    label,
                    "ms",
                    point["ms"],
                    baseline=None if first else base["ms"],
                    baseline_label=f"{HISTORY[0]} earlier",
                    ratio=None if first else "value/base",
                    goal="—",
                )
            )
            rows.append(
                Row(
                    8,
                    f"queries/turn, {count:,} earlier turns",
                    label,
                    "queries",
                    point["queries"],
                    baseline=None if first else base["queries"],
                    baseline_label=f"{HISTORY[0]} earlier",
                    ratio=None if first else "value/base",
                    goal="—",
                    note=f"writes {_median(point['writes'])}",
                )
            )
    return rows


def _median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


# --------------------------------------------------------------------------- Django side (subprocess)


class CaptureAllThreads:
    """django.test.utils.CaptureQueriesContext for the connections of EVERY thread.

    The worker runs ORM code on its own thread pools (chat.aio), so the calling thread's connection
    sees none of a turn's queries. While active, every connection logs its queries (Django's
    `queries_logged`, what CaptureQueriesContext's force_debug_cursor turns on, for all of them) into
    its own unbounded log; `captured_queries` gathers them from every thread."""

    def __enter__(self) -> CaptureAllThreads:
        import threading
        from collections import deque

        from django.db import connection
        from django.db.backends.base.base import BaseDatabaseWrapper

        self._lock, self._seen, self._class = threading.Lock(), {}, BaseDatabaseWrapper
        self._original = BaseDatabaseWrapper.__dict__["queries_logged"]
        capture = self

        def queries_logged(wrapper) -> bool:
            with capture._lock:
                if id(wrapper) not in capture._seen:
                    wrapper.queries_log = deque(maxlen=10_000_000)  # the default keeps 9,000
                    capture._seen[id(wrapper)] = wrapper
            return True

        BaseDatabaseWrapper.queries_logged = property(queries_logged)
        if not _in_event_loop():  # on a loop, every query runs on a worker thread
            connection.ensure_connection()
        return self

    def __exit__(self, *exc: object) -> None:
        self._class.queries_logged = self._original
        self.captured_queries = [q for wrapper in self._seen.values() for q in wrapper.queries_log]
        for wrapper in self._seen.values():
            wrapper.queries_log.clear()


def _in_event_loop() -> bool:
    import asyncio

    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return False
    return True


def _django_main(spec: dict[str, Any]) -> dict[str, Any]:
    from bench.fake_llm import FakeLLM

    with FakeLLM() as llm:
        os.environ["OPENAI_BASE_URL"] = llm.base_url
        os.environ["OPENAI_API_KEY"] = "sk-bench-local"
        os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
        import django

        django.setup()
        return _measure_all(spec)


def _measure_all(spec: dict[str, Any]) -> dict[str, Any]:
    from asgiref.sync import async_to_sync
    from django.contrib.auth import get_user_model

    from bench.dbtool import prepare
    from chat import services, turns
    from chat.models import Conversation, ConversationEvent, Turn
    from chat.mounts import CHAT_MOUNT

    prepare({"openai_profile": True})
    user = get_user_model().objects.get(username="bench")

    def new_conversation(profile: str | None = None) -> Conversation:
        return services.conversation_create(owner=user, mount=CHAT_MOUNT, conv_id=uuid.uuid4(), profile=profile)

    def one_turn(conversation: Conversation, prompt: str) -> dict[str, Any]:
        with CaptureAllThreads() as captured:
            start = time.perf_counter()
            submitted = async_to_sync(turns.turn_enqueue)(conversation=conversation, user=user, prompt=prompt)
            seconds = time.perf_counter() - start
        turn = Turn.objects.get(pk=submitted.turn.pk)
        if turn.status != Turn.Status.COMPLETED:
            raise RuntimeError(f"turn ended {turn.status}: {turn.error}")
        sqls = [q["sql"].lstrip().upper() for q in captured.captured_queries]
        frames = ConversationEvent.objects.filter(turn_id=turn.pk).values_list("frame", flat=True)
        stored = len(turn.text.encode()) + sum(len(json.dumps(frame).encode()) for frame in frames)
        deltas = ConversationEvent.objects.filter(turn_id=turn.pk, type="llm.delta").count()
        return {
            "ms": seconds * 1000,
            "queries": len(sqls),
            "writes": sum(1 for sql in sqls if sql.startswith(WRITE_PREFIXES)),
            "stored": stored,
            "text": len(turn.text),
            "deltas": deltas,
        }

    def served_turn(conversation: Conversation, prompt: str) -> dict[str, Any]:
        """A turn on a served loop, as daphne runs it: the dispatcher's timer checkpoints and renews.
        Measured is the conversation's second turn: its first also reserves its block of frame numbers
        (one write per 10,000 frames, none when a socket or a completion created it)."""
        import asyncio

        from chat import selectors
        from chat.turns import dispatcher

        async def one(prompt: str) -> Any:
            submitted = await turns.turn_enqueue(conversation=conversation, user=user, prompt=prompt)
            return await turns.await_turn(
                conv_id=conversation.pk, turn_id=submitted.turn.pk, timeout=300, read=selectors.turn_if_finished
            )

        async def run() -> Any:
            dispatcher.bind(asyncio.get_running_loop())
            await one("n=1 bytes=16")
            with CaptureAllThreads() as captured, WriteTransactions() as transactions:
                return await one(prompt), captured, transactions

        turn, captured, transactions = asyncio.run(run())
        if turn is None or turn.status != Turn.Status.COMPLETED:
            raise RuntimeError(f"turn ended {getattr(turn, 'status', 'unfinished')}")
        sqls = [q["sql"].lstrip() for q in captured.captured_queries]
        written = [sql for sql in sqls if sql.upper().startswith(WRITE_PREFIXES)]
        return {
            "writes": len(written),
            "written": sum(len(sql.encode()) for sql in written),
            "queries": len(sqls),
            "transactions": transactions.count,
        }

    def served_together(count: int) -> dict[str, Any]:
        """`count` turns submitted at once in as many conversations (each past its first turn), on one
        served loop: statements and write transactions per turn when concurrent turns share the writer's
        batches."""
        import asyncio

        from chat import selectors
        from chat.turns import dispatcher

        conversations = [new_conversation() for _ in range(count)]
        reads = [0]

        def read(**kwargs: Any) -> Any:  # one statement each: await_turn's look at the stored turn
            reads[0] += 1
            return selectors.turn_if_finished(**kwargs)

        async def one(conversation: Conversation) -> Any:
            submitted = await turns.turn_enqueue(conversation=conversation, user=user, prompt="Hello there!")
            return await turns.await_turn(conv_id=conversation.pk, turn_id=submitted.turn.pk, timeout=300, read=read)

        async def run() -> tuple[list[Any], Any, Any]:
            dispatcher.bind(asyncio.get_running_loop())
            await asyncio.sleep(0.3)  # the timer's start-up recovery (a sweep) is not the turns' cost
            # A conversation's first turn also reserves its block of frame numbers: measured is the next one.
            await asyncio.gather(*(one(c) for c in conversations))
            reads[0] = 0
            with CaptureAllThreads() as captured, WriteTransactions() as transactions:
                ended = await asyncio.gather(*(one(c) for c in conversations))
            return ended, captured, transactions

        ended, captured, transactions = asyncio.run(run())
        if any(t is None or t.status != Turn.Status.COMPLETED for t in ended):
            raise RuntimeError("a concurrent turn did not complete")
        sqls = [q["sql"].lstrip().upper() for q in captured.captured_queries]
        # What a socket's turn costs: without await_turn's reads of the stored turn (REST/gateway only).
        waits = reads[0]
        control = sum(1 for sql in sqls if sql.startswith(TRANSACTION_CONTROL))
        return {
            "statements": len(sqls) / count,
            "control": control / count,
            "transactions": transactions.count / count,
            "await_reads": waits / count,
        }

    # Warm-up: the first turn of a process pays for imports and caches.
    one_turn(new_conversation(), "warm up")
    one_turn(new_conversation("bench-openai"), "n=5 bytes=100")

    out: dict[str, Any] = {"shapes": {}, "history": {}, "summary": {}}
    for deltas, size in spec["shapes"]:
        runs = [one_turn(new_conversation("bench-openai"), f"n={deltas} bytes={size}") for _ in range(spec["runs"])]
        if runs[0]["text"] != size:
            raise RuntimeError(f"expected a {size}-byte answer, the turn stored {runs[0]['text']}")
        out["shapes"][str(deltas)] = {
            "writes": [r["writes"] for r in runs],
            "queries": [r["queries"] for r in runs],
            "stored": [r["stored"] for r in runs],
            "deltas": runs[0]["deltas"],
        }
        out["summary"][f"{deltas} deltas"] = {"writes": runs[0]["writes"], "stored": runs[0]["stored"]}

    out["paced"] = {}
    for deltas, size, delay in spec.get("paced", []):
        runs = [
            served_turn(new_conversation("bench-openai"), f"n={deltas} bytes={size} delay_ms={delay}")
            for _ in range(spec["runs"])
        ]
        out["paced"][f"{deltas}/{delay}"] = {key: [r[key] for r in runs] for key in runs[0]}
        out["summary"][f"{deltas} deltas {delay} ms"] = runs[0]

    out["concurrent"] = {str(n): [served_together(n) for _ in range(spec["runs"])] for n in spec.get("concurrent", [])}

    stamp = services.now_ms() if hasattr(services, "now_ms") else int(time.time() * 1000)
    for count in spec["history"]:
        runs = []
        for _ in range(spec["runs"]):
            conversation = new_conversation()
            Turn.objects.bulk_create(
                [
                    Turn(
                        conversation=conversation,
                        seq=i + 1,
                        prompt=f"Earlier question number {i}?",
                        text=f"Earlier answer number {i}: " + "lorem ipsum " * 15,
                        status=Turn.Status.COMPLETED,
                        created_at_ms=stamp,
                        started_at_ms=stamp,
                        finished_at_ms=stamp,
                    )
                    for i in range(count)
                ],
                batch_size=500,
            )
            # the count the services keep on the row (turns stored here bypass them)
            Conversation.objects.filter(pk=conversation.pk).update(last_turn_seq=count)
            runs.append(one_turn(conversation, "Hello again, how are you today?"))
        out["history"][str(count)] = {
            "ms": [round(r["ms"], 2) for r in runs],
            "queries": [r["queries"] for r in runs],
            "writes": [r["writes"] for r in runs],
        }
        out["summary"][f"{count} earlier"] = {"ms": round(runs[0]["ms"], 1), "queries": runs[0]["queries"]}
    return out


class WriteTransactions:
    """Transactions that wrote, on every thread: commits after a write, and writes in autocommit mode
    (each its own transaction)."""

    def __enter__(self) -> WriteTransactions:
        import threading

        from django.db.backends.base.base import BaseDatabaseWrapper
        from django.db.backends.utils import CursorWrapper

        self.count, wrote, lock = 0, threading.local(), threading.Lock()
        self._patched = (
            CursorWrapper,
            CursorWrapper._execute_with_wrappers,
            BaseDatabaseWrapper,
            BaseDatabaseWrapper.commit,
        )
        execute, commit = self._patched[1], self._patched[3]
        outer = self

        def counting_execute(cursor, sql, params, many, executor):  # type: ignore[no-untyped-def]
            if sql.lstrip().upper().startswith(WRITE_PREFIXES):
                if cursor.db.get_autocommit():
                    with lock:
                        outer.count += 1
                else:
                    wrote.flag = True
            return execute(cursor, sql, params, many, executor)

        def counting_commit(db):  # type: ignore[no-untyped-def]
            if getattr(wrote, "flag", False):
                with lock:
                    outer.count += 1
                wrote.flag = False
            return commit(db)

        CursorWrapper._execute_with_wrappers = counting_execute
        BaseDatabaseWrapper.commit = counting_commit
        return self

    def __exit__(self, *exc: object) -> None:
        cursor_class, execute, wrapper_class, commit = self._patched
        cursor_class._execute_with_wrappers = execute
        wrapper_class.commit = commit


if __name__ == "__main__":
    print(json.dumps(_django_main(json.loads(sys.stdin.read() or "{}"))))
