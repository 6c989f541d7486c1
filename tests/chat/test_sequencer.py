"""The Redis sequencer (chat.sequencer) against a redis-server of the test's own: the numbers many
streams ask for at once share one round trip, and each caller still gets its own number or error."""

from __future__ import annotations

import asyncio
import uuid

import pytest
from redis.exceptions import ConnectionError as RedisConnectionError

from chat.sequencer import RedisSequencer

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.backends]


def new_conversations(sequencer: RedisSequencer, count: int) -> list[str]:
    """Conversations created here (primed): their numbers start at 1 without reading the database."""
    convs = [str(uuid.uuid4()) for _ in range(count)]
    for conv in convs:
        sequencer.prime(conv, mark=10_000)
    return convs


async def test_numbers_asked_for_at_once_go_to_redis_in_one_round_trip(redis_server, pipelines):
    sequencer = RedisSequencer(redis_server.url)
    convs = new_conversations(sequencer, 40)
    await asyncio.gather(*(sequencer.next(conv) for conv in convs))  # each counter started
    pipelines.clear()

    numbers = await asyncio.gather(*(sequencer.next(conv) for conv in convs))

    assert numbers == [2] * 40  # each conversation its own next number
    assert pipelines == [40]  # one round trip for the forty


async def test_numbers_of_one_conversation_asked_for_at_once_come_in_the_order_asked(redis_server):
    sequencer = RedisSequencer(redis_server.url)
    (conv,) = new_conversations(sequencer, 1)
    assert await sequencer.next(conv) == 1

    numbers = await asyncio.gather(*(sequencer.next(conv) for _ in range(10)))

    assert numbers == list(range(2, 12))


async def test_a_redis_that_lost_its_scripts_numbers_on(redis_server):
    sequencer = RedisSequencer(redis_server.url)
    (conv,) = new_conversations(sequencer, 1)
    assert await sequencer.next(conv) == 1
    await sequencer._client().script_flush()  # as after a restart: the counter stays, the script goes

    assert await asyncio.gather(sequencer.next(conv), sequencer.next(conv)) == [2, 3]


async def test_every_caller_gets_the_error_when_redis_is_away(redis_server):
    sequencer = RedisSequencer(redis_server.url)
    convs = new_conversations(sequencer, 3)
    redis_server.stop()

    outcomes = await asyncio.gather(*(sequencer.next(conv) for conv in convs), return_exceptions=True)

    assert all(isinstance(outcome, RedisConnectionError) for outcome in outcomes), outcomes
