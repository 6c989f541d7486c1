"""A process that starts serving interrupts turns whose lease expired (their worker died) and restarts the
turns queued behind them."""

import pytest
from channels.db import database_sync_to_async

from chat import turns
from chat.models import Conversation, Turn
from chat.services import now_ms

from .factories import ConversationFactory, TurnFactory

pytestmark = pytest.mark.django_db(transaction=True)


@database_sync_to_async
def _orphaned_conversation(owner):
    """A turn left `running` by a dead worker (expired lease), and a turn queued behind it."""
    conversation = ConversationFactory(owner=owner, mount="chat")
    dead = TurnFactory(conversation=conversation, seq=1, status="running", worker="gone:1:x", lease_until_ms=0)
    Conversation.objects.filter(pk=conversation.pk).update(active_turn=dead)
    waiting = TurnFactory(conversation=conversation, seq=2, prompt="are you there?")
    return dead.pk, waiting.pk


async def test_the_first_connection_interrupts_dead_turns_and_runs_the_queued_ones(
    seeded_registries, chat_user, fast_turns, settings, open_ws, wait_turn
):
    dead, waiting = await _orphaned_conversation(chat_user)
    turns.dispatcher.loop = None  # a process that has not served anything yet

    await open_ws()  # any request binds the server loop, which starts the recovery

    assert (await wait_turn(dead)).status == Turn.Status.INTERRUPTED
    finished = await wait_turn(waiting)
    assert finished.status == Turn.Status.COMPLETED
    assert "are you there?" in finished.text


async def test_a_running_turn_with_a_live_lease_is_left_alone(seeded_registries, chat_user, settings, open_ws):
    dead, _ = await _orphaned_conversation(chat_user)
    await database_sync_to_async(Turn.objects.filter(pk=dead).update)(lease_until_ms=now_ms() + 60_000)
    turns.dispatcher.loop = None

    await open_ws()
    await turns.dispatcher.recover()

    assert (await database_sync_to_async(Turn.objects.get)(pk=dead)).status == Turn.Status.RUNNING
