"""A local OpenAI-compatible streaming server for answers of exact shape (127.0.0.1 only).

`POST /v1/chat/completions` streams an answer whose size and number of content deltas are read from
the last user message: `n=<deltas> bytes=<answer bytes>` (optionally `delay_ms=<pause per delta>`);
defaults 10 deltas, 1024 bytes. The answer is ASCII, so bytes == characters.
"""

from __future__ import annotations

import json
import re
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

_PARAM = re.compile(r"\b(n|bytes|delay_ms)=(\d+)")
_WORDS = b"lorem ipsum dolor sit amet consectetur adipiscing elit sed do eiusmod tempor "


def answer(size: int) -> str:
    reps = size // len(_WORDS) + 1
    return (_WORDS * reps)[:size].decode()


def pieces(text: str, count: int) -> list[str]:
    count = max(1, min(count, len(text)))
    size, rest = divmod(len(text), count)
    out, start = [], 0
    for i in range(count):
        end = start + size + (1 if i < rest else 0)
        out.append(text[start:end])
        start = end
    return out


def params(body: dict[str, Any]) -> dict[str, int]:
    messages = body.get("messages") or []
    last = next((m for m in reversed(messages) if m.get("role") == "user"), {})
    content = last.get("content") or ""
    if isinstance(content, list):
        content = " ".join(str(part.get("text", "")) for part in content if isinstance(part, dict))
    found = {k: int(v) for k, v in _PARAM.findall(str(content))}
    return {"n": found.get("n", 10), "bytes": found.get("bytes", 1024), "delay_ms": found.get("delay_ms", 0)}


def _chunk(model: str, delta: dict[str, Any], finish: str | None = None) -> bytes:
    payload = {
        "id": "chatcmpl-bench",
        "object": "chat.completion.chunk",
        "created": 1_700_000_000,
        "model": model,
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
    }
    return f"data: {json.dumps(payload)}\n\n".encode()


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:
        return

    def _write(self, data: bytes) -> None:
        self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))

    def do_GET(self) -> None:
        body = json.dumps({"object": "list", "data": [{"id": "x", "object": "model"}]}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = json.loads(self.rfile.read(length) or b"{}")
        shape = params(body)
        model = str(body.get("model", "x"))
        self.server.requests += 1  # type: ignore[attr-defined]
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        try:
            self._write(_chunk(model, {"role": "assistant", "content": ""}))
            for piece in pieces(answer(shape["bytes"]), shape["n"]):
                if shape["delay_ms"]:
                    self.wfile.flush()
                    time.sleep(shape["delay_ms"] / 1000)
                self._write(_chunk(model, {"content": piece}))
            self._write(_chunk(model, {}, "stop"))
            options = body.get("stream_options") or {}
            if options.get("include_usage"):
                usage = {"prompt_tokens": 10, "completion_tokens": shape["n"], "total_tokens": 10 + shape["n"]}
                payload = {"id": "chatcmpl-bench", "object": "chat.completion.chunk", "created": 1_700_000_000}
                payload.update(model=model, choices=[], usage=usage)
                self._write(f"data: {json.dumps(payload)}\n\n".encode())
            self._write(b"data: [DONE]\n\n")
            self._write(b"")
            self.wfile.flush()
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True


class FakeLLM:
    """Start/stop in a background thread; `base_url` ends with /v1."""

    def __init__(self) -> None:
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
        self.server.daemon_threads = True
        self.server.requests = 0  # type: ignore[attr-defined]
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/v1"

    def __enter__(self) -> FakeLLM:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()
