"""Group commit (chat.writer): the submissions, claims and finishes of concurrent turns share
transactions, each write keeping its own rule (savepoints)."""

from __future__ import annotations

import asyncio
import functools
import threading

import pytest
from django.db import connection, transaction
from django.db.backends.base.base import BaseDatabaseWrapper
from django.db.backends.utils import CursorWrapper

from chat import services
from chat.aio import run_db
from chat.models import Conversation, Turn
from chat.mounts import CHAT_MOUNT
from chat.services import conversation_build
from chat.writer import writer
from profiles.errors import Conflict
from profiles.selectors import profile_resolve

from .factories import ConversationFactory, TurnFactory

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("seeded_registries")]
WRITES = ("INSERT", "UPDATE", "DELETE")


@pytest.fixture
def write_transactions(monkeypatch) -> list[int]:
    """Transactions that wrote, on any thread: committed atomic blocks with a write, and writes made in
    autocommit mode (each its own transaction)."""
    count = [0]
    wrote = threading.local()
    original_execute, original_commit = CursorWrapper._execute_with_wrappers, BaseDatabaseWrapper.commit

    def execute(self, sql, params, many, executor):
        if sql.lstrip().upper().startswith(WRITES):
            if self.db.get_autocommit():
                count[0] += 1
            else:
                wrote.flag = True
        return original_execute(self, sql, params, many, executor)

    def commit(self):
        if getattr(wrote, "flag", False):
            count[0] += 1
            wrote.flag = False
        return original_commit(self)

    monkeypatch.setattr(CursorWrapper, "_execute_with_wrappers", execute)
    monkeypatch.setattr(BaseDatabaseWrapper, "commit", commit)
    return count


async def test_concurrent_turns_share_their_write_transactions(connected, frames_until, settings, write_transactions):
    settings.CHAT_CHECKPOINT_SECONDS = 60  # no checkpoint during these short turns
    settings.CHAT_TURN_LEASE_SECONDS = 600
    sockets = [(await connected())[0] for _ in range(10)]
    for communicator in sockets:  # numbered once: the reservation writes of new conversations are not counted
        await communicator.send_json_to({"type": "ws.ping"})
        await communicator.receive_json_from(timeout=5)
    write_transactions[0] = 0
    batches = writer.batches

    await asyncio.gather(*(c.send_json_to({"type": "chat.send", "prompt": "2 + 2"}) for c in sockets))
    ends = await asyncio.gather(*(frames_until(c, timeout=20) for c in sockets))

    assert [frames[-1]["type"] for frames in ends] == ["turn.completed"] * 10
    # 10 turns x 3 writes (submission, claim, finish) would be 30 transactions one by one.
    assert writer.batches > batches
    # 30 writes + 10 reservations of the sequencer (autocommit): 40 transactions one by one; batched,
    # far fewer (13 to 24 measured here, depending on how the turns' steps interleave).
    assert write_transactions[0] < 30, write_transactions[0]


async def test_a_write_rolled_back_in_a_batch_takes_only_its_own_rows(chat_user, connected, settings):
    """Two claims in one batch: one wins; the other's turn is not queued any more (another is), so it
    rolls back after it had claimed its conversation, and that conversation stays free, its queue counted."""
    settings.CHAT_WRITE_BATCH_MS = 50  # both writes join one batch
    await connected()  # a serving loop: the writer batches
    first, second = [await run_db(ConversationFactory, owner=chat_user, mount="chat") for _ in range(2)]
    queued = await run_db(TurnFactory, conversation=first, seq=1, prompt="a")
    gone = await run_db(TurnFactory, conversation=second, seq=1, prompt="b", status="cancelled")
    await run_db(TurnFactory, conversation=second, seq=2, prompt="c")
    batches = writer.batches

    claimed = await asyncio.gather(
        writer.write(services.turn_start, key=second.pk, turn=gone, record=None, worker="w1"),
        writer.write(services.turn_start, key=first.pk, turn=queued, record=None, worker="w1"),
    )

    assert claimed == [False, True]  # each outcome to its own caller, whatever the order of the writes
    assert writer.batches == batches + 1  # one transaction for both
    assert await run_db(lambda: Conversation.objects.get(pk=first.pk).active_turn_id) == queued.pk
    assert await run_db(lambda: Conversation.objects.get(pk=second.pk).active_turn_id) is None
    assert await run_db(lambda: Conversation.objects.get(pk=second.pk).queued_turns) == 1


def _titled(*, conv_id, title: str, fail: bool = False) -> str:
    """A write that stores a title, then fails after it when told to."""
    with transaction.atomic():
        Conversation.objects.filter(pk=conv_id).update(title=title)
        if fail:
            raise Conflict("refused after writing", field="title")
    return title


@pytest.fixture
def write_statements() -> list[str]:
    """The statements run inside the writes (and their atomic blocks) given to `recorded`."""
    return []


def recording(statements: list[str]):
    def record(execute, sql, params, many, context):
        statements.append(sql.split()[0].upper())
        return execute(sql, params, many, context)

    def recorded(**kwargs):
        with connection.execute_wrapper(record):
            return _titled(**kwargs)

    return recorded


async def titled_conversations(owner, count: int) -> list[Conversation]:
    """`count` conversations titled "before", in the order a batch runs their writes."""
    convs = [await run_db(ConversationFactory, owner=owner, mount="chat", title="before") for _ in range(count)]
    return sorted(convs, key=lambda c: str(c.pk))


def titles_of(convs: list[Conversation]) -> dict:
    return dict(Conversation.objects.filter(pk__in=[c.pk for c in convs]).values_list("pk", "title"))


async def test_a_batch_whose_writes_succeed_sends_no_savepoint(chat_user, connected, settings, write_statements):
    """Each write's atomic block joins the batch's transaction: no SAVEPOINT (a round trip each) when
    nothing fails."""
    settings.CHAT_WRITE_BATCH_MS = 50  # the writes join one batch
    await connected()  # a serving loop: the writer batches
    convs = await titled_conversations(chat_user, 3)
    recorded = recording(write_statements)
    batches = writer.batches

    outcomes = await asyncio.gather(
        *(writer.write(recorded, key=c.pk, conv_id=c.pk, title=f"t{i}") for i, c in enumerate(convs))
    )

    assert outcomes == ["t0", "t1", "t2"]
    assert writer.batches == batches + 1
    assert await run_db(titles_of, convs) == {c.pk: f"t{i}" for i, c in enumerate(convs)}
    assert write_statements == ["UPDATE"] * 3  # no SAVEPOINT, no RELEASE


async def test_a_write_that_fails_in_a_batch_has_it_run_again_with_savepoints_kept_until_the_commit(
    chat_user, connected, settings, write_statements
):
    """The batch rolls back and runs again, each write in a savepoint that is not released (no RELEASE
    per write): the failing write, between two that succeed, rolls back to its own savepoint, and each
    caller gets its own outcome."""
    settings.CHAT_WRITE_BATCH_MS = 50  # the three writes join one batch
    await connected()  # a serving loop: the writer batches
    convs = await titled_conversations(chat_user, 3)
    first, failing, last = convs
    recorded = recording(write_statements)
    batches = writer.batches

    outcomes = await asyncio.gather(
        writer.write(recorded, key=last.pk, conv_id=last.pk, title="last"),
        writer.write(recorded, key=failing.pk, conv_id=failing.pk, title="lost", fail=True),
        writer.write(recorded, key=first.pk, conv_id=first.pk, title="first"),
        return_exceptions=True,
    )

    assert outcomes[0] == "last" and outcomes[2] == "first"
    assert isinstance(outcomes[1], Conflict)
    assert writer.batches == batches + 1
    assert await run_db(titles_of, convs) == {first.pk: "first", failing.pk: "before", last.pk: "last"}
    first_try, second_try = write_statements[:2], write_statements[2:]
    assert first_try == ["UPDATE", "UPDATE"]  # the first write, then the one that failed: the batch stops
    assert second_try.count("SAVEPOINT") == 3 and second_try.count("ROLLBACK") == 1
    assert "RELEASE" not in second_try, write_statements


async def test_a_new_conversation_whose_batch_ran_again_is_stored_once_with_its_turn(chat_user, connected, settings):
    """The first try stored the new conversation (its instance marked saved) before the batch rolled back:
    the instance is put back unsaved, so the second try inserts it again with its turn."""
    settings.CHAT_WRITE_BATCH_MS = 50  # both writes join one batch
    await connected()  # a serving loop: the writer batches
    (failing,) = await titled_conversations(chat_user, 1)
    new = conversation_build(owner=chat_user, mount=CHAT_MOUNT, profile="agent", resolved_by_submission=True)
    resolve = functools.partial(profile_resolve, registry_slug="default", profile_slug="agent", user=chat_user)

    submitted, refused = await asyncio.gather(
        writer.write(services.turn_submit, key=new.pk, conversation=new, user=chat_user, prompt="hi", resolve=resolve),
        writer.write(_titled, key=failing.pk, conv_id=failing.pk, title="lost", fail=True),
        return_exceptions=True,
    )

    assert isinstance(refused, Conflict)
    assert submitted.created, submitted
    stored = await run_db(lambda: list(Turn.objects.filter(conversation_id=new.pk).values_list("prompt", flat=True)))
    assert stored == ["hi"]
    assert not new._state.adding


@pytest.fixture
def inserts(monkeypatch) -> list[str]:
    """The tables of every INSERT, on any thread."""
    log: list[str] = []
    original = CursorWrapper._execute_with_wrappers

    def recording_inserts(self, sql, params, many, executor):
        if sql.lstrip().upper().startswith("INSERT"):
            log.append(sql.split()[2].strip('"'))
        return original(self, sql, params, many, executor)

    monkeypatch.setattr(CursorWrapper, "_execute_with_wrappers", recording_inserts)
    return log


async def test_the_turns_and_frames_of_a_batchs_submissions_are_inserted_in_one_statement_each(
    chat_user, connected, settings, inserts
):
    settings.CHAT_WRITE_BATCH_MS = 50  # the submissions join one batch
    await connected()  # a serving loop: the writer batches
    convs = await titled_conversations(chat_user, 4)
    batches = writer.batches
    inserts.clear()

    submitted = await asyncio.gather(
        *(
            writer.write(services.turn_submit, key=c.pk, conversation=c, user=chat_user, prompt=f"q{i}", message_seq=1)
            for i, c in enumerate(convs)
        )
    )

    assert writer.batches == batches + 1
    assert inserts == ["chat_turn", "chat_conversationevent"], inserts
    stored = await run_db(
        lambda: sorted(Turn.objects.filter(conversation__in=convs).values_list("prompt", "events__type"))
    )
    assert stored == [(f"q{i}", "chat.message") for i in range(4)]
    assert [s.turn.seq for s in submitted] == [1, 1, 1, 1]


async def test_an_idempotency_key_sent_twice_in_one_batch_makes_one_turn(chat_user, connected, settings):
    """The second submission's lookup inserts the first's held turn before it reads: it is told the turn
    exists (held, it would not see it; the unique key would then make the batch run again)."""
    settings.CHAT_WRITE_BATCH_MS = 50  # both submissions join one batch
    await connected()  # a serving loop: the writer batches
    (conversation,) = await titled_conversations(chat_user, 1)

    def send():
        return writer.write(
            services.turn_submit, key=conversation.pk, conversation=conversation, user=chat_user, prompt="once",
            idempotency_key="k",
        )  # fmt: skip

    first, second = await asyncio.gather(send(), send())

    assert (first.created, second.created) == (True, False)
    assert first.turn.pk == second.turn.pk
    assert await run_db(Turn.objects.filter(conversation=conversation).count) == 1


async def test_a_budget_counts_the_reservations_of_the_earlier_writes_of_its_batch(chat_user, connected, settings):
    """The admission's sum reads the turns the batch holds (inserted first): a budget that two
    reservations use up (a turn is admitted while less than its amount is used) refuses the third
    submission of one batch, as one by one."""
    from chat.billing.budgets import BudgetExceeded, budget_create, table

    from .factories import UserFactory

    settings.CHAT_WRITE_BATCH_MS = 50  # the submissions join one batch
    settings.CHAT_BUDGET_RESERVE_USD = 1.0  # what a turn reserves with no priced turn to estimate from
    staff = await run_db(UserFactory, username="finance", is_staff=True)
    scope = {"type": "user", "id": chat_user.pk}
    await run_db(budget_create, scope=scope, amount_usd=1.5, period="day", actor=staff)
    await run_db(table.clear)
    await connected()  # a serving loop: the writer batches
    convs = await titled_conversations(chat_user, 3)
    batches = writer.batches

    outcomes = await asyncio.gather(
        *(writer.write(services.turn_submit, key=c.pk, conversation=c, user=chat_user, prompt="q") for c in convs),
        return_exceptions=True,
    )

    assert writer.batches == batches + 1
    assert [type(o).__name__ for o in outcomes] == ["Submitted", "Submitted", BudgetExceeded.__name__], outcomes
