"""Oversized websocket messages get a close frame, not a dropped connection.

Daphne (through autobahn) refuses a message over its `--websocket-max-message-size` (1 MiB by default)
by dropping the TCP connection (`failByDrop`), so the client never learns why. With `failByDrop` off,
autobahn sends close code 1009 (message too big) first. Below that hard limit the chat consumer
answers `frame_too_large` for anything over CHAT_MAX_FRAME_BYTES and keeps the socket open.
"""

from __future__ import annotations

from typing import Any


def close_oversized_messages_cleanly() -> None:
    try:
        from daphne.ws_protocol import WebSocketFactory
    except ImportError:  # another ASGI server
        return
    if getattr(WebSocketFactory, "closes_cleanly", False):
        return
    original = WebSocketFactory.__init__

    def __init__(self: Any, *args: Any, **kwargs: Any) -> None:
        original(self, *args, **kwargs)
        self.setProtocolOptions(failByDrop=False)

    WebSocketFactory.__init__ = __init__
    WebSocketFactory.closes_cleanly = True
