"""Daphne's websocket server as `config.asgi` adjusts it (`config.websocket_server`)."""

from __future__ import annotations

import pprint

import pytest
import txaio
from autobahn.twisted.websocket import WebSocketServerProtocol
from daphne.ws_protocol import WebSocketFactory

import config.asgi  # noqa: F401 - the adjustments are made when the application is loaded
from config.websocket_server import NOT_FORMATTED


@pytest.fixture
def formatted(monkeypatch) -> list[object]:
    """What pprint formats meanwhile."""
    calls: list[object] = []
    original = pprint.PrettyPrinter.pformat

    def pformat(self, obj):
        calls.append(obj)
        return original(self, obj)

    monkeypatch.setattr(pprint.PrettyPrinter, "pformat", pformat)
    return calls


@pytest.fixture
def log_level():
    before = txaio.get_global_log_level()
    yield txaio.set_global_log_level
    txaio.set_global_log_level(before)


class _Transport:
    def getPeer(self):
        return None

    def getHost(self):
        return None


def _opened() -> WebSocketServerProtocol:
    """A server protocol of daphne's factory, told that its TCP connection is made."""
    protocol = WebSocketServerProtocol()
    protocol.factory = WebSocketFactory(server_class=None)
    protocol.transport = _Transport()
    protocol._connectionMade()
    return protocol


def test_a_socket_opening_formats_nothing_for_a_debug_log_that_is_off(formatted, log_level):
    log_level("info")

    _opened()

    assert formatted == []


def test_the_debug_log_still_gets_the_options_when_it_is_on(formatted, log_level):
    from autobahn.websocket import protocol

    log_level("debug")

    _opened()

    assert formatted, "autobahn's options are formatted for its debug log"
    assert protocol.pformat({"a": 1}) == "{'a': 1}"
    log_level("info")
    assert protocol.pformat({"a": 1}) == NOT_FORMATTED
