"""A real HTTP server speaking the OpenAI chat-completions streaming protocol, for engine tests.

Tests drive the official SDK against it over TCP, so no SDK internals are mocked. Each
POST /v1/chat/completions pops the next scripted behaviour; request bodies and headers are recorded.
"""

from __future__ import annotations

import json
import socket
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler
from typing import Any

from .scripted_server import LocalServer, ScriptedServer

Behaviour = Callable[["_Handler", dict[str, Any]], None]


@dataclass
class RecordedRequest:
    path: str
    headers: dict[str, str]  # lower-cased names
    body: Any
    client_port: int = 0  # the client's end of the connection: one per connection


@dataclass
class _ToolCallScript:
    call_id: str
    name: str
    arguments: str


def free_port() -> int:
    """A port nothing listens on (bound then released), for connection-refused tests."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def split_text(text: str, pieces: int) -> list[str]:
    """Split `text` into `pieces` non-empty consecutive fragments (fewer when it is shorter)."""
    pieces = max(1, min(pieces, len(text)))
    size, rest = divmod(len(text), pieces)
    out, start = [], 0
    for i in range(pieces):
        end = start + size + (1 if i < rest else 0)
        out.append(text[start:end])
        start = end
    return [piece for piece in out if piece]


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: LocalServer

    def log_message(self, format: str, *args: Any) -> None:  # silence the default stderr logging
        return

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        try:
            body: Any = json.loads(raw or b"null")
        except ValueError:
            body = raw.decode("utf-8", "replace")
        fake = self.server.fake
        headers = {k.lower(): v for k, v in self.headers.items()}
        fake._record(RecordedRequest(self.path, headers, body, client_port=int(self.client_address[1])))
        if not self.path.rstrip("/").endswith("/chat/completions"):
            self.send_json(404, {"error": {"message": f"unknown path {self.path}", "type": "invalid_request_error"}})
            return
        behaviour = fake._next()
        try:
            behaviour(self, body if isinstance(body, dict) else {})
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True

    # ----------------------------------------------------------------- response helpers

    def send_json(self, status: int, payload: Any) -> None:
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)
        self.wfile.flush()

    def start_sse(self) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Cache-Control", "no-cache")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()

    def write_chunk(self, data: bytes) -> None:
        self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
        self.wfile.flush()

    def sse(self, payload: Any) -> None:
        text = payload if isinstance(payload, str) else json.dumps(payload)
        self.write_chunk(f"data: {text}\n\n".encode())

    def end_sse(self, *, done: bool = True) -> None:
        if done:
            self.sse("[DONE]")
        self.write_chunk(b"")

    def cut(self) -> None:
        """Drop the connection without the chunked terminator: the client sees a broken body."""
        self.close_connection = True
        self.wfile.flush()
        self.connection.shutdown(socket.SHUT_RDWR)

    def pause(self, seconds: float) -> None:
        self.server.fake._stopping.wait(seconds)


def _chunk(model: str, delta: dict[str, Any], finish_reason: str | None = None) -> dict[str, Any]:
    return {
        "id": "chatcmpl-fake",
        "object": "chat.completion.chunk",
        "created": 1_700_000_000,
        "model": model,
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish_reason}],
    }


def _usage_chunk(model: str, usage: dict[str, int]) -> dict[str, Any]:
    return {
        "id": "chatcmpl-fake",
        "object": "chat.completion.chunk",
        "created": 1_700_000_000,
        "model": model,
        "choices": [],
        "usage": usage,
    }


def _wants_usage(body: dict[str, Any]) -> bool:
    options = body.get("stream_options")
    return isinstance(options, dict) and bool(options.get("include_usage"))


@dataclass
class FakeOpenAIServer(ScriptedServer):
    """Scripted OpenAI-compatible server. Use as a context manager; `base_url` ends with /v1."""

    handler_class = _Handler
    url_path = "/v1"

    default_usage: dict[str, int] = field(
        default_factory=lambda: {"prompt_tokens": 11, "completion_tokens": 7, "total_tokens": 18}
    )
    requests: list[RecordedRequest] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._init_server()

    def _next(self) -> Behaviour:
        with self._lock:
            if self._script:
                return self._script.pop(0)
        return lambda handler, body: handler.send_json(
            500, {"error": {"message": "fake server: no scripted response left", "type": "server_error"}}
        )

    def add(self, behaviour: Behaviour) -> FakeOpenAIServer:
        """Queue a custom behaviour `(handler, request_body) -> None`."""
        with self._lock:
            self._script.append(behaviour)
        return self

    # ----------------------------------------------------------------- scripted behaviours

    def stream_text(
        self,
        pieces: list[str],
        *,
        finish_reason: str | None = "stop",
        usage: dict[str, int] | None = None,
        chunk_delay: float = 0.0,
        done: bool = True,
    ) -> FakeOpenAIServer:
        """Stream `pieces` as content deltas, then the finish chunk, the usage chunk and [DONE].

        finish_reason=None with done=False models a server that ends the body early but cleanly.
        """

        def behave(handler: _Handler, body: dict[str, Any]) -> None:
            model = str(body.get("model", "fake-model"))
            handler.start_sse()
            handler.sse(_chunk(model, {"role": "assistant", "content": ""}))
            for piece in pieces:
                if chunk_delay:
                    handler.pause(chunk_delay)
                handler.sse(_chunk(model, {"content": piece}))
            if finish_reason is not None:
                handler.sse(_chunk(model, {}, finish_reason))
                if _wants_usage(body):
                    handler.sse(_usage_chunk(model, usage or self.default_usage))
            handler.end_sse(done=done)

        return self.add(behave)

    def stream_tool_calls(
        self,
        calls: list[tuple[str, str, dict[str, Any] | str]],
        *,
        pieces: int = 3,
        text: list[str] | None = None,
        finish_reason: str = "tool_calls",
        usage: dict[str, int] | None = None,
    ) -> FakeOpenAIServer:
        """Stream tool calls `(call_id, name, arguments)`; each call's arguments JSON is split in `pieces`.

        Fragments of different calls are interleaved (by index) the way real servers may send them.
        """
        scripted = [
            _ToolCallScript(call_id, name, args if isinstance(args, str) else json.dumps(args))
            for call_id, name, args in calls
        ]

        def behave(handler: _Handler, body: dict[str, Any]) -> None:
            model = str(body.get("model", "fake-model"))
            handler.start_sse()
            handler.sse(_chunk(model, {"role": "assistant", "content": None}))
            for piece in text or []:
                handler.sse(_chunk(model, {"content": piece}))
            for index, call in enumerate(scripted):
                head = {"index": index, "id": call.call_id, "type": "function"}
                handler.sse(_chunk(model, {"tool_calls": [{**head, "function": {"name": call.name, "arguments": ""}}]}))
            fragments = [split_text(call.arguments, pieces) for call in scripted]
            for round_ in range(max((len(f) for f in fragments), default=0)):
                for index, frags in enumerate(fragments):
                    if round_ < len(frags):
                        delta = {"tool_calls": [{"index": index, "function": {"arguments": frags[round_]}}]}
                        handler.sse(_chunk(model, delta))
            handler.sse(_chunk(model, {}, finish_reason))
            if _wants_usage(body):
                handler.sse(_usage_chunk(model, usage or self.default_usage))
            handler.end_sse()

        return self.add(behave)

    def error(
        self, status: int, message: str, *, type: str = "server_error", code: str | None = None
    ) -> FakeOpenAIServer:
        """Answer with an HTTP error status and an OpenAI-style JSON error body."""

        def behave(handler: _Handler, body: dict[str, Any]) -> None:
            handler.send_json(status, {"error": {"message": message, "type": type, "param": None, "code": code}})

        return self.add(behave)

    def raw_stream(self, pieces: list[bytes], *, pause: float = 0.02) -> FakeOpenAIServer:
        """Send the body as `pieces` of raw bytes, each in its own write after a pause (so the client
        reads them apart, a line or a character cut between two), then, after a pause too, end the body."""

        def behave(handler: _Handler, body: dict[str, Any]) -> None:
            handler.start_sse()
            for piece in pieces:
                handler.pause(pause)
                handler.write_chunk(piece)
            handler.pause(pause)
            handler.write_chunk(b"")

        return self.add(behave)

    def disconnect(self, pieces: list[str]) -> FakeOpenAIServer:
        """Stream `pieces` then drop the connection mid-body (no finish_reason, no [DONE])."""

        def behave(handler: _Handler, body: dict[str, Any]) -> None:
            model = str(body.get("model", "fake-model"))
            handler.start_sse()
            handler.sse(_chunk(model, {"role": "assistant", "content": ""}))
            for piece in pieces:
                handler.sse(_chunk(model, {"content": piece}))
            handler.cut()

        return self.add(behave)

    def garbage(self, pieces: list[str] | None = None, *, payload: str = "{this is not json") -> FakeOpenAIServer:
        """Stream `pieces` then a data line that is not a valid chunk."""

        def behave(handler: _Handler, body: dict[str, Any]) -> None:
            model = str(body.get("model", "fake-model"))
            handler.start_sse()
            for piece in pieces or []:
                handler.sse(_chunk(model, {"content": piece}))
            handler.sse(payload)
            handler.sse(_chunk(model, {}, "stop"))
            handler.end_sse()

        return self.add(behave)

    def sleep(self, seconds: float) -> FakeOpenAIServer:
        """Say nothing for `seconds` (longer than the client timeout), then answer normally."""

        def behave(handler: _Handler, body: dict[str, Any]) -> None:
            handler.pause(seconds)
            model = str(body.get("model", "fake-model"))
            handler.start_sse()
            handler.sse(_chunk(model, {"content": "too late"}))
            handler.sse(_chunk(model, {}, "stop"))
            handler.end_sse()

        return self.add(behave)


def remote_profile(fake: FakeOpenAIServer, slug: str = "remote", *, tools=(), **ai_chat: Any) -> None:
    """A profile of the `default` registry whose engine is the fake OpenAI-compatible server."""
    from profiles.services import profile_create

    profile_create(
        registry_slug="default",
        slug=slug,
        runtime={
            "system_prompt": "You are a remote assistant.",
            "tools": list(tools),
            "step_settings_patch": {
                "ai-chat": {"ai-api-type": "openai", "ai-engine": "fake-model", **ai_chat},
                "openai-chat": {"openai-base-url": fake.base_url},
            },
        },
    )
