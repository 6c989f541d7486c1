"""Daphne's HTTP (twisted) and websocket (autobahn) servers, adjusted where their defaults cost the
chat something.

- Oversized messages get a close frame, not a dropped connection. Daphne (through autobahn) refuses a
  message over its `--websocket-max-message-size` (1 MiB by default) by dropping the TCP connection
  (`failByDrop`), so the client never learns why. With `failByDrop` off, autobahn sends close code 1009
  (message too big) first. Below that hard limit the chat consumer answers `frame_too_large` for anything
  over CHAT_MAX_FRAME_BYTES and keeps the socket open.
- A socket's opening formats nothing for a debug log that is off. Autobahn pretty-prints its ~30 options
  and the transport's details for `log.debug` on every connection, whether that level is logged or not
  (the arguments are built before the call): in a profile of sockets opening, `pprint` was about a sixth
  of the server loop's time. Its `pformat` now formats only while txaio's log level is `debug` or `trace`.
- A POST's body is left to the application. Twisted parses the `Content-Type` of every POST with a body
  (through `email.message`, ~0.2 ms) to fill `request.args` with a form's fields, which daphne never
  reads: it hands the raw body to the application, and Django parses its own forms. About 2.5% of the
  server loop's time in a profile of sequential chat completions.
"""

from __future__ import annotations

import pprint
from collections.abc import Callable
from typing import Any

NOT_FORMATTED = "(not formatted: autobahn's debug log is off)"


def after_init(cls: Any, adjust: Callable[[Any], None], *, marker: str) -> None:
    """`adjust(instance)` after each `cls.__init__`; once per class (`marker`), however often it is asked."""
    if getattr(cls, marker, False):
        return
    original = cls.__init__

    def __init__(self: Any, *args: Any, **kwargs: Any) -> None:
        original(self, *args, **kwargs)
        adjust(self)

    cls.__init__ = __init__
    setattr(cls, marker, True)


def close_oversized_messages_cleanly() -> None:
    try:
        from daphne.ws_protocol import WebSocketFactory
    except ImportError:  # another ASGI server
        return
    after_init(WebSocketFactory, lambda factory: factory.setProtocolOptions(failByDrop=False), marker="closes_cleanly")


def leave_request_bodies_to_the_application() -> None:
    try:
        from daphne.http_protocol import WebRequest
    except ImportError:  # another ASGI server
        return
    # Twisted's own switch (`Request(parsePOSTFormSubmission=)`), which daphne's requests leave on.
    after_init(
        WebRequest, lambda request: setattr(request, "_parsePOSTFormSubmission", False), marker="parses_no_forms"
    )


def format_debug_only_when_logged() -> None:
    try:
        from autobahn.websocket import protocol
    except ImportError:  # another ASGI server
        return
    if getattr(protocol, "formats_when_debugging", False):
        return
    protocol.pformat = when_debugging(pprint.pformat)
    protocol.hltype = when_debugging(protocol.hltype)
    protocol.hlval = when_debugging(protocol.hlval)
    protocol.formats_when_debugging = True  # type: ignore[attr-defined]


def when_debugging(format: Callable[..., str]) -> Callable[..., str]:
    """`format`, called only while txaio's log level is `debug` or `trace` (else NOT_FORMATTED)."""
    import txaio

    def formatted(*args: Any, **kwargs: Any) -> str:
        if txaio.get_global_log_level() in ("debug", "trace"):  # type: ignore[attr-defined]  # set by use_twisted()
            return format(*args, **kwargs)
        return NOT_FORMATTED

    return formatted
