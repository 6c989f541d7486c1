"""What a client that (re)joins a conversation missed: stored frames, the running turn's frames not
stored yet, and the text so far of the message streaming now (`llm.snapshot`). One path for the
websocket (`?since_seq=`), the gateway's streams and REST polling (`GET …/events?since_seq=`)."""

from __future__ import annotations

import time
from collections.abc import AsyncGenerator, AsyncIterator
from dataclasses import dataclass
from typing import Any

from . import frames, selectors
from .aio import run_db
from .frames import Frame, LiveFilter
from .streams import Subscription
from .turns import dispatcher

REPLAY_PAGE = 500


@dataclass(frozen=True)
class Replay:
    frames: list[Frame]
    next_since_seq: int
    more: bool


async def replay(conv_id: Any, since_seq: int, limit: int = REPLAY_PAGE) -> Replay:
    """The frames after `since_seq`, a page at a time. Live frames with a seq up to `next_since_seq`
    are covered by it; later ones come live (or from the next call)."""
    live = dispatcher.local_replay(conv_id)  # its turn runs here: no need to look whether one runs
    if live is None and await run_db(selectors.conversation_active_turn, conv_id=conv_id):
        live = await dispatcher.ask_replay(conv_id)
    upto = live["seq"] if live else None
    stored, more = await run_db(
        selectors.events_after, conv_id=conv_id, since_seq=since_seq, upto_seq=upto, limit=limit
    )
    by_seq = {f["seq"]: f for f in stored}
    if live and not more:
        by_seq.update({f["seq"]: f for f in live["frames"] if since_seq < f["seq"] <= upto})
    page = [by_seq[seq] for seq in sorted(by_seq)]
    if more:
        return Replay(page, page[-1]["seq"], True)
    if live and live["message"] and upto is not None and upto > since_seq:
        page.append(frames.llm_snapshot(conv_id=conv_id, seq=upto, message=live["message"]))
    last = page[-1]["seq"] if page else since_seq
    return Replay(page, max(last, upto or 0), False)


async def catch_up(conv_id: Any, since_seq: int, seen: LiveFilter) -> AsyncIterator[Frame]:
    """Every frame after `since_seq`, page by page, each noted in `seen` so the same frames arriving
    live are dropped. Join the conversation's group first: a frame sent meanwhile comes either way."""
    while True:
        page = await replay(conv_id, since_seq)
        seen.covers(page.next_since_seq)
        for frame in page.frames:
            seen.replaying(frame)
            yield frame
        since_seq = page.next_since_seq
        if not page.more:
            return


async def follow(
    conv_id: Any, since_seq: int, *, silence: float, deadline: float
) -> AsyncGenerator[Frame | None, None]:
    """Every frame after `since_seq`, each once: the replay, then live frames as they are sent (the
    subscription is made first, so none falls between). None after `silence` seconds without a frame
    (the caller looks at the stored turn: a frame a layer lost cannot hang it); ends at `deadline`
    (monotonic). Use it under `contextlib.aclosing`, so the subscription ends with the caller."""
    seen = LiveFilter()
    async with Subscription(conv_id) as live:
        async for frame in catch_up(conv_id, since_seq, seen):
            yield frame
        while (remaining := deadline - time.monotonic()) > 0:
            arrived = await live.next(min(silence, remaining))
            if arrived is None or seen.is_new(arrived):
                yield arrived
