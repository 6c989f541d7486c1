"""chat.layers.RedisPubSubChannelLayer against a redis-server of the test's own: the frames many streams
fan out at once share one round trip, in the order they were published, and each caller gets the error
when Redis is away."""

from __future__ import annotations

import asyncio

import pytest
from redis.exceptions import ConnectionError as RedisConnectionError

from chat.layers import RedisPubSubChannelLayer

pytestmark = [pytest.mark.backends]


@pytest.fixture
async def layer(redis_server):
    layer = RedisPubSubChannelLayer(hosts=[redis_server.url])
    try:
        yield layer
    finally:
        await layer.flush()


async def received(layer, channel: str, count: int) -> list[int]:
    return [(await asyncio.wait_for(layer.receive(channel), 5))["n"] for _ in range(count)]


async def test_frames_published_at_once_go_to_redis_in_one_round_trip_in_order(layer, pipelines):
    channel = await layer.new_channel()
    await layer.group_add("conv", channel)

    await asyncio.gather(*(layer.group_send("conv", {"type": "chat.frame", "n": n}) for n in range(40)))

    assert pipelines == [40]  # one round trip for the forty
    assert await received(layer, channel, 40) == list(range(40))


async def test_frames_published_while_a_round_trip_is_under_way_follow_it_in_order(layer, pipelines):
    channel = await layer.new_channel()
    await layer.group_add("conv", channel)

    async def later(start: int) -> None:
        await asyncio.sleep(0)  # published while the first round trip is under way
        for n in range(start, start + 5):
            await layer.group_send("conv", {"type": "chat.frame", "n": n})

    await asyncio.gather(*(layer.group_send("conv", {"type": "chat.frame", "n": n}) for n in range(10)), later(10))

    assert sum(pipelines) == 15 and len(pipelines) < 15
    assert await received(layer, channel, 15) == list(range(15))


async def test_every_publisher_gets_the_error_when_redis_is_away(layer, redis_server):
    channel = await layer.new_channel()
    await layer.group_add("conv", channel)
    redis_server.stop()

    outcomes = await asyncio.gather(
        *(layer.group_send("conv", {"type": "chat.frame", "n": n}) for n in range(3)), return_exceptions=True
    )

    assert all(isinstance(outcome, RedisConnectionError | OSError) for outcome in outcomes), outcomes
