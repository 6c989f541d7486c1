"""A real HTTP server speaking Anthropic's Messages streaming protocol, for engine tests.

Tests drive the official SDK against it over TCP, so no SDK internals are mocked. Each
POST /v1/messages pops the next scripted behaviour; request bodies and headers are recorded. The
stream is the documented one: named SSE events `message_start`, `content_block_start` /
`content_block_delta` (`text_delta`, `input_json_delta`) / `content_block_stop`, `message_delta` (stop
reason and usage), `message_stop`, with `ping` events in between and `error` events on failure.
"""

from __future__ import annotations

import json
import socket
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler
from typing import Any

from .fake_openai import RecordedRequest, free_port, split_text
from .scripted_server import LocalServer, ScriptedServer

__all__ = ["FakeAnthropicServer", "RecordedRequest", "anthropic_profile", "free_port", "split_text"]

Behaviour = Callable[["_Handler", dict[str, Any]], None]


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
        fake._record(RecordedRequest(self.path, {k.lower(): v for k, v in self.headers.items()}, body))
        if self.path.split("?")[0].rstrip("/") != "/v1/messages":
            self.send_error_body(404, "not_found_error", f"unknown path {self.path}")
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
        self.send_header("request-id", "req_fake")
        self.end_headers()
        self.wfile.write(data)
        self.wfile.flush()

    def send_error_body(self, status: int, type: str, message: str) -> None:
        self.send_json(status, {"type": "error", "error": {"type": type, "message": message}})

    def start_sse(self) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Cache-Control", "no-cache")
        self.send_header("Transfer-Encoding", "chunked")
        self.send_header("request-id", "req_fake")
        self.end_headers()

    def write_chunk(self, data: bytes) -> None:
        self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
        self.wfile.flush()

    def event(self, name: str, payload: Any = None) -> None:
        """One named SSE event; `payload` defaults to {"type": name}; a str is sent as is."""
        data = payload if isinstance(payload, str) else json.dumps({"type": name} if payload is None else payload)
        self.write_chunk(f"event: {name}\ndata: {data}\n\n".encode())

    def end_sse(self) -> None:
        self.write_chunk(b"")

    def cut(self) -> None:
        """Drop the connection without the chunked terminator: the client sees a broken body."""
        self.close_connection = True
        self.wfile.flush()
        self.connection.shutdown(socket.SHUT_RDWR)

    def pause(self, seconds: float) -> None:
        self.server.fake._stopping.wait(seconds)

    # ----------------------------------------------------------------- protocol pieces

    def message_start(self, body: dict[str, Any], usage: dict[str, int]) -> None:
        message = {
            "id": "msg_fake",
            "type": "message",
            "role": "assistant",
            "model": str(body.get("model", "fake-model")),
            "content": [],
            "stop_reason": None,
            "stop_sequence": None,
            "usage": {"input_tokens": usage["input_tokens"], "output_tokens": 1},
        }
        self.event("message_start", {"type": "message_start", "message": message})

    def text_block(self, index: int, pieces: list[str], *, delay: float = 0.0) -> None:
        self.event(
            "content_block_start",
            {"type": "content_block_start", "index": index, "content_block": {"type": "text", "text": ""}},
        )
        for piece in pieces:
            if delay:
                self.pause(delay)
            delta = {"type": "text_delta", "text": piece}
            self.event("content_block_delta", {"type": "content_block_delta", "index": index, "delta": delta})
        self.event("content_block_stop", {"type": "content_block_stop", "index": index})

    def message_end(self, stop_reason: str, usage: dict[str, int]) -> None:
        delta = {"stop_reason": stop_reason, "stop_sequence": None}
        self.event(
            "message_delta",
            {"type": "message_delta", "delta": delta, "usage": {"output_tokens": usage["output_tokens"]}},
        )
        self.event("message_stop")


@dataclass
class FakeAnthropicServer(ScriptedServer):
    """Scripted Anthropic Messages server. Use as a context manager; `base_url` has no /v1 (the SDK's form)."""

    handler_class = _Handler

    default_usage: dict[str, int] = field(default_factory=lambda: {"input_tokens": 11, "output_tokens": 7})
    requests: list[RecordedRequest] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._init_server()

    @property
    def default_runtime_usage(self) -> dict[str, int]:
        """`default_usage` in the runtime's keys (what the engine reports for one round)."""
        prompt, completion = self.default_usage["input_tokens"], self.default_usage["output_tokens"]
        return {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}

    def _next(self) -> Behaviour:
        with self._lock:
            if self._script:
                return self._script.pop(0)
        return lambda handler, body: handler.send_error_body(500, "api_error", "fake server: no scripted response left")

    def add(self, behaviour: Behaviour) -> FakeAnthropicServer:
        """Queue a custom behaviour `(handler, request_body) -> None`."""
        with self._lock:
            self._script.append(behaviour)
        return self

    # ----------------------------------------------------------------- scripted behaviours

    def stream_text(
        self,
        pieces: list[str],
        *,
        stop_reason: str | None = "end_turn",
        usage: dict[str, int] | None = None,
        chunk_delay: float = 0.0,
        ping: bool = True,
        message_stop: bool = True,
    ) -> FakeAnthropicServer:
        """Stream `pieces` as text deltas of one block, then message_delta (stop reason, usage) and
        message_stop. stop_reason=None ends the body cleanly right after the text (an unfinished reply)."""

        def behave(handler: _Handler, body: dict[str, Any]) -> None:
            counts = usage or self.default_usage
            handler.start_sse()
            handler.message_start(body, counts)
            if ping:
                handler.event("ping")
            handler.text_block(0, pieces, delay=chunk_delay)
            if stop_reason is not None:
                if message_stop:
                    handler.message_end(stop_reason, counts)
                else:
                    delta = {"stop_reason": stop_reason, "stop_sequence": None}
                    handler.event(
                        "message_delta", {"type": "message_delta", "delta": delta, "usage": {"output_tokens": 1}}
                    )
            handler.end_sse()

        return self.add(behave)

    def stream_tool_use(
        self,
        calls: list[tuple[str, str, dict[str, Any] | str]],
        *,
        pieces: int = 3,
        text: list[str] | None = None,
        usage: dict[str, int] | None = None,
    ) -> FakeAnthropicServer:
        """Stream an optional text block, then one tool_use block per call `(id, name, input)`, each
        input's JSON split in `pieces` input_json_delta events, then stop_reason tool_use."""

        def behave(handler: _Handler, body: dict[str, Any]) -> None:
            counts = usage or self.default_usage
            handler.start_sse()
            handler.message_start(body, counts)
            index = 0
            if text:
                handler.text_block(index, text)
                index += 1
            for call_id, name, arguments in calls:
                raw = arguments if isinstance(arguments, str) else json.dumps(arguments)
                block = {"type": "tool_use", "id": call_id, "name": name, "input": {}}
                handler.event(
                    "content_block_start", {"type": "content_block_start", "index": index, "content_block": block}
                )
                handler.event("ping")
                for fragment in split_text(raw, pieces) if raw else []:
                    delta = {"type": "input_json_delta", "partial_json": fragment}
                    handler.event(
                        "content_block_delta", {"type": "content_block_delta", "index": index, "delta": delta}
                    )
                handler.event("content_block_stop", {"type": "content_block_stop", "index": index})
                index += 1
            handler.message_end("tool_use", counts)
            handler.end_sse()

        return self.add(behave)

    def error(self, status: int, message: str, *, type: str = "api_error") -> FakeAnthropicServer:
        """Answer with an HTTP error status and an Anthropic-style JSON error body."""
        return self.add(lambda handler, body: handler.send_error_body(status, type, message))

    def overloaded(self) -> FakeAnthropicServer:
        """HTTP 529, as Anthropic answers when its servers are overloaded."""
        return self.error(529, "Overloaded", type="overloaded_error")

    def error_event(
        self, pieces: list[str], *, type: str = "overloaded_error", message: str = "Overloaded"
    ) -> FakeAnthropicServer:
        """Start streaming `pieces`, then send an `error` event (how a failure after HTTP 200 arrives)."""

        def behave(handler: _Handler, body: dict[str, Any]) -> None:
            handler.start_sse()
            handler.message_start(body, self.default_usage)
            handler.event(
                "content_block_start",
                {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}},
            )
            for piece in pieces:
                delta = {"type": "text_delta", "text": piece}
                handler.event("content_block_delta", {"type": "content_block_delta", "index": 0, "delta": delta})
            handler.event("error", {"type": "error", "error": {"type": type, "message": message}})
            handler.end_sse()

        return self.add(behave)

    def disconnect(self, pieces: list[str]) -> FakeAnthropicServer:
        """Stream `pieces` then drop the connection mid-body (no message_delta, no message_stop)."""

        def behave(handler: _Handler, body: dict[str, Any]) -> None:
            handler.start_sse()
            handler.message_start(body, self.default_usage)
            handler.event(
                "content_block_start",
                {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}},
            )
            for piece in pieces:
                delta = {"type": "text_delta", "text": piece}
                handler.event("content_block_delta", {"type": "content_block_delta", "index": 0, "delta": delta})
            handler.cut()

        return self.add(behave)

    def garbage(self, pieces: list[str] | None = None, *, payload: str = "{this is not json") -> FakeAnthropicServer:
        """Stream `pieces`, then a content_block_delta whose data is not a valid event."""

        def behave(handler: _Handler, body: dict[str, Any]) -> None:
            handler.start_sse()
            handler.message_start(body, self.default_usage)
            handler.text_block(0, pieces or [])
            handler.event("content_block_delta", payload)
            handler.message_end("end_turn", self.default_usage)
            handler.end_sse()

        return self.add(behave)

    def sleep(self, seconds: float) -> FakeAnthropicServer:
        """Say nothing for `seconds` (longer than the client timeout), then answer normally."""

        def behave(handler: _Handler, body: dict[str, Any]) -> None:
            handler.pause(seconds)
            handler.start_sse()
            handler.message_start(body, self.default_usage)
            handler.text_block(0, ["too late"])
            handler.message_end("end_turn", self.default_usage)
            handler.end_sse()

        return self.add(behave)


def anthropic_profile(
    base_url: str | None, slug: str = "claude", *, tools: tuple[str, ...] | list[str] = (), **ai_chat: Any
) -> None:
    """A profile of the `default` registry whose engine is `anthropic`; `base_url` (e.g. a fake server's)
    goes to `anthropic-chat.anthropic-base-url`, None leaves the server's ANTHROPIC_BASE_URL."""
    from profiles.services import profile_create

    patch: dict[str, Any] = {"ai-chat": {"ai-api-type": "anthropic", "ai-engine": "fake-claude", **ai_chat}}
    if base_url is not None:
        patch["anthropic-chat"] = {"anthropic-base-url": base_url}
    profile_create(
        registry_slug="default",
        slug=slug,
        runtime={
            "system_prompt": "You are Claude, a remote assistant.",
            "tools": list(tools),
            "step_settings_patch": patch,
        },
    )
