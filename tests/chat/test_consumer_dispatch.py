"""How a socket's messages reach its handlers (`chat.consumers.dispatch_from`): no database, plain queues."""

from __future__ import annotations

import asyncio

import pytest
from channels.exceptions import StopConsumer

from chat.consumers import dispatch_from


class Source:
    """A message source like a socket's ASGI receive or its channel-layer receive."""

    def __init__(self, *messages: object) -> None:
        self.queue: asyncio.Queue = asyncio.Queue()
        self.cancelled = False
        for message in messages:
            self.queue.put_nowait(message)

    async def __call__(self) -> object:
        try:
            return await self.queue.get()
        except asyncio.CancelledError:
            self.cancelled = True
            raise


async def test_messages_that_came_together_are_dispatched_without_yielding_to_the_loop():
    """Frames that reached the channel together are handled in one go (their socket writes go out
    together): nothing else on the loop runs between them. Channels' `await_many_dispatch` made each a
    task of its own, so other callbacks ran between them."""
    frames = Source("f1", "f2", "f3")
    handled: list[object] = []

    async def dispatch(message: object) -> None:
        handled.append(message)
        if message == "stop":
            raise StopConsumer

    async def run() -> None:
        with pytest.raises(StopConsumer):
            await dispatch_from([Source(), frames], dispatch)

    task = asyncio.ensure_future(run())
    await asyncio.sleep(0)  # the pumps start
    asyncio.get_running_loop().call_soon(handled.append, "other work")
    await asyncio.sleep(0.01)
    frames.queue.put_nowait("stop")
    await asyncio.wait_for(task, 5)

    assert handled[:3] == ["f1", "f2", "f3"]
    assert handled.index("other work") == 3


async def test_one_message_is_dispatched_at_a_time_whatever_its_source():
    socket, channel = Source("s1", "s2"), Source("c1", "c2")
    running: list[object] = []
    overlaps: list[tuple[object, object]] = []
    done: list[object] = []

    async def dispatch(message: object) -> None:
        if running:
            overlaps.append((running[0], message))
        running.append(message)
        await asyncio.sleep(0.001)  # a handler that waits (a database call)
        running.remove(message)
        done.append(message)
        if len(done) == 4:
            raise StopConsumer

    with pytest.raises(StopConsumer):
        await asyncio.wait_for(dispatch_from([socket, channel], dispatch), 5)

    assert overlaps == []
    assert [m for m in done if m in ("s1", "s2")] == ["s1", "s2"]  # each source in its order
    assert [m for m in done if m in ("c1", "c2")] == ["c1", "c2"]


async def test_a_handlers_error_ends_the_dispatch_and_cancels_the_other_sources_receive():
    socket, channel = Source("boom"), Source()

    async def dispatch(message: object) -> None:
        raise ValueError(f"no handler for {message}")

    with pytest.raises(ValueError, match="no handler for boom"):
        await asyncio.wait_for(dispatch_from([socket, channel], dispatch), 5)

    assert channel.cancelled
