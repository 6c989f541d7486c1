"""Text that JSON allows but databases and encoders refuse (lone surrogates, NUL, NaN), from providers and
from clients: made storable at the boundary, so a turn always ends and nothing answers 500."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from chat.aio import run_db
from chat.models import Turn
from chat.runtime.text import StreamText, clean_text, clean_value

from .fake_openai import FakeOpenAIServer, remote_profile

EMOJI = "\U0001f600"
HIGH, LOW = "\ud83d", "\ude00"  # EMOJI as a UTF-16 surrogate pair


def test_a_split_surrogate_pair_is_joined_across_chunks():
    stream = StreamText()

    assert stream.feed("smile " + HIGH) == "smile "
    assert stream.feed(LOW + "!") == EMOJI + "!"
    assert stream.flush() == ""


def test_lone_surrogates_and_nul_become_the_replacement_character():
    stream = StreamText()

    assert clean_text("a\ud800b\x00c") == "a\ufffdb\ufffdc"
    assert stream.feed("end" + HIGH) == "end"
    assert stream.flush() == "\ufffd"  # a high surrogate nobody completed
    assert clean_value({"k\x00": ["\udfff", 1.5, float("nan"), float("inf")]}) == {
        "k\ufffd": ["\ufffd", 1.5, None, None]
    }


@pytest.fixture
def fake() -> Iterator[FakeOpenAIServer]:
    with FakeOpenAIServer() as server:
        yield server


@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("seeded_registries")
async def test_provider_text_with_split_pairs_lone_surrogates_and_nul_still_ends_the_turn(
    open_ws, frames_until, fake, chat_api
):
    await run_db(remote_profile, fake)
    fake.stream_text(["Hi " + HIGH, LOW + " lone \ud800 nul \x00 end"])
    communicator = await open_ws("/ws/chat/", profile="remote")
    hello = await communicator.receive_json_from(timeout=5)

    await communicator.send_json_to({"type": "chat.send", "prompt": "go"})
    frames = await frames_until(communicator, timeout=10)

    assert frames[-1]["type"] == "turn.completed"
    expected = "Hi " + EMOJI + " lone \ufffd nul \ufffd end"
    streamed = "".join(f["data"]["delta"] for f in frames if f["type"] == "llm.delta")
    assert streamed == expected
    turn = await run_db(Turn.objects.get, pk=frames[0]["data"]["turn_id"])
    assert (turn.status, turn.text) == ("completed", expected)
    events = await run_db(lambda: chat_api.get(f"/api/chat/conversations/{hello['conv_id']}/events"))
    assert events.status_code == 200
    assert events.json()["frames"][-1]["data"]["text"] == expected


@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("seeded_registries")
@pytest.mark.parametrize(
    ("raw", "field"),
    [
        ('{"type": "chat.send", "prompt": "\\ud800"}', "prompt"),
        ('{"type": "chat.send", "prompt": "nul \\u0000 inside"}', "prompt"),
        ('{"type": "chat.send", "prompt": "hi", "idempotency_key": "\\udfff"}', "idempotency_key"),
        (
            '{"type": "chat.send", "prompt": "hi", "request_overrides": {"system_prompt": "\\ud83d"}}',
            "request_overrides.system_prompt",
        ),
        (
            '{"type": "chat.send", "prompt": "hi", "request_overrides": '
            '{"step_settings_patch": {"ai-chat": {"ai-temperature": NaN}}}}',
            "request_overrides.step_settings_patch.ai-chat.ai-temperature",
        ),
    ],
)
async def test_unstorable_client_text_is_an_error_frame_and_the_socket_stays_open(open_ws, raw, field):
    communicator = await open_ws("/ws/chat/", profile="analyst")
    hello = await communicator.receive_json_from(timeout=5)

    await communicator.send_to(text_data=raw)
    error = await communicator.receive_json_from(timeout=5)
    await communicator.send_json_to({"type": "ws.ping"})

    assert (error["type"], error["data"]["code"], error["data"]["field"]) == ("error", "invalid", field)
    assert (await communicator.receive_json_from(timeout=5))["type"] == "ws.pong"
    assert not await run_db(Turn.objects.filter(conversation_id=hello["conv_id"]).exists)
