"""The baseline: a bare Channels consumer served by daphne (`daphne bench.bare_app:application`).

A plain `AsyncWebsocketConsumer`: no database, no auth, no channel layer. It accepts any socket,
sends a `ws.hello` of the real hello's size, and on each `chat.send` sends the frame sequence a real
turn sends (same types, count and sizes, measured once from a real turn by the benchmark and set
with a `bench.shape` frame; `paced` replays the real arrival times too). `bench.blast` sends
`count` delta-sized frames as fast as it can (the frame ceiling).
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from typing import Any

import django
from django.conf import settings

if not settings.configured:
    settings.configure(DEBUG=False, SECRET_KEY="bench-bare", ALLOWED_HOSTS=["*"], INSTALLED_APPS=[], CHANNEL_LAYERS={})
    django.setup()

from channels.generic.websocket import AsyncWebsocketConsumer
from channels.routing import ProtocolTypeRouter

from config.daphne_server import format_debug_only_when_logged

# The same websocket server as the project's (config/asgi.py): the baseline pays for nothing ours does not.
format_debug_only_when_logged()

# The default shape until a benchmark sets the measured one: a short streamed turn.
_DEFAULT = [["chat.message", 250, 0], ["turn.started", 600, 0], ["llm.start", 200, 0]]
_DEFAULT += [["llm.delta", 190, 0]] * 6 + [["llm.final", 350, 0], ["turn.completed", 400, 0]]
STATE: dict[str, Any] = {"frames": _DEFAULT, "paced": False, "hello_bytes": 600}


def _envelope(kind: str, conv_id: str, seq: int, data: dict[str, Any]) -> dict[str, Any]:
    return {"type": kind, "id": uuid.uuid4().hex, "seq": seq, "conv_id": conv_id, "ts_ms": 0, "data": data}


def _data(kind: str, size: int, conv_id: str) -> dict[str, Any]:
    """Data whose frame JSON is about `size` bytes (ASCII padding, computed once per shape entry)."""
    data: dict[str, Any] = {"message_id": "m-bare", "delta": ""} if kind == "llm.delta" else {"text": ""}
    key = "delta" if kind == "llm.delta" else "text"
    sample = _envelope(kind, conv_id, 100, data)
    sample["ts_ms"] = 1_700_000_000_000
    overhead = len(json.dumps(sample))
    data[key] = "x" * max(0, size - overhead)
    return data


class BareConsumer(AsyncWebsocketConsumer):
    async def connect(self) -> None:
        await self.accept()
        self.conv_id = str(uuid.uuid4())
        self.seq = 0
        self.plan: tuple[int, list] | None = None
        await self._send("ws.hello", _data("ws.hello", STATE["hello_bytes"], self.conv_id))

    async def _send(self, kind: str, data: dict[str, Any]) -> None:
        self.seq += 1
        frame = _envelope(kind, self.conv_id, self.seq, data)
        frame["ts_ms"] = int(time.time() * 1000)
        await self.send(text_data=json.dumps(frame))

    def _frames(self) -> list[tuple[str, dict[str, Any], float]]:
        version = id(STATE["frames"])
        if self.plan is None or self.plan[0] != version:
            plan = [(kind, _data(kind, size, self.conv_id), at / 1000) for kind, size, at in STATE["frames"]]
            self.plan = (version, plan)
        return self.plan[1]

    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None) -> None:
        frame = json.loads(text_data or "{}")
        kind = frame.get("type")
        if kind == "chat.send":
            start, paced = time.monotonic(), STATE["paced"]
            for name, data, at in self._frames():
                if paced:
                    wait = start + at - time.monotonic()
                    if wait > 0:
                        await asyncio.sleep(wait)
                await self._send(name, data)
        elif kind == "bench.blast":
            data = _data("llm.delta", int(frame.get("size", 190)), self.conv_id)
            for _ in range(int(frame.get("count", 100)) - 1):
                await self._send("llm.delta", data)
            await self._send("turn.completed", _data("turn.completed", 200, self.conv_id))
        elif kind == "bench.shape":
            STATE.update(
                frames=[list(f) for f in frame.get("frames") or _DEFAULT],
                paced=bool(frame.get("paced")),
                hello_bytes=int(frame.get("hello_bytes") or STATE["hello_bytes"]),
            )
            await self._send("bench.ack", {})


application = ProtocolTypeRouter({"websocket": BareConsumer.as_asgi()})
