"""Daphne's HTTP and websocket servers as `config.asgi` adjusts them (`config.daphne_server`)."""

from __future__ import annotations

import pprint

import pytest
import txaio
from autobahn.twisted.websocket import WebSocketServerProtocol
from daphne.http_protocol import HTTPFactory, WebRequest
from daphne.ws_protocol import WebSocketFactory
from twisted.internet.testing import StringTransport
from twisted.web import http as twisted_http

import config.asgi  # noqa: F401 - the adjustments are made when the application is loaded
from config.daphne_server import NOT_FORMATTED


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


@pytest.fixture
def highlighted(monkeypatch) -> list[str]:
    """What autobahn colours (click styles) meanwhile."""
    import click

    calls: list[str] = []
    original = click.style

    def style(text, *args, **kwargs):
        calls.append(text)
        return original(text, *args, **kwargs)

    monkeypatch.setattr(click, "style", style)
    return calls


def _sent_frame() -> StringTransport:
    """An open server protocol of daphne's factory that has sent one text message."""
    protocol = _opened()
    transport = StringTransport()
    protocol.transport = transport
    protocol.state, protocol.websocket_version = WebSocketServerProtocol.STATE_OPEN, 13  # as after a handshake
    protocol.sendMessage(b'{"type": "llm.delta"}')
    return transport


def test_a_frame_sent_formats_nothing_for_a_debug_log_that_is_off(highlighted, log_level):
    log_level("info")

    transport = _sent_frame()

    assert transport.value().endswith(b'{"type": "llm.delta"}')  # the frame went out
    assert highlighted == []


def test_the_debug_log_still_gets_a_frame_sent_when_it_is_on(highlighted, log_level):
    log_level("debug")

    _sent_frame()

    assert "sendData" in "".join(highlighted)


class _Server:
    """What daphne's HTTP protocol asks of its server before a request is processed."""

    def protocol_connected(self, protocol: object) -> None:
        pass


@pytest.fixture
def processed(monkeypatch) -> list[tuple[dict, bytes]]:
    """Each request daphne would hand to the application: twisted's parsed `args`, and the body."""
    seen: list[tuple[dict, bytes]] = []

    def process(self) -> None:
        seen.append((dict(self.args), self.content.read()))

    monkeypatch.setattr(WebRequest, "process", process)
    return seen


def test_a_posted_form_is_left_to_the_application(processed, monkeypatch):
    parsed: list[bytes] = []
    original = twisted_http._parseContentType
    monkeypatch.setattr(twisted_http, "_parseContentType", lambda line: parsed.append(line) or original(line))
    channel = HTTPFactory(_Server()).buildProtocol(("127.0.0.1", 0))
    channel.makeConnection(StringTransport())

    channel.dataReceived(
        b"POST /admin/login/?next=/ HTTP/1.1\r\nHost: testserver\r\n"
        b"Content-Type: application/x-www-form-urlencoded\r\nContent-Length: 21\r\n\r\nusername=a&password=b"
    )

    assert processed == [({b"next": [b"/"]}, b"username=a&password=b")]  # the query string only; the body whole
    assert parsed == []
