"""Sending and following a conversation's frames (`chat.streams`), and waiting for a turn's end on them
(`chat.turns.await_turn`), on the in-memory channel layer."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from channels.layers import channel_layers
from django.db import OperationalError

from chat import frames, streams, turns

# The waits read the turn on the database pool, whose threads clean up their connections around it.
pytestmark = pytest.mark.django_db(transaction=True)

CONV, TURN = "0b7d3c52-5d1e-4f33-9a57-000000000001", "0b7d3c52-5d1e-4f33-9a57-0000000000aa"


def frame(seq: int, type: str, **data: Any) -> frames.Frame:
    return frames.make(type=type, conv_id=CONV, seq=seq, data={"turn_id": TURN, **data})


def a_turn(deltas: int) -> list[frames.Frame]:
    """A turn's frames as it sends them: the message, its deltas, the end."""
    sent = [frame(1, "chat.message", text="hi"), frame(2, "turn.started"), frame(3, "llm.start", message_id="m")]
    sent += [frame(4 + n, "llm.delta", delta="x", message_id="m") for n in range(deltas)]
    return [*sent, frame(4 + deltas, "turn.completed", status="completed")]


async def received(subscription: streams.Subscription) -> list[str]:
    """Every frame the subscription has now, by type."""
    types = []
    while (arrived := await subscription.next(0.05)) is not None:
        types.append(arrived["type"])
    return types


async def test_a_turns_waiters_get_its_end_and_its_followers_every_frame(fresh_layer):
    async with streams.Subscription(CONV) as follower, streams.Subscription(CONV, ends_only=True) as waiter:
        for sent in a_turn(deltas=3):
            assert await streams.fan_out(sent)

        assert await received(follower) == [f["type"] for f in a_turn(deltas=3)]
        assert await received(waiter) == ["turn.completed"]


@pytest.fixture
def receives(monkeypatch) -> list[str]:
    """The channels the layer delivered a message to, in order."""
    layer, delivered = channel_layers["default"], []
    original = layer.receive

    async def receive(channel: str) -> Any:
        message = await original(channel)
        delivered.append(channel)
        return message

    monkeypatch.setattr(layer, "receive", receive)
    return delivered


@pytest.fixture
async def background():
    """Start a coroutine as a task of the test; whatever is left of it is cancelled and awaited at the end,
    so a failing test leaves no wait behind."""
    started: list[asyncio.Task] = []

    def start(coroutine: Any) -> asyncio.Task:
        started.append(asyncio.create_task(coroutine))
        return started[-1]

    yield start
    for task in started:
        task.cancel()
    await asyncio.gather(*started, return_exceptions=True)


def end_status(end: frames.Frame) -> str:
    return end["data"]["status"]


async def subscribed(group: str) -> None:
    for _ in range(500):
        if channel_layers["default"].groups.get(group):
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"nobody joined {group}")


async def test_waiting_for_a_turn_wakes_once_at_its_end_not_at_each_delta(fresh_layer, receives, background):
    """`?wait=1`, a non-streamed completion and an evaluation case wait for the end alone: a long answer
    streamed to them frame by frame cost a wake-up (a task, a deep copy) per delta."""
    waiting = background(
        turns.await_turn(conv_id=CONV, turn_id=TURN, timeout=5, read=lambda **kwargs: None, ended=end_status)
    )
    await subscribed(frames.ends_group_name(CONV))  # its first read found the turn running
    for sent in a_turn(deltas=200):
        await streams.fan_out(sent)

    assert await asyncio.wait_for(waiting, 5) == "completed"
    assert len(receives) == 1, "one wake-up: the end"


class Reads:
    """A turn read, counted: it finds the turn running until `stored` is set; after `away_after` reads the
    database is away."""

    def __init__(self, away_after: int | None = None) -> None:
        self.count = 0
        self.stored: str | None = None
        self.away_after = away_after

    def __call__(self, **kwargs: Any) -> str | None:
        self.count += 1
        if self.away_after is not None and self.count > self.away_after:
            raise OperationalError("could not connect to server")
        return self.stored


@pytest.fixture
def short_silence(monkeypatch) -> None:
    monkeypatch.setattr(turns, "SILENCE_CHECK_SECONDS", 0.02)


async def test_a_silent_turn_running_elsewhere_is_read_after_each_silence(fresh_layer, short_silence):
    """Its end frame may be lost with the layer (Redis away): the stored turn tells."""
    read = Reads()
    assert await turns.await_turn(conv_id=CONV, turn_id=TURN, timeout=0.3, read=read) is None
    assert read.count >= 5


async def test_a_silent_turn_running_here_is_not_read_while_it_runs(
    fresh_layer, short_silence, monkeypatch, background
):
    """Its end comes through the subscription from this loop, and once it has run here `runs_here` is
    false again: a lost frame is still found by the next silence's read."""
    monkeypatch.setattr(turns.dispatcher, "loop", asyncio.get_running_loop())
    monkeypatch.setattr(turns.dispatcher, "_claimed", {TURN})
    read = Reads()
    assert await turns.await_turn(conv_id=CONV, turn_id=TURN, timeout=0.3, read=read) is None
    assert read.count == 0

    waiting = background(turns.await_turn(conv_id=CONV, turn_id=TURN, timeout=5, read=read))
    await subscribed(frames.ends_group_name(CONV))
    read.stored = "completed"
    turns.dispatcher._claimed.discard(TURN)  # it ran to its end here, and its end frame was lost
    assert await asyncio.wait_for(waiting, 2) == "completed"


async def test_the_database_away_at_a_silence_keeps_the_wait_for_the_end(fresh_layer, short_silence, background):
    """A read after a silence only looks for a lost end frame: with the database away the wait goes on
    (its turn does too) and the end frame answers it, as a completion's does."""
    read = Reads(away_after=1)  # the first look finds it running; then the database goes away
    waiting = background(turns.await_turn(conv_id=CONV, turn_id=TURN, timeout=5, read=read, ended=end_status))
    await subscribed(frames.ends_group_name(CONV))
    for _ in range(500):  # silences go by, each read failing
        if read.count >= 4 or waiting.done():
            break
        await asyncio.sleep(0.01)
    await streams.fan_out(a_turn(deltas=1)[-1])

    assert await asyncio.wait_for(waiting, 5) == "completed"


async def test_the_database_away_at_the_first_look_is_the_callers_error(fresh_layer):
    with pytest.raises(OperationalError):
        await turns.await_turn(conv_id=CONV, turn_id=TURN, timeout=1, read=Reads(away_after=0))
