"""chat.layers.InMemoryChannelLayer: channels' in-memory semantics, with a throttled expiry sweep.

Wall time (`time.time`, what channels stamps messages and memberships with) and the sweep's
monotonic clock (`chat.layers.monotonic`) are both faked, so nothing here sleeps or times.
"""

from __future__ import annotations

import asyncio
import time

import channels.layers
import pytest
from channels.exceptions import ChannelFull

import chat.layers
from chat.layers import InMemoryChannelLayer


class Clocks:
    def __init__(self) -> None:
        self.wall = 1_000_000.0
        self.mono = 500.0

    def advance(self, seconds: float) -> None:
        self.wall += seconds
        self.mono += seconds


@pytest.fixture
def clocks(monkeypatch) -> Clocks:
    fake = Clocks()
    monkeypatch.setattr(time, "time", lambda: fake.wall)
    monkeypatch.setattr(chat.layers, "monotonic", lambda: fake.mono)
    return fake


@pytest.fixture
def sweeps(monkeypatch) -> list[int]:
    """Counts runs of channels' full sweep (`_clean_expired` walking every channel and group)."""
    calls: list[int] = []
    full_sweep = channels.layers.InMemoryChannelLayer._clean_expired

    def counting(self):
        calls.append(1)
        return full_sweep(self)

    monkeypatch.setattr(channels.layers.InMemoryChannelLayer, "_clean_expired", counting)
    return calls


async def nothing_on(layer: InMemoryChannelLayer, channel: str) -> bool:
    """True if a receive on `channel` gets nothing (the wait is cancelled on the real event loop)."""
    try:
        await asyncio.wait_for(layer.receive(channel), timeout=0.05)
    except TimeoutError:
        return True
    return False


async def test_send_receive_roundtrip():
    layer = InMemoryChannelLayer()
    await layer.send("test.channel", {"type": "test.message", "text": "hi"})
    await layer.send("test.channel", {"type": "test.message", "text": "again"})

    assert await layer.receive("test.channel") == {"type": "test.message", "text": "hi"}
    assert "test.channel" in layer.channels  # not empty yet
    assert await layer.receive("test.channel") == {"type": "test.message", "text": "again"}
    assert "test.channel" not in layer.channels  # emptied queues are dropped


async def test_process_local_channel_roundtrip():
    layer = InMemoryChannelLayer()
    name = await layer.new_channel()
    await layer.send(name, {"type": "local"})
    assert (await layer.receive(name))["type"] == "local"


async def test_group_send_reaches_the_members_only():
    layer = InMemoryChannelLayer()
    for name in ("a", "b", "c"):
        await layer.group_add("room", name)
    await layer.group_discard("room", "b")

    await layer.group_send("room", {"type": "chat.frame"})

    assert (await layer.receive("a"))["type"] == "chat.frame"
    assert (await layer.receive("c"))["type"] == "chat.frame"
    assert await nothing_on(layer, "b")


async def test_group_send_puts_a_copy_on_each_member_queue_without_a_task_per_member(monkeypatch):
    layer = InMemoryChannelLayer()
    for name in ("a", "b", "c"):
        await layer.group_add("room", name)
    started: list[object] = []
    real_create_task = asyncio.create_task
    monkeypatch.setattr(asyncio, "create_task", lambda coro, **kw: started.append(coro) or real_create_task(coro, **kw))
    message = {"type": "chat.frame", "frame": {"data": {"text": "hi"}}}

    await layer.group_send("room", message)

    assert started == []
    received = [await layer.receive(name) for name in ("a", "b", "c")]
    assert received == [message] * 3
    received[0]["frame"]["data"]["text"] = "changed by one receiver"
    assert received[1]["frame"]["data"]["text"] == "hi" and message["frame"]["data"]["text"] == "hi"


def test_a_copied_message_shares_no_container_with_the_original():
    inner = {"items": [1, {"deep": ["x"]}], "tags": {"a"}, "n": None, "f": 1.5, "b": b"raw"}
    message = {"type": "chat.frame", "frame": inner}

    copy = chat.layers.copied(message)

    assert copy == message
    assert copy["frame"] is not inner
    assert copy["frame"]["items"][1]["deep"] is not inner["items"][1]["deep"]
    assert copy["frame"]["tags"] is not inner["tags"]  # not JSON-like: deep-copied all the same
    assert copy["frame"]["b"] is inner["b"]  # immutable values are shared


async def test_an_expired_message_is_never_delivered_even_between_sweeps(clocks, sweeps):
    layer = InMemoryChannelLayer(expiry=10, sweep_interval=3600)
    await layer.group_add("room", "ch")
    layer._clean_expired()  # the sweep ran: the next one is an hour away
    await layer.send("ch", {"type": "old"})

    clocks.advance(11)
    await layer.send("ch", {"type": "new"})

    assert (await layer.receive("ch"))["type"] == "new"
    assert len(sweeps) == 1
    assert "ch" not in layer.groups["room"]  # as with channels: an expired message ungroups its channel


async def test_an_expired_only_message_gives_nothing_and_the_channel_is_dropped(clocks):
    layer = InMemoryChannelLayer(expiry=10, sweep_interval=3600)
    layer._clean_expired()
    await layer.send("ch", {"type": "old"})

    clocks.advance(11)

    assert await nothing_on(layer, "ch")
    assert "ch" not in layer.channels


async def test_a_message_within_its_expiry_is_delivered(clocks):
    layer = InMemoryChannelLayer(expiry=10)
    await layer.send("ch", {"type": "fresh"})
    clocks.advance(9)
    assert (await layer.receive("ch"))["type"] == "fresh"


async def test_a_group_membership_expires_after_group_expiry(clocks, sweeps):
    layer = InMemoryChannelLayer(group_expiry=60, sweep_interval=3600)
    layer._clean_expired()
    await layer.group_add("room", "old")
    clocks.advance(30)
    await layer.group_add("room", "young")

    clocks.advance(32)  # "old" joined 62 s ago, "young" 32 s ago
    await layer.group_send("room", {"type": "chat.frame"})

    assert (await layer.receive("young"))["type"] == "chat.frame"
    assert await nothing_on(layer, "old")
    assert set(layer.groups["room"]) == {"young"}
    assert len(sweeps) == 1  # group_send checked its own group, not every group


async def test_the_sweep_still_reclaims_idle_channels_after_the_interval(clocks):
    layer = InMemoryChannelLayer(expiry=10, group_expiry=60, sweep_interval=1.0)
    await layer.send("idle", {"type": "old"})
    await layer.group_add("other", "idle-member")
    await layer.receive("idle")  # first op sweeps (nothing expired yet)

    await layer.send("idle", {"type": "old"})
    clocks.advance(61)
    await layer.send("busy", {"type": "x"})
    assert (await layer.receive("busy"))["type"] == "x"

    assert layer.channels == {}
    assert layer.groups["other"] == {}


async def test_capacity_raises_channel_full():
    layer = InMemoryChannelLayer(capacity=3, channel_capacity={"small.*": 1})
    for _ in range(3):
        await layer.send("ch", {"type": "m"})
    with pytest.raises(ChannelFull):
        await layer.send("ch", {"type": "m"})

    await layer.send("small.one", {"type": "m"})
    with pytest.raises(ChannelFull):
        await layer.send("small.one", {"type": "m"})


async def test_a_channel_full_of_expired_messages_accepts_a_new_one(clocks):
    layer = InMemoryChannelLayer(capacity=2, expiry=10, sweep_interval=3600)
    layer._clean_expired()
    await layer.send("ch", {"type": "old"})
    await layer.send("ch", {"type": "old"})

    clocks.advance(11)
    await layer.send("ch", {"type": "new"})

    assert (await layer.receive("ch"))["type"] == "new"


async def test_group_send_ignores_full_members():
    layer = InMemoryChannelLayer(capacity=1)
    await layer.group_add("room", "ch")
    await layer.group_send("room", {"type": "first"})
    await layer.group_send("room", {"type": "second"})  # ChannelFull swallowed, as in channels
    assert (await layer.receive("ch"))["type"] == "first"


async def test_flush_and_close():
    layer = InMemoryChannelLayer()
    await layer.send("ch", {"type": "m"})
    await layer.group_add("room", "ch")

    await layer.flush()
    await layer.close()

    assert layer.channels == {} and layer.groups == {}
    assert await nothing_on(layer, "ch")


async def test_names_are_validated():
    layer = InMemoryChannelLayer()
    with pytest.raises(TypeError):
        await layer.send("¯\\_(ツ)_/¯", {"type": "m"})
    with pytest.raises(TypeError):
        await layer.receive("x" * 200)
    with pytest.raises(TypeError):
        await layer.group_send("¯\\_(ツ)_/¯", {"type": "m"})


async def test_with_5000_idle_sockets_one_active_socket_sweeps_once_per_interval(clocks, sweeps):
    layer = InMemoryChannelLayer(capacity=1000)
    idle = [f"specific.idle!{n}" for n in range(5000)]
    for n, name in enumerate(idle):
        await layer.group_add(f"conv.{n}", name)
    waiting = [asyncio.create_task(layer.receive(name)) for name in idle]  # each socket's consumer waits
    await asyncio.sleep(0)
    assert len(layer.channels) == 5000 and len(sweeps) == 1
    sweeps.clear()

    clocks.advance(1.0)
    active = "specific.active!0"
    await layer.group_add("conv.active", active)
    for n in range(100):
        await layer.send(active, {"type": "chat.delta", "n": n})
        assert (await layer.receive(active))["n"] == n
        await layer.group_send("conv.active", {"type": "chat.delta", "n": n})
        assert (await layer.receive(active))["n"] == n
        clocks.advance(0.001)  # 100 turns within one second of the monotonic clock

    assert len(sweeps) == 1

    clocks.advance(1.0)
    await layer.send(active, {"type": "later"})
    await layer.receive(active)
    assert len(sweeps) == 2

    for task in waiting:
        task.cancel()
    await asyncio.gather(*waiting, return_exceptions=True)
    assert layer.channels == {}


def test_the_backend_path_loads_with_its_config(settings):
    manager = channels.layers.ChannelLayerManager()
    settings.CHANNEL_LAYERS = {
        "default": {
            "BACKEND": "chat.layers.InMemoryChannelLayer",
            "CONFIG": {"capacity": 1000, "expiry": 30, "sweep_interval": 0.5},
        }
    }

    layer = manager["default"]

    assert isinstance(layer, InMemoryChannelLayer)
    assert (layer.capacity, layer.expiry, layer.sweep_interval) == (1000, 30, 0.5)
